"""Small models trained once per session: fixed epochs, so machine speed changes nothing."""

import pytest

from training.settings import TrainSettings
from training.trainer import TrainResult, train


def train_once(tmp_path_factory, name: str, **settings) -> TrainResult:
    run_dir = tmp_path_factory.mktemp(name) / "run"
    mlruns = (run_dir.parent / "mlruns").as_uri()
    config = TrainSettings(run_dir=run_dir, val_images=100, mlflow_tracking_uri=mlruns, **settings)
    return train(config, progress=False)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The demo's attention model after 6 epochs (about 2.5 minutes): it looks at the image."""
    return train_once(
        tmp_path_factory,
        "trained",
        dataset="shapes[train]",
        architecture="attention",
        epochs=6,
        patience=6,
    )


@pytest.fixture(scope="session")
def trained_merge(tmp_path_factory):
    """A merge model, trained briefly (about 35 s): export parity needs trained, not good."""
    return train_once(
        tmp_path_factory,
        "trained_merge",
        dataset="shapes[train]-3000s1",
        architecture="merge",
        epochs=3,
        patience=3,
    )
