"""Hypothesis profiles for the fuzz tests."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI: a fixed, bounded set of examples (seconds, same every run). A longer search for
# new failures: HYPOTHESIS_PROFILE=fuzz pytest tests/reliability -k "fuzz and decode"
settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
