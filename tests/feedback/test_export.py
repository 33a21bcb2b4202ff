"""Exporting feedback as the ``feedback`` dataset, which the training registry loads."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from cli.feedback import feedback as feedback_group
from feedback.export import ExportRules, NoDatabase, export_feedback, write_dataset
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
    summary = write_dataset(store, t0, out, ExportRules(holdout=0.0))

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
    assert write_dataset(store, t0, out, ExportRules(holdout=0.0))["missing_images"] == 0


def test_export_command(store, known, mongo_uri, db_name, tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTIONER_LOCAL_DB_DIR", str(tmp_path / "no-embedded-db"))
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
    monkeypatch.setenv("CAPTIONER_LOCAL_DB_DIR", str(tmp_path / "no-embedded-db"))
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
    summary = write_dataset(ListedStore(made), None, tmp_path, ExportRules(holdout=0.0))
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
    write_dataset(ListedStore([make(image=jpeg(3))]), None, tmp_path, ExportRules(holdout=0.0))
    with pytest.raises(DatasetError, match="no images in split 'val'"):
        load_dataset("feedback[val]", data_root=tmp_path)


def test_useless_and_repeated_captions_are_dropped_at_export(make, jpeg, tmp_path):
    """Feedback trains models, so an export keeps only captions worth learning from."""
    from training.datasets.registry import load_dataset

    images = [jpeg(n) for n in range(1, 7)]
    spam = "buy cheap watches online"
    made = [
        make(image=images[0], rating="down", correction="a dog runs on the grass"),
        make(image=images[0], rating="down", correction="A dog runs on the grass!"),  # again
        make(image=images[0], rating="down", correction="bad"),  # near-empty
        make(image=images[1], rating="down", correction="two words"),  # under 3 words
        make(image=images[1], rating="down", correction=" ".join(["word"] * 41)),  # too long
        make(image=images[1], rating="down", correction="a child in a red coat"),
        *(make(image=images[n], rating="down", correction=spam) for n in range(2, 6)),
    ]
    summary = write_dataset(ListedStore(made), None, tmp_path, ExportRules(holdout=0.0))
    assert summary["dropped"] == {"duplicate": 1, "too_short": 2, "too_long": 1, "repeated": 4}
    assert summary["images"] == 2 and summary["captions"] == 2
    dataset = load_dataset("feedback[train]", data_root=tmp_path)
    names = [f"{hashlib.sha256(image).hexdigest()}.jpg" for image in images[:2]]
    assert dataset.references() == {
        names[0]: ["a dog runs on the grass"],
        names[1]: ["a child in a red coat"],
    }
    # The images that only the spam named are not written either.
    assert sorted(p.name for p in (tmp_path / "feedback" / "images").iterdir()) == sorted(names)

    lenient = ExportRules(holdout=0.0, min_words=1, max_images_per_caption=10)
    summary = write_dataset(ListedStore(made), None, tmp_path / "lenient", lenient)
    assert summary["dropped"] == {"duplicate": 1, "too_long": 1}


def test_a_held_out_share_of_images_goes_to_test_by_their_digest(make, jpeg, tmp_path):
    from training.datasets.registry import load_dataset

    made = [
        make(image=jpeg(n), rating="down", correction=f"a picture number {n} of things")
        for n in range(40)
    ]
    rules = ExportRules(holdout=0.25)
    summary = write_dataset(ListedStore(made), None, tmp_path, rules)
    digests = [f.image_sha256 for f in made]
    expected = [d for d in digests if int(d[:8], 16) < 0.25 * 2**32]
    assert 0 < len(expected) < 40
    assert summary["splits"] == {"test": len(expected), "train": 40 - len(expected)}
    test = load_dataset("feedback[test]", data_root=tmp_path)
    assert sorted(ex.image_id for ex in test.examples) == sorted(f"{d}.jpg" for d in expected)
    # The same image stays in its split when more feedback arrives.
    more = [*made, make(image=jpeg(99), rating="down", correction="one more photo of it")]
    again = write_dataset(ListedStore(more), None, tmp_path / "later", rules)
    assert again["splits"]["test"] >= len(expected)
    later = load_dataset("feedback[test]", data_root=tmp_path / "later")
    assert {f"{d}.jpg" for d in expected} <= {ex.image_id for ex in later.examples}


def test_export_finds_the_embedded_database_the_page_keeps(make, jpeg, tmp_path):
    """No MONGODB_URI: the export reads the page's embedded database from its directory,
    starting it when the page is not running and stopping it after."""
    from feedback.localdb import LocalMongo, listening
    from feedback.store import FeedbackStore
    from tests.helpers import free_port

    data_dir, port = tmp_path / "mongo", free_port()
    settings = FeedbackSettings(local_db_dir=data_dir, local_db_port=port)
    with pytest.raises(NoDatabase, match="no embedded database in"):
        export_feedback(settings, out=tmp_path / "none")

    with LocalMongo(data_dir, port) as page_db:  # the page's, running
        with FeedbackStore(page_db.uri, "captioner") as store:
            store.save(make(image=jpeg(1), rating="down", correction="a cat on a warm roof"))
        summary = export_feedback(settings, out=tmp_path / "running")
        assert summary["captions"] == 1 and "running" in summary["database"]
        assert listening("127.0.0.1", port)  # the export left the page's server alone
    assert not listening("127.0.0.1", port)

    summary = export_feedback(settings, out=tmp_path / "stopped")  # started for the export
    assert summary["captions"] == 1 and summary["images_written"] == 1
    assert not listening("127.0.0.1", port)
