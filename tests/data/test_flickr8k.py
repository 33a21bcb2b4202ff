"""Flickr8k loaders on the real text files, Karpathy JSON, and the metrics on real captions.

The Flickr8k text files are read from ``../shared/data/flickr8k_text`` beside the
repository (never copied into it); images are tiny stand-in JPEGs written here.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import FLICKR8K_TEXT, coco_scores
from training.datasets.base import DatasetError
from training.datasets.flickr import (
    SPLIT_FILES,
    TOKEN_FILE,
    load_flickr8k_original,
    read_flickr8k_captions,
    read_split_names,
)
from training.datasets.karpathy import load_karpathy
from training.scoring import METRIC_KEYS, score_files

TEXT_DIR = FLICKR8K_TEXT
OFFICIAL_SIZES = {"train": 6000, "val": 1000, "test": 1000}


def write_images(folder: Path, names) -> Path:
    """Stand-in JPEGs (8x8) for the given file names."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buffer, "JPEG")
    for name in names:
        (folder / name).write_bytes(buffer.getvalue())
    return folder


@pytest.fixture(scope="module")
def text_dir() -> Path:
    if not (TEXT_DIR / TOKEN_FILE).is_file():
        pytest.skip(f"the Flickr8k text files are not at {TEXT_DIR} (../shared/data/flickr8k_text)")
    return TEXT_DIR


@pytest.fixture(scope="module")
def split_names(text_dir) -> dict[str, list[str]]:
    return {split: read_split_names(text_dir / name) for split, name in SPLIT_FILES.items()}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, split_names) -> Path:
    names = [n for names in split_names.values() for n in names]
    return write_images(tmp_path_factory.mktemp("Flickr8k_Dataset"), names)


def test_official_splits_have_five_captions_per_image_and_are_disjoint(text_dir, image_dir):
    loaded = {}
    for split, size in OFFICIAL_SIZES.items():
        examples = load_flickr8k_original(text_dir, image_dir, split)
        assert len(examples) == size
        assert len({ex.image_id for ex in examples}) == size
        assert all(len(ex.captions) == 5 for ex in examples)
        assert all(ex.path == image_dir / ex.image_id for ex in examples)
        assert all(
            ex.image_id.endswith(".jpg") and c.strip() for ex in examples for c in ex.captions
        )
        loaded[split] = {ex.image_id for ex in examples}
    assert not loaded["train"] & loaded["val"]
    assert not loaded["train"] & loaded["test"]
    assert not loaded["val"] & loaded["test"]


def test_captions_follow_the_token_file(text_dir, split_names):
    examples = load_flickr8k_original(text_dir, Path("unused"), "test", check=False)
    first = examples[0]
    assert first.image_id == split_names["test"][0]
    lines = (text_dir / TOKEN_FILE).read_text().splitlines()
    expected = [line.split("\t")[1] for line in lines if line.startswith(f"{first.image_id}#")]
    assert list(first.captions) == [c.strip() for c in expected]


def test_reading_the_token_file_is_fast(text_dir):
    start = time.process_time()
    captions = read_flickr8k_captions(text_dir / TOKEN_FILE)
    assert time.process_time() - start < 1.0
    assert len(captions) > 8000


def test_captions_are_ordered_by_their_index(tmp_path):
    lines = ["b.jpg#1\tsecond of b", "b.jpg#0\tfirst of b", "a.jpg#2\tthird", "a.jpg#0\tfirst"]
    (tmp_path / TOKEN_FILE).write_text("\n".join([*lines, "a.jpg#1\tsecond"]) + "\n")
    (tmp_path / SPLIT_FILES["val"]).write_text("a.jpg\nb.jpg\n")
    examples = load_flickr8k_original(tmp_path, tmp_path, "val", check=False)
    assert [ex.captions for ex in examples] == [
        ("first", "second", "third"),
        ("first of b", "second of b"),
    ]


def test_missing_images_are_counted_and_named(text_dir, split_names, tmp_path):
    names = split_names["test"]
    partial = write_images(tmp_path / "images", names[:3])
    with pytest.raises(DatasetError) as info:
        load_flickr8k_original(text_dir, partial, "test")
    message = str(info.value)
    assert f"flickr8k[test] in {partial}" in message
    assert f"997 missing (first: {', '.join(names[3:8])})" in message
    assert "Traceback" not in message


def test_a_missing_image_folder_is_named(text_dir, tmp_path):
    with pytest.raises(DatasetError, match=f"image folder {tmp_path / 'nowhere'} does not exist"):
        load_flickr8k_original(text_dir, tmp_path / "nowhere", "val")


@pytest.mark.parametrize("missing", [TOKEN_FILE, SPLIT_FILES["test"]])
def test_a_missing_text_file_is_named(text_dir, tmp_path, missing):
    for name in (TOKEN_FILE, SPLIT_FILES["test"]):
        if name != missing:
            (tmp_path / name).write_text((text_dir / name).read_text())
    with pytest.raises(DatasetError, match=f"missing dataset file {tmp_path / missing}"):
        load_flickr8k_original(tmp_path, tmp_path, "test", check=False)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("a.jpg#0 no tab here\n", r"Flickr8k.token.txt:1: expected 'IMAGE.jpg#N<TAB>caption'"),
        (
            "a.jpg#0\tone\na.jpg#0\tagain\n",
            r"Flickr8k.token.txt:2: caption 'a.jpg#0' appears twice",
        ),
        ("b.jpg#0\tonly b\n", r"1 image\(s\) of Flickr_8k.devImages.txt have no caption"),
    ],
)
def test_malformed_text_files_are_dataset_errors(tmp_path, tokens, message):
    (tmp_path / TOKEN_FILE).write_text(tokens)
    (tmp_path / SPLIT_FILES["val"]).write_text("a.jpg\n")
    with pytest.raises(DatasetError, match=message):
        load_flickr8k_original(tmp_path, tmp_path, "val", check=False)


def test_unknown_split_is_a_dataset_error(text_dir):
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        load_flickr8k_original(text_dir, text_dir, "dev", check=False)


def karpathy_entry(name, split, folder=None, captions=("a caption .",)):
    entry = {
        "filename": name,
        "split": split,
        "imgid": 0,
        "sentences": [{"raw": c, "tokens": c.split()} for c in captions],
    }
    if folder is not None:
        entry["filepath"] = folder
    return entry


@pytest.fixture
def karpathy_json(tmp_path) -> Path:
    images = [
        karpathy_entry("t1.jpg", "train", "train2014", ("A dog runs. ", "A dog is running.")),
        karpathy_entry("v1.jpg", "val", "val2014"),
        karpathy_entry("r1.jpg", "restval", "val2014", ("A cat sits.",)),
        karpathy_entry("x1.jpg", "test", "val2014"),
        karpathy_entry("t2.jpg", "train", "train2014"),
    ]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    write_images(tmp_path / "train2014", ["t1.jpg", "t2.jpg"])
    write_images(tmp_path / "val2014", ["v1.jpg", "r1.jpg", "x1.jpg"])
    return path


def test_karpathy_counts_restval_as_train(karpathy_json, tmp_path):
    train = load_karpathy(karpathy_json, tmp_path, "train")
    assert [ex.image_id for ex in train] == ["t1.jpg", "r1.jpg", "t2.jpg"]
    assert train[0].captions == ("A dog runs.", "A dog is running.")
    assert train[1].captions == ("A cat sits.",)
    assert train[1].path == tmp_path / "val2014" / "r1.jpg"
    assert [ex.image_id for ex in load_karpathy(karpathy_json, tmp_path, "val")] == ["v1.jpg"]
    assert [ex.image_id for ex in load_karpathy(karpathy_json, tmp_path, "test")] == ["x1.jpg"]


def test_karpathy_without_filepath_uses_the_image_root(tmp_path):
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps({"images": [karpathy_entry("f.jpg", "test")]}))
    write_images(tmp_path / "images", ["f.jpg"])
    (example,) = load_karpathy(path, tmp_path / "images", "test")
    assert example.path == tmp_path / "images" / "f.jpg"


def test_karpathy_missing_images_are_counted(karpathy_json, tmp_path):
    (tmp_path / "val2014" / "r1.jpg").unlink()
    with pytest.raises(
        DatasetError, match=r"dataset_coco.json\[train\].*1 missing \(first: r1.jpg\)"
    ):
        load_karpathy(karpathy_json, tmp_path, "train")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "missing dataset file"),
        ("{oops", "is not valid JSON"),
        ('{"images": 3}', "is not a Karpathy split file"),
        ('{"images": [{"split": "test", "sentences": []}]}', r"images\[0\] has no 'filename'"),
        (
            '{"images": [{"filename": "a.jpg", "split": "test", "sentences": []}]}',
            r"images\[0\] \(a.jpg\) has no sentences",
        ),
        (
            '{"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"x": 1}]}]}',
            "a sentence needs a 'raw' string",
        ),
        ('{"images": [{"filename": "a.jpg", "split": "train", "sentences": []}]}', "no images in"),
    ],
)
def test_malformed_karpathy_files_are_dataset_errors(tmp_path, content, message):
    path = tmp_path / "dataset_flickr8k.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_karpathy(path, tmp_path, "test", check=False)


@pytest.mark.java
def test_human_caption_scores_equal_pycocoevalcaps_own(text_dir, tmp_path):
    """Human caption #0 of each test image against #1-#4: the coco-caption numbers."""

    examples = load_flickr8k_original(text_dir, Path("unused"), "test", check=False)
    references = {ex.image_id: list(ex.captions[1:]) for ex in examples}
    hypotheses = {ex.image_id: ex.captions[0] for ex in examples}
    refs_path, hyps_path = tmp_path / "references.json", tmp_path / "hypotheses.json"
    refs_path.write_text(json.dumps(references))
    hyps_path.write_text(json.dumps(hypotheses))
    start = time.perf_counter()
    ours = score_files(refs_path, hyps_path)
    print(f"score_files on {len(examples)} images: {time.perf_counter() - start:.1f} s")
    print(json.dumps(ours, indent=1))

    expected, _ = coco_scores(references, hypotheses)
    assert list(ours) == list(METRIC_KEYS)
    assert ours == expected
    # Human agreement on Flickr8k: plausible ranges, so a mix-up of ids could not pass.
    assert 0.15 < ours["BLEU-4"] < 0.35
    assert 0.15 < ours["METEOR"] < 0.30
    assert 0.6 < ours["CIDEr"] < 1.2
