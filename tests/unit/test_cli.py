"""The command line as a user meets it: real subprocesses, clear errors, no tracebacks."""

import json
import subprocess
import sys

import pytest


def captioner(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


@pytest.mark.java
def test_score_prints_one_json_object(tmp_path):
    refs = {
        "1": ["a dog runs on the grass", "a brown dog running"],
        "2": ["two people sit on a bench", "people on a bench"],
    }
    hyps = {"1": "a dog runs on grass", "2": "two people on a bench"}
    (tmp_path / "r.json").write_text(json.dumps(refs))
    (tmp_path / "h.json").write_text(json.dumps(hyps))
    result = captioner(
        "score", "--references", str(tmp_path / "r.json"), "--hypotheses", str(tmp_path / "h.json")
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert list(scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    assert 0 < scores["BLEU-1"] <= 1


def test_score_rejects_mismatched_ids(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"1": ["a dog"], "2": ["a cat"]}))
    (tmp_path / "h.json").write_text(json.dumps({"1": "a dog"}))
    result = captioner(
        "score", "--references", str(tmp_path / "r.json"), "--hypotheses", str(tmp_path / "h.json")
    )
    assert result.returncode != 0
    assert "Error:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("spec", ["shapes", "shapes[dev]", "shapes[train]-10", "nosuch[train]"])
def test_bad_dataset_spec_is_a_clear_error(spec):
    result = captioner("data", "--dataset", spec)
    assert result.returncode != 0
    assert "Error:" in result.stderr and "Traceback" not in result.stderr


def test_data_command_runs_the_checks():
    result = captioner("data", "--dataset", "shapes[train]")
    assert result.returncode == 0, result.stderr
    assert "train: 6000 of 6000 images present, 30000 captions" in result.stdout
    assert "[ok] train/test: disjoint by image" in result.stdout and "FAIL" not in result.stdout


def test_data_reports_a_dataset_with_no_photo_present(tmp_path):
    from tests.helpers import FLICKR8K_TEXT

    (tmp_path / "flickr8k").mkdir()
    (tmp_path / "flickr8k" / "Flickr8k_text").symlink_to(FLICKR8K_TEXT)
    result = captioner("data", "--dataset", "flickr8k[train]", "--data-root", str(tmp_path))
    assert result.returncode == 1
    assert "train: 0 of 6000 images present (6000 missing, first: " in result.stdout
    assert "no image of train, val, test is present" in result.stderr
    assert "captioner data fetch" in result.stderr and "Traceback" not in result.stderr


def test_missing_real_dataset_says_where_it_was_expected(tmp_path):
    result = captioner("data", "--dataset", "flickr30k[train]", "--data-root", str(tmp_path))
    assert result.returncode != 0
    assert "dataset_flickr30k.json" in result.stderr and "Traceback" not in result.stderr
