"""Mixing a second dataset into training by weight (TrainSettings.extra_dataset)."""

from __future__ import annotations

import numpy as np
import pytest

from training.pipeline import TeacherForcingData


def data(images: int, captions_per_image: int, weights=None) -> TeacherForcingData:
    owner = np.repeat(np.arange(images), captions_per_image).astype(np.int32)
    tokens = np.arange(len(owner) * 3, dtype=np.int32).reshape(len(owner), 3)
    features = np.zeros((images, 4), np.float32)
    w = None if weights is None else np.asarray(weights, np.float64)
    return TeacherForcingData(features, "features", tokens, tokens, owner, w)


def captions_of(epoch) -> list[int]:
    """The caption rows an epoch shows, read back from its batches' first token."""
    return [int(row[0]) // 3 for batch in epoch for row in batch[0]["tokens"].numpy()]


@pytest.mark.parametrize("all_captions", [False, True])
def test_weights_set_how_often_each_image_is_shown(all_captions):
    mixed = data(6, 2, weights=[1, 1, 1, 2, 2, 0.5])
    counts = np.zeros(6)
    epochs = 200
    for epoch in range(epochs):
        rows = mixed.epoch_captions(epoch, seed=3, all_captions=all_captions)
        np.add.at(counts, mixed.caption_image[rows], 1)
    per_epoch = counts / epochs / (2 if all_captions else 1)
    assert per_epoch[:3] == pytest.approx([1, 1, 1])
    assert per_epoch[3:5] == pytest.approx([2, 2])
    assert 0.4 < per_epoch[5] < 0.6  # half the epochs on average
    assert mixed.per_epoch(all_captions) == (15 if all_captions else 8)  # 7.5 per caption, rounded


def test_a_weighted_epoch_is_reproducible_and_differs_between_epochs():
    mixed = data(5, 3, weights=[1, 1, 1, 1.5, 3])
    first = captions_of(mixed.epoch(4, seed=1, batch_size=4))
    assert first == captions_of(mixed.epoch(4, seed=1, batch_size=4))
    assert first == list(mixed.epoch_captions(4, seed=1))  # the batches show those rows
    assert first != captions_of(mixed.epoch(5, seed=1, batch_size=4))


def test_without_weights_an_epoch_shows_each_image_once():
    plain = data(7, 2)
    rows = captions_of(plain.epoch(0, seed=0, batch_size=3))
    assert sorted(plain.caption_image[rows]) == list(range(7))
    assert plain.per_epoch() == 7 and plain.per_epoch(all_captions=True) == 14


def test_the_extra_dataset_settings_are_checked():
    from pydantic import ValidationError

    from training.settings import TrainSettings

    settings = TrainSettings(extra_dataset="feedback[train]", extra_weight=2)
    assert str(settings.extra_spec()) == "feedback[train]"
    assert TrainSettings().extra_spec() is None
    with pytest.raises(ValidationError, match="malformed dataset spec"):
        TrainSettings(extra_dataset="feedback")
    with pytest.raises(ValidationError, match="greater than 0"):
        TrainSettings(extra_dataset="feedback[train]", extra_weight=0)


def test_a_run_begun_before_the_new_settings_still_resumes():
    """The new settings stay out of a run's identity at their defaults."""
    from training.settings import TrainSettings

    identity = TrainSettings().identity()
    assert not {"extra_dataset", "extra_weight", "init_from", "init_member"} & set(identity)
    tuned = TrainSettings(extra_dataset="feedback[train]", init_from="runs/a").identity()
    assert tuned["extra_dataset"] == "feedback[train]" and tuned["init_from"] == "runs/a"
