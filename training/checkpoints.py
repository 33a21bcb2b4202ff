"""Per-epoch checkpoints that survive Ctrl-C and kill: resume is the same command again.

A checkpoint is a directory ``checkpoints/epoch-NNNN/`` holding the model pair
(config + weights) and the optimizer's variables; ``state.json`` names the
latest complete one and carries the early-stopping bookkeeping. ``state.json``
is replaced atomically after the checkpoint is fully written, so an
interruption at any moment leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from training.atomic import write_json
from training.models.captioner import CaptionModel
from training.run_dir import RunDir


class CheckpointError(ValueError):
    """A run directory that cannot be resumed as asked."""


@dataclass
class TrainState:
    """Where a run is: epochs done, the best validation score, why it stopped."""

    epoch: int = 0
    checkpoint: str | None = None
    best_score: float = float("-inf")
    best_epoch: int = 0
    wait: int = 0
    train_seconds: float = 0.0
    stopped: str | None = None
    mlflow_run_id: str | None = None
    planned_epochs: int | None = None  # the epochs that fit a time budget (training/schedule.py)
    history: list[dict[str, float]] = field(default_factory=list)


def load_state(run_dir: RunDir) -> TrainState | None:
    """The state ``state.json`` records, or None for a run that never finished an epoch."""
    path = run_dir.state_path
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("best_score") is None:
        data["best_score"] = float("-inf")
    return TrainState(**data)


def save_checkpoint(
    run_dir: RunDir, model: CaptionModel, optimizer: keras.optimizers.Optimizer, state: TrainState
) -> None:
    """Write ``checkpoints/epoch-NNNN``, then point ``state.json`` at it; keep only it."""
    name = f"epoch-{state.epoch:04d}"
    root = run_dir.checkpoints_dir
    target = run_dir.checkpoint_dir(name)
    if target.exists():
        shutil.rmtree(target)
    model.save_dir(target)
    np.savez(target / RunDir.OPTIMIZER_FILE, *[np.asarray(v) for v in optimizer.variables])
    state.checkpoint = name
    payload = asdict(state)
    payload["best_score"] = None if state.best_score == float("-inf") else state.best_score
    write_json(run_dir.state_path, payload)
    for old in root.iterdir():
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def restore_checkpoint(
    run_dir: RunDir, model: CaptionModel, optimizer: keras.optimizers.Optimizer, state: TrainState
) -> None:
    """Load weights and optimizer variables of the checkpoint ``state`` names."""
    if state.checkpoint is None:
        return
    directory = run_dir.checkpoint_dir(state.checkpoint)
    model.load_weights(directory / RunDir.WEIGHTS_FILE)
    optimizer.build(model.trainable_variables)
    with np.load(directory / RunDir.OPTIMIZER_FILE) as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if len(values) != len(optimizer.variables):
        raise CheckpointError(
            f"{directory}: optimizer has {len(optimizer.variables)} variables, "
            f"the checkpoint {len(values)}"
        )
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)
