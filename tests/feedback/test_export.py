"""Exporting feedback as the ``feedback`` dataset, which the training registry loads."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from cli.feedback import feedback as feedback_group
from feedback.export import NoDatabase, export_feedback, write_dataset
from feedback.settings import FeedbackSettings


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
    summary = write_dataset(store, t0, out)

    assert summary["records"] == 4  # the old one is before the start
    assert summary["skipped"] == 1  # thumbs-down without a correction teaches nothing
    assert summary["captions"] == 3
    assert summary["images_written"] == 1
    assert summary["missing_images"] == 1
    assert summary["images_dir"] in summary["note"]
    written = json.loads((out / "feedback" / "dataset_feedback.json").read_text(encoding="utf-8"))
    assert summary["path"] == str(out / "feedback" / "dataset_feedback.json")
    assert {e["split"] for e in written["images"]} == {"train"}
    assert written["dataset"] == "feedback"

    spec = parse_spec("feedback[train]", DATASETS)
    dataset = load_dataset(spec, data_root=out, check_images=False)
    assert dataset.references() == {
        f"{red_up.image_sha256}.jpg": ["a red square", "a dark red square"],
        f"{unstored.image_sha256}.jpg": ["<script>alert(1)</script> three circles"],
    }
    partial = load_dataset(spec, data_root=out)  # the photos present, the missing counted
    assert [ex.image_id for ex in partial.examples] == [f"{red_up.image_sha256}.jpg"]
    with pytest.raises(DatasetError, match="1 of 2 photos missing"):
        load_dataset(spec, data_root=out, require_all=True)

    missing = out / "feedback" / "images" / f"{unstored.image_sha256}.jpg"
    assert (out / "feedback" / "missing_images.txt").read_text() == f"{missing.name}\n"
    missing.write_bytes(images[3])  # the operator copies the missing image in
    dataset = load_dataset(spec, data_root=out)
    pixels = {ex.image_id: dataset.image(ex).shape for ex in dataset.examples}
    assert pixels == {f"{red_up.image_sha256}.jpg": (12, 16, 3), missing.name: (12, 16, 3)}
    assert write_dataset(store, t0, out)["missing_images"] == 0


def test_export_command(store, known, mongo_uri, db_name, tmp_path, monkeypatch):
    out = tmp_path / "cli"
    runner = CliRunner()
    args = ["export", "--since", "2025-03-01", "--out", str(out), "--database", db_name]
    result = runner.invoke(feedback_group, [*args, "--mongodb-uri", mongo_uri])
    assert result.exit_code == 0, result.output
    assert (out / "feedback" / "dataset_feedback.json").is_file()
    assert '"captions": 3' in result.output

    monkeypatch.delenv("MONGODB_URI", raising=False)
    result = runner.invoke(feedback_group, args)
    assert result.exit_code != 0
    assert "MONGODB_URI" in result.output

    bad_day = [*args[:1], "--since", "March", *args[3:], "--mongodb-uri", mongo_uri]
    result = runner.invoke(feedback_group, bad_day)
    assert result.exit_code != 0
    assert "YYYY-MM-DD" in result.output


def test_export_reads_the_database_from_the_feedback_settings(
    store, known, mongo_uri, db_name, tmp_path, t0, monkeypatch
):
    settings = FeedbackSettings(mongodb_uri=mongo_uri, mongodb_database=db_name)
    summary = export_feedback(settings, since=t0, out=tmp_path / "out")
    assert (summary["records"], summary["captions"]) == (4, 3)
    assert summary["path"] == str(tmp_path / "out" / "feedback" / "dataset_feedback.json")

    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("CAPTIONER_MONGODB_DATABASE", db_name)
    from_env = export_feedback(FeedbackSettings(), out=tmp_path / "env")
    assert from_env["records"] == 5  # no start: the old one too

    monkeypatch.delenv("MONGODB_URI")
    with pytest.raises(NoDatabase, match="MONGODB_URI"):
        export_feedback(FeedbackSettings(), since=t0, out=tmp_path / "none")
    assert not (tmp_path / "none").exists()  # refused before writing anything


class ListedStore:
    """The one method an export reads, over feedback held in memory."""

    def __init__(self, feedback):
        self.feedback = feedback

    def scan(self, since=None, *, images=False):
        return iter(f for f in self.feedback if since is None or f.created >= since)


def test_an_export_round_trips_through_the_registry(make, jpeg, tmp_path):
    """Written by the feedback component, read by training: the folder layout is the contract."""
    from training.datasets.registry import load_dataset

    first, second = jpeg(1), jpeg(2)
    made = [
        make(image=first, caption="a red square"),
        make(image=first, rating="down", correction="a dark red square"),
        make(image=first, caption="a red square"),  # the same sentence again: kept once
        make(image=second, rating="down", correction="two blue circles"),
        make(image=second, rating="down"),  # nothing to teach
    ]
    summary = write_dataset(ListedStore(made), None, tmp_path)
    assert (summary["records"], summary["captions"], summary["skipped"]) == (5, 3, 1)
    assert (summary["images_written"], summary["missing_images"]) == (2, 0)
    assert "note" not in summary

    dataset = load_dataset("feedback[train]", data_root=tmp_path)
    assert dataset.name == "feedback" and dataset.split == "train"
    names = [f"{hashlib.sha256(image).hexdigest()}.jpg" for image in (first, second)]
    assert dataset.references() == {
        names[0]: ["a red square", "a dark red square"],
        names[1]: ["two blue circles"],
    }
    assert [dataset.image(ex).shape for ex in dataset.examples] == [(12, 16, 3)] * 2
    sampled = load_dataset("feedback[train]-1s7", data_root=tmp_path)
    assert len(sampled) == 1 and sampled.examples[0].image_id in names


def test_the_feedback_dataset_holds_only_what_was_exported(make, jpeg, tmp_path):
    from training.datasets.base import DatasetError
    from training.datasets.registry import load_dataset

    with pytest.raises(DatasetError, match="captioner feedback export"):
        load_dataset("feedback[train]", data_root=tmp_path)
    write_dataset(ListedStore([make(image=jpeg(3))]), None, tmp_path)
    with pytest.raises(DatasetError, match="no images in split 'val'"):
        load_dataset("feedback[val]", data_root=tmp_path)
