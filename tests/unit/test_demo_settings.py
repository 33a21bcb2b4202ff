"""Which model the demo trains: the real-photo preset where the photos and weights are
found under the data root, the synthetic shapes otherwise; explicit settings win."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo import DEMO_TRAIN_SECONDS, REAL_WEIGHTS, demo_settings
from tests.helpers import MOBILENET_WEIGHTS, SHARED_DATA
from training.settings import TrainSettings, default_data_root

needs_real = pytest.mark.skipif(
    not MOBILENET_WEIGHTS.is_file(), reason=f"no real photos and weights under {SHARED_DATA}"
)


@needs_real
def test_real_photos_and_weights_under_the_data_root_give_the_real_photo_model():
    settings = demo_settings(TrainSettings(data_root=SHARED_DATA))
    assert settings.dataset == "flickr8k[train]"
    assert (settings.encoder, settings.architecture) == ("mobilenet_v2", "merge")
    assert Path(settings.encoder_weights) == SHARED_DATA / REAL_WEIGHTS
    assert settings.members > 1 and settings.rerank and settings.selection == "last"
    assert settings.max_train_seconds == DEMO_TRAIN_SECONDS


@needs_real
def test_explicit_settings_win_over_the_preset():
    settings = demo_settings(TrainSettings(data_root=SHARED_DATA, members=2, epochs=3))
    assert (settings.members, settings.epochs) == (2, 3)
    shapes = demo_settings(TrainSettings(data_root=SHARED_DATA, dataset="shapes[train]"))
    assert shapes.encoder == "small_cnn" and shapes.members == 1


def test_without_real_data_the_demo_trains_shapes(tmp_path):
    settings = demo_settings(TrainSettings(data_root=tmp_path))
    assert settings.dataset == "shapes[train]"
    assert settings.architecture == "attention" and settings.selection == "last"


def test_the_data_root_defaults_to_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("CAPTIONER_DATA_ROOT", raising=False)
    expected = SHARED_DATA if SHARED_DATA.is_dir() else Path("data")
    assert default_data_root() == expected
    assert TrainSettings().data_root == expected
    monkeypatch.setenv("CAPTIONER_DATA_ROOT", "/somewhere/else")
    assert TrainSettings().data_root == Path("/somewhere/else")
