"""Small models trained once per session: fixed epochs, so machine speed changes nothing."""

import pytest

from training.settings import TrainSettings
from training.trainer import train


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    settings = TrainSettings(
        dataset="shapes[train]",
        run_dir=run_dir,
        architecture="attention",
        epochs=6,
        patience=6,
        val_images=100,
        mlflow_tracking_uri=(run_dir.parent / "mlruns").as_uri(),
    )
    return train(settings, progress=False)


@pytest.fixture(scope="session")
def trained_merge(tmp_path_factory):
    """A merge model, trained briefly (about 35 s): export parity needs trained, not good."""
    run_dir = tmp_path_factory.mktemp("trained_merge") / "run"
    settings = TrainSettings(
        dataset="shapes[train]-3000s1",
        run_dir=run_dir,
        architecture="merge",
        epochs=3,
        patience=3,
        val_images=100,
        mlflow_tracking_uri=(run_dir.parent / "mlruns").as_uri(),
    )
    return train(settings, progress=False)
