"""The Flickr8k loader on the real, partial photo set in ../shared/data.

875 of the 8,091 photos are there (753 train, 113 dev, no test): the loader uses
those present, says in one line how many are missing, refuses only when none is
present or every photo is required, and holds out half of the present dev photos
as the test split by a fixed rule.
"""

from __future__ import annotations

import hashlib
import logging
import shutil

import pytest

from tests.helpers import FLICKR8K_PHOTOS, SHARED_DATA
from training.datasets.base import DatasetError
from training.datasets.flickr import SPLIT_FILES, dev_holdout, read_split_names
from training.datasets.registry import load_dataset

pytestmark = pytest.mark.skipif(
    not FLICKR8K_PHOTOS.is_dir(), reason=f"no real Flickr8k photos at {FLICKR8K_PHOTOS}"
)


def present(split_file: str) -> list[str]:
    names = read_split_names(SHARED_DATA / "flickr8k_text" / split_file)
    return [n for n in names if (FLICKR8K_PHOTOS / n).is_file()]


def test_train_uses_the_photos_present_and_reports_the_missing_in_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="training.datasets.registry"):
        train = load_dataset("flickr8k[train]", SHARED_DATA)
    expected = present(SPLIT_FILES["train"])
    assert [ex.image_id for ex in train.examples] == expected
    assert len(expected) == 753
    lines = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(lines) == 1
    assert "flickr8k[train]: 753 of 6000 photos present, 5247 missing" in lines[0]
    assert all(len(ex.captions) == 5 and ex.path.is_file() for ex in train.examples)


def test_every_photo_can_be_required():
    with pytest.raises(DatasetError, match=r"flickr8k\[train\]: 5247 of 6000 photos missing"):
        load_dataset("flickr8k[train]", SHARED_DATA, require_all=True)


def test_a_split_with_no_photo_present_is_refused(tmp_path):
    root = tmp_path / "flickr8k"
    root.mkdir()
    shutil.copytree(SHARED_DATA / "flickr8k_text", root / "Flickr8k_text")
    (root / "Flickr8k_Dataset").mkdir()
    with pytest.raises(DatasetError, match=r"none of its 6000 photos is in"):
        load_dataset("flickr8k[train]", tmp_path)


def test_dev_photos_are_split_into_val_and_a_held_out_test_by_the_documented_rule():
    dev = present(SPLIT_FILES["val"])
    val = [ex.image_id for ex in load_dataset("flickr8k[val]", SHARED_DATA).examples]
    test = [ex.image_id for ex in load_dataset("flickr8k[test]", SHARED_DATA).examples]
    assert not set(val) & set(test)
    assert sorted(val + test) == sorted(dev)
    assert (len(val), len(test)) == (57, 56)
    # The rule, written out independently: rank by sha256 of the name, first half is val.
    ranked = sorted(dev, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    assert set(val) == set(ranked[:57]) and set(test) == set(ranked[57:])
    assert dev_holdout(dev) == {"val": sorted(val), "test": sorted(test)}


def test_the_official_test_split_is_used_when_its_photos_are_there(tmp_path):
    root = tmp_path / "flickr8k"
    images = root / "Flickr8k_Dataset"
    images.mkdir(parents=True)
    shutil.copytree(SHARED_DATA / "flickr8k_text", root / "Flickr8k_text")
    official = read_split_names(SHARED_DATA / "flickr8k_text" / SPLIT_FILES["test"])
    some_dev = present(SPLIT_FILES["val"])[:3]
    photo = next(FLICKR8K_PHOTOS.iterdir()).read_bytes()
    for name in official[:2] + some_dev:
        (images / name).write_bytes(photo)
    test = load_dataset("flickr8k[test]", tmp_path)
    val = load_dataset("flickr8k[val]", tmp_path)
    assert [ex.image_id for ex in test.examples] == official[:2]
    assert len(val.examples) == 3
