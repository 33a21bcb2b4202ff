"""A cosine learning-rate decay whose length can be fitted to a time budget.

With a budget of seconds rather than epochs (the demo's 10 minutes), a cosine decay
planned over ``epochs`` is cut off wherever the budget ends: on a slower machine the
learning rate never comes down and the last epochs are the noisy ones. After the
first epochs show how long one takes, :meth:`BudgetCosine.fit` shortens the decay to
the epochs that fit, so that every machine trains a whole schedule.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="captioner")
class BudgetCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from ``initial`` to ``alpha * initial`` over ``epochs`` epochs.

    Args:
        initial: the learning rate at step 0.
        steps_per_epoch: optimizer steps in one epoch.
        epochs: epochs of the decay, until :meth:`fit` changes it.
        alpha: the final fraction of ``initial``.
    """

    def __init__(self, initial: float, steps_per_epoch: int, epochs: int, alpha: float = 0.05):
        self.initial = float(initial)
        self.steps_per_epoch = int(steps_per_epoch)
        self.alpha = float(alpha)
        self.epochs = int(epochs)
        # A variable, so the compiled train step sees a new length without retracing.
        self.horizon = keras.Variable(
            float(epochs * steps_per_epoch), trainable=False, dtype="float32", name="horizon"
        )

    def fit(self, epochs: int) -> None:
        """Decay over ``epochs`` epochs from now on (the steps already taken count)."""
        self.epochs = max(1, int(epochs))
        self.horizon.assign(float(self.epochs * self.steps_per_epoch))

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / self.horizon, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.initial * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {
            "initial": self.initial,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "alpha": self.alpha,
        }


def epochs_that_fit(done: int, seconds_so_far: float, last_epoch: float, budget: float) -> int:
    """Epochs in all (``done`` included) when each further one takes ``last_epoch`` seconds."""
    if last_epoch <= 0:
        return done
    return done + max(0, math.floor((budget - seconds_so_far) / last_epoch))
