"""Flickr8k end to end on the real caption files, with stand-in images the test writes.

load -> vocabulary -> features of a frozen keras.applications encoder (cached)
-> one short epoch -> evaluation with coco-caption metrics.
"""

import json

import pytest

from captioner.text import Vocabulary
from tests.helpers import FLICKR8K_TEXT, write_stand_in_images
from training.datasets.registry import load_dataset
from training.datasets.spec import parse_spec
from training.evaluate import evaluate
from training.features import FEATURES
from training.run_dir import RunDir
from training.settings import EvalSettings, TrainSettings
from training.trainer import train

pytestmark = pytest.mark.skipif(
    not FLICKR8K_TEXT.is_dir(), reason=f"no Flickr8k text files at {FLICKR8K_TEXT}"
)

SPECS = {
    "train": "flickr8k[train]-300s1",
    "val": "flickr8k[val]-40s1",
    "test": "flickr8k[test]-40s1",
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "flickr8k").mkdir()
    (root / "flickr8k" / "Flickr8k_text").symlink_to(FLICKR8K_TEXT)
    # Test photos first: while none is present, val and test would be the two halves
    # of the dev photos present (the hold-out rule for a copy without test photos).
    for split, spec in reversed(SPECS.items()):
        names = [e.image_id for e in load_dataset(spec, root, check_images=False).examples]
        write_stand_in_images(
            root / "flickr8k" / "Flickr8k_Dataset", names, size=48, seed=len(split)
        )
    return root


def test_missing_photos_are_counted_not_raised_as_a_traceback(data_root, caplog):
    from training.datasets.base import DatasetError

    with caplog.at_level("INFO", logger="training.datasets.registry"):
        present = load_dataset("flickr8k[test]", data_root)
    assert len(present) == 40
    assert "flickr8k[test]: 40 of 1000 photos present, 960 missing" in caplog.text
    with pytest.raises(DatasetError, match=r"960 of 1000 photos missing in .* \(first: "):
        load_dataset("flickr8k[test]", data_root, require_all=True)


@pytest.mark.java
def test_flickr8k_trains_and_evaluates(data_root, tmp_path):
    run_dir = tmp_path / "runs" / "flickr8k"
    settings = TrainSettings(
        dataset=SPECS["train"],
        val_dataset=SPECS["val"],
        data_root=data_root,
        run_dir=run_dir,
        architecture="merge",
        encoder="mobilenet_v2",
        input_size=96,
        min_count=2,
        embed_dim=32,
        units=32,
        epochs=1,
        mlflow_tracking_uri=(tmp_path / "mlruns").as_uri(),
    )
    result = train(settings, progress=False)
    vocab = Vocabulary.load(RunDir(run_dir).vocab_path)
    assert 300 < len(vocab) < 3000 and vocab.max_length >= 15
    assert result.state.epoch == 1 and (result.model_dir / RunDir.WEIGHTS_FILE).is_file()
    cached = list(RunDir(run_dir).features_root.glob(f"mobilenet_v2-pooled-*/*/{FEATURES}"))
    assert len(cached) == 1

    out = RunDir(run_dir).eval_dir
    evaluation = evaluate(
        result.model_dir,
        parse_spec(SPECS["test"]),
        out,
        EvalSettings(data_root=data_root, beam_size=2),
    )
    scores = json.loads((out / RunDir.SCORES_FILE).read_text())["corpus"]
    assert set(scores) == {"greedy", "beam2", "constant", "nearest-neighbour"}
    for row in scores.values():
        assert {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr"} <= set(row)
        assert "correct" not in row
    assert evaluation.report.is_file()
