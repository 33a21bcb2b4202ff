"""When training stops, and which epoch's model is kept.

``selection="best"`` keeps the epoch with the best validation CIDEr and stops after
``patience`` epochs without a better one. ``selection="last"`` trains a fixed
schedule and keeps the last epoch: validation CIDEr on a few dozen photos jumps by
more than the differences between epochs, so picking the best epoch by it selects
noise. Either way a run stops at ``epochs``, and with a time budget at the epochs
that fit it (refitted after every epoch) or once the budget is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from training.checkpoints import TrainState
from training.schedule import epochs_that_fit
from training.settings import TrainSettings


@dataclass(frozen=True)
class StopPolicy:
    """The stop rules of one run; it reads and updates the run's :class:`TrainState`.

    Attributes:
        epochs: the most epochs the run trains.
        selection: ``best`` (early stopping on validation CIDEr) or ``last``.
        patience: epochs without a better validation score before ``best`` stops.
        max_train_seconds: the time budget; ``None`` or 0 for none.
    """

    epochs: int
    selection: Literal["best", "last"]
    patience: int
    max_train_seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: TrainSettings) -> StopPolicy:
        return cls(
            settings.epochs, settings.selection, settings.patience, settings.max_train_seconds
        )

    def running(self, state: TrainState) -> bool:
        """Whether another epoch is to be trained."""
        return state.epoch < self.epochs and not state.stopped

    def plan(self, state: TrainState) -> int | None:
        """The epochs that fit the time budget at the pace so far; None without a budget.

        The first epoch pays for tracing, so the pace is that of the epochs after it.
        """
        if not self.max_train_seconds:
            return None
        first = state.history[0]["seconds"] if state.history else state.train_seconds
        later = state.epoch - 1
        pace = (state.train_seconds - first) / later if later else state.train_seconds
        fit = epochs_that_fit(state.epoch, state.train_seconds, pace, self.max_train_seconds)
        return max(state.epoch, min(self.epochs, fit))

    def record(self, state: TrainState, score: float) -> bool:
        """Count the epoch just finished with validation SCORE; whether to keep its model."""
        if score > state.best_score:
            state.best_score, state.best_epoch, state.wait = score, state.epoch, 0
        else:
            state.wait += 1
        return self.selection == "last" or state.wait == 0

    def reason(self, state: TrainState) -> str | None:
        """Why the run stops after the epoch just recorded, or None to go on."""
        if self.selection == "best" and state.wait >= self.patience:
            return f"early stop: no better val CIDEr for {state.wait} epochs"
        if state.epoch >= self.epochs:
            return f"finished {self.epochs} epochs"
        if state.planned_epochs and state.epoch >= state.planned_epochs:
            return (
                f"finished the {state.planned_epochs} epochs that fit the time budget of "
                f"{self.max_train_seconds:.0f} s"
            )
        if self.max_train_seconds and state.train_seconds >= self.max_train_seconds:
            return f"time budget of {self.max_train_seconds:.0f} s reached"
        return None
