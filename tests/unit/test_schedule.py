"""The cosine decay fitted to a time budget (training/schedule.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.schedule import BudgetCosine, epochs_that_fit


def rate(schedule: BudgetCosine, step: int) -> float:
    return float(np.asarray(schedule(step)))


def test_the_decay_runs_from_the_initial_rate_to_alpha_over_its_epochs():
    schedule = BudgetCosine(0.002, steps_per_epoch=10, epochs=4, alpha=0.05)
    assert rate(schedule, 0) == pytest.approx(0.002)
    assert rate(schedule, 20) == pytest.approx(0.002 * (0.05 + 0.95 * 0.5), rel=1e-5)
    assert rate(schedule, 40) == pytest.approx(0.0001, rel=1e-5)
    assert rate(schedule, 400) == pytest.approx(0.0001, rel=1e-5)  # flat after the horizon


def test_fitting_shortens_the_decay_so_it_ends_within_the_budget():
    schedule = BudgetCosine(0.002, steps_per_epoch=10, epochs=24)
    before = rate(schedule, 50)
    schedule.fit(6)
    assert rate(schedule, 60) == pytest.approx(0.0001, rel=1e-5)
    assert rate(schedule, 50) < before
    assert schedule.get_config()["epochs"] == 6


@pytest.mark.parametrize(
    ("done", "seconds", "last", "budget", "expected"),
    [(1, 40.0, 40.0, 600.0, 15), (2, 60.0, 20.0, 600.0, 29), (3, 700.0, 20.0, 600.0, 3)],
)
def test_epochs_that_fit(done, seconds, last, budget, expected):
    assert epochs_that_fit(done, seconds, last, budget) == expected
