"""Experiment tracking with MLflow: a local file store by default, a tracking URI when given.

A resumed run continues the same MLflow run, so its metrics form one curve.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.checkpoints import TrainState
    from training.settings import TrainSettings

log = logging.getLogger(__name__)

RESUMED_FROM = "captioner.resumed_from"


class Tracker:
    """Thin wrapper that starts or resumes one MLflow run."""

    def __init__(self, uri: str, experiment: str, run_name: str, run_id: str | None = None):
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store in maintenance mode behind this opt-out;
            # its SQLite store needs the full mlflow package (SQLAlchemy, Alembic),
            # which a local default should not pull in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        try:
            self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        except Exception as exc:  # MLflow raises several types for a damaged file store
            if run_id is None:
                raise
            # A kill in the middle of an MLflow write can leave the run unreadable;
            # tracking must never stop a resume, so continue in a new, linked run.
            log.warning("mlflow run %s cannot be resumed (%s); starting a new one", run_id, exc)
            self.run = mlflow.start_run(run_name=run_name, tags={RESUMED_FROM: run_id})
        self.run_id: str = self.run.info.run_id
        log.info("mlflow run %s at %s", self.run_id, uri)

    def params(self, params: Mapping[str, Any]) -> None:
        flat = {k: str(v)[:500] for k, v in params.items()}
        existing = self._mlflow.get_run(self.run_id).data.params
        new = {k: v for k, v in flat.items() if k not in existing}
        if new:
            self._mlflow.log_params(new)

    def metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k.replace("-", "_"): float(v) for k, v in metrics.items()}
        self._mlflow.log_metrics(clean, step=step)

    def log_epoch(self, entry: Mapping[str, float]) -> None:
        """One epoch of the run's history (:class:`training.checkpoints.TrainState`)."""
        self.metrics(
            {
                "loss": entry["loss"],
                "val_CIDEr": entry["val_cider"],
                "train_seconds": entry["seconds"],
            },
            step=int(entry["epoch"]),
        )

    def artifact(self, path: Path) -> None:
        self._mlflow.log_artifact(str(path))

    def close(self, status: str = "FINISHED") -> None:
        self._mlflow.end_run(status=status)


def start_tracking(
    settings: TrainSettings, state: TrainState, run_name: str, params: Mapping[str, Any]
) -> Tracker:
    """The MLflow run of a training run, resumed when STATE names one.

    Args:
        settings: where to track, and the settings logged as parameters.
        state: the run's state; it records the MLflow run id for the next resume.
        run_name: the name of a new MLflow run.
        params: parameters logged beside the settings (model size, precision, ...).
    """
    tracker = Tracker(
        settings.tracking_uri(), settings.mlflow_experiment, run_name, state.mlflow_run_id
    )
    state.mlflow_run_id = tracker.run_id
    tracker.params({**settings.identity(), **params})
    return tracker
