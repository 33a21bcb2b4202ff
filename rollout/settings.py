"""Canary analysis settings: typed, read once from ``CAPTIONER_ROLLOUT_*`` variables."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A Prometheus range duration: 30s, 10m, 1h30m, ...
_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


class RolloutSettings(BaseSettings):
    """Where the metrics are and every threshold of the verdict (docs/deploy.md, canary analysis).

    ``captioner rollout analyze`` builds them from the environment with its flags on top.
    """

    model_config = SettingsConfigDict(
        env_prefix="CAPTIONER_ROLLOUT_", extra="ignore", populate_by_name=True
    )

    prometheus_url: str = Field(
        default="http://127.0.0.1:9090", description="Prometheus server whose HTTP API is asked"
    )
    window: str = Field(default="10m", description="range both versions are compared over")
    timeout_seconds: float = Field(default=10.0, gt=0, description="per query to Prometheus")
    routes: str = Field(
        default="/v1/captions|/v2/models/.+/infer",
        description="regex of the route templates that count (captions, not probes or scrapes)",
    )

    min_requests: int = Field(
        default=500, ge=1, description="requests each version needs in the window for a verdict"
    )
    min_captions: int = Field(
        default=200, ge=1, description="captions each version needs to compare log-probabilities"
    )
    min_feedback: int = Field(
        default=50,
        ge=0,
        description="feedback each version needs to compare thumbs-up rates (0: not required)",
    )

    error_ratio_margin: float = Field(
        default=0.005, ge=0, le=1, description="5xx ratio the canary may add to stable's"
    )
    error_ratio_floor: float = Field(
        default=0.01, ge=0, le=1, description="5xx ratio below which the canary never fails"
    )
    rejected_ratio_margin: float = Field(
        default=0.02, ge=0, le=1, description="429 ratio the canary may add to stable's"
    )
    rejected_ratio_floor: float = Field(
        default=0.05, ge=0, le=1, description="429 ratio below which the canary never fails"
    )
    latency_p99_factor: float = Field(
        default=1.5, ge=1, description="canary p99 latency may be stable's times this"
    )
    latency_p99_slack_seconds: float = Field(
        default=0.05, ge=0, description="plus this, so that millisecond noise does not fail"
    )
    thumbs_up_margin: float = Field(
        default=0.10, ge=0, le=1, description="thumbs-up rate the canary may lose against stable"
    )
    log_prob_margin: float = Field(
        default=1.0, ge=0, description="median caption log-probability the canary may lose (nats)"
    )

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 10m or 1h")
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")
