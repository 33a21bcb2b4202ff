"""A small model trained once per session: fixed epochs, so machine speed changes nothing."""

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
