"""Percentile bootstrap intervals of per-image scores, alone or paired against a baseline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.scoring import ScoringError


@dataclass(frozen=True)
class Interval:
    """A mean and its percentile bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap(
    values: Sequence[float],
    baseline: Sequence[float] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of a mean per-image score, or of a paired difference.

    With ``baseline``, the same resampled images score both systems and the interval
    is of ``mean(values) - mean(baseline)``: the paired test that says whether one
    caption source beats another on these images. (A few lines of numpy rather than
    scipy.stats.bootstrap: scipy is not otherwise needed by the project.)
    """
    a = np.asarray(values, dtype=np.float64)
    if baseline is not None:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape != a.shape:
            raise ScoringError(f"paired scores differ in length: {a.shape[0]} vs {b.shape[0]}")
        a = a - b
    if a.size == 0:
        raise ScoringError("no scores to bootstrap")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(a.mean()), float(low), float(high))
