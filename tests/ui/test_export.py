"""Exporting feedback as a dataset the training registry loads unchanged."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from captioner.cli import feedback as feedback_group
from ui.export import export_feedback


@pytest.fixture
def known(store, make, jpeg, t0):
    """Feedback on four images, one of them before the export's start, one without bytes."""
    images = {n: jpeg(n) for n in range(1, 5)}
    old = make(image=images[4], caption="an old caption", created=t0 - timedelta(days=30))
    red_up = make(image=images[1], caption="a red square")
    red_fixed = make(image=images[1], rating="down", correction="a dark red square")
    blue_down = make(image=images[2], rating="down", caption="a blue cat")
    unstored = make(
        image_sha256=hashlib.sha256(images[3]).hexdigest(),
        caption="two circles",
        rating="down",
        correction="<script>alert(1)</script> three circles",
    )
    made = [old, red_up, red_fixed, blue_down, unstored]
    for fb in made:
        store.save(fb)
    return images, made


def test_export_loads_through_the_training_registry(store, known, tmp_path, t0):
    from training.datasets.base import DatasetError
    from training.datasets.registry import DATASETS, load_dataset
    from training.datasets.spec import parse_spec

    images, (old, red_up, red_fixed, blue_down, unstored) = known
    out = tmp_path / "export"
    summary = export_feedback(store, t0, out)

    assert summary["records"] == 4  # the old one is before the start
    assert summary["skipped"] == 1  # thumbs-down without a correction teaches nothing
    assert summary["captions"] == 3
    assert summary["images_written"] == 1
    assert summary["missing_images"] == 1
    assert summary["images_dir"] in summary["note"]
    written = json.loads((out / "coco" / "dataset_coco.json").read_text(encoding="utf-8"))
    assert summary["path"] == str(out / "coco" / "dataset_coco.json")
    assert {e["split"] for e in written["images"]} == {"train"}

    spec = parse_spec("coco[train]", DATASETS)
    dataset = load_dataset(spec, data_root=out, check_images=False)
    assert dataset.references() == {
        f"{red_up.image_sha256}.jpg": ["a red square", "a dark red square"],
        f"{unstored.image_sha256}.jpg": ["<script>alert(1)</script> three circles"],
    }
    partial = load_dataset(spec, data_root=out)  # the photos present, the missing counted
    assert [ex.image_id for ex in partial.examples] == [f"{red_up.image_sha256}.jpg"]
    with pytest.raises(DatasetError, match="1 of 2 photos missing"):
        load_dataset(spec, data_root=out, require_all=True)

    missing = out / "coco" / "images" / f"{unstored.image_sha256}.jpg"
    assert (out / "coco" / "missing_images.txt").read_text() == f"{missing.name}\n"
    missing.write_bytes(images[3])  # the operator copies the missing image in
    dataset = load_dataset(spec, data_root=out)
    pixels = {ex.image_id: dataset.image(ex).shape for ex in dataset.examples}
    assert pixels == {f"{red_up.image_sha256}.jpg": (12, 16, 3), missing.name: (12, 16, 3)}
    assert export_feedback(store, t0, out)["missing_images"] == 0


def test_export_command(store, known, mongo_uri, db_name, tmp_path, monkeypatch):
    out = tmp_path / "cli"
    runner = CliRunner()
    args = ["export", "--since", "2025-03-01", "--out", str(out), "--database", db_name]
    result = runner.invoke(feedback_group, [*args, "--mongodb-uri", mongo_uri])
    assert result.exit_code == 0, result.output
    assert (out / "coco" / "dataset_coco.json").is_file()
    assert '"captions": 3' in result.output

    monkeypatch.delenv("MONGODB_URI", raising=False)
    result = runner.invoke(feedback_group, args)
    assert result.exit_code != 0
    assert "MONGODB_URI" in result.output

    bad_day = [*args[:1], "--since", "March", *args[3:], "--mongodb-uri", mongo_uri]
    result = runner.invoke(feedback_group, bad_day)
    assert result.exit_code != 0
    assert "YYYY-MM-DD" in result.output
