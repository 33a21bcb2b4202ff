"""The data checks of ``captioner data`` on the built-in dataset, and that they catch problems."""

from dataclasses import replace

from captioner.text import Vocabulary
from training.datasets.base import CaptionDataset
from training.datasets.shapes import load_shapes
from training.datasets.validation import validate


def splits():
    return load_shapes("train", 600, 1), load_shapes("val", 100, 1), load_shapes("test", 100, 1)


def test_shapes_passes_every_check():
    train, val, test = splits()
    vocab = Vocabulary.build(train.all_captions())
    checks = validate(train, [val, test], vocab)
    assert len(checks) == 10 and all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_checks_catch_short_captions_leaks_and_unknown_words():
    train, val, test = splits()
    vocab = Vocabulary.build(train.all_captions())
    short = replace(val.examples[0], captions=val.examples[0].captions[:3])
    leaked = CaptionDataset("shapes", "test", [train.examples[0], *test.examples[1:]])
    strange = replace(val.examples[1], captions=("a purple hexagon",) * 5)
    odd_val = CaptionDataset("shapes", "val", [short, strange, *val.examples[2:]])
    failed = {
        c.name
        for c in validate(train, [odd_val, leaked], vocab, min_coverage=0.999)
        if not c.passed
    }
    assert failed == {
        "val: at least 5 captions per image",
        "train/test: disjoint by image",
        "val: vocabulary coverage >= 100%",
    }
