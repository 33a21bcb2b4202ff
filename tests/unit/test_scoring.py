"""Caption scoring: the coco-caption numbers, input checks, the constant baseline."""

from __future__ import annotations

import json

import pytest

from captioner.text import normalize
from tests.helpers import coco_scores
from training.constant_caption import best_constant_caption
from training.scoring import (
    METRIC_KEYS,
    ScoringError,
    score_captions,
    score_files,
)

REFERENCES = {
    "dog.jpg": [
        "A black dog is running through the grass.",
        "A dog runs across a green field!",
        "The black dog, running on grass.",
    ],
    "kids.jpg": [
        "Two children play on a swing set.",
        "Kids are playing in the park",
        "Two young kids on the swings .",
    ],
    "surf.jpg": [
        "A man surfs a big wave.",
        "A surfer riding a wave in the ocean",
        "Someone is surfing on a blue wave .",
    ],
    "bike.jpg": [
        "A man in a red shirt rides a bike.",
        "A cyclist on a dirt road",
        "Someone riding a bicycle down the road .",
    ],
    "cat.jpg": ["A cat sleeps on a sofa.", "A grey cat asleep"],
    "bird.jpg": ["A bird on a branch."],
}
HYPOTHESES = {
    "dog.jpg": "A black dog runs on the grass.",
    "kids.jpg": "Two kids play in a park",
    "surf.jpg": "A man rides a wave",
    "bike.jpg": "A dog on a bike",
    "cat.jpg": "A cat on a sofa",
    "bird.jpg": "A small bird",
}
# "..." is empty once tokenized.
WITH_EMPTY = dict(HYPOTHESES, **{"cat.jpg": "", "bird.jpg": "..."})
QUICK = ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr")  # no METEOR: its JVM takes seconds to start


@pytest.fixture(scope="module")
def coco_and_ours():
    """pycocoevalcap's numbers and ours for the same input, computed once."""
    return coco_scores(REFERENCES, WITH_EMPTY), score_captions(REFERENCES, WITH_EMPTY)


@pytest.mark.java
def test_scores_are_pycocoevalcaps_own(coco_and_ours):
    (expected, expected_per_image), scores = coco_and_ours
    assert list(scores.corpus) == list(METRIC_KEYS)
    assert scores.corpus == expected
    assert list(scores.per_image) == list(REFERENCES)
    for key in METRIC_KEYS:
        assert {i: s[key] for i, s in scores.per_image.items()} == expected_per_image[key]
    assert 0.0 < scores.corpus["BLEU-4"] < 1.0
    assert 0.0 < scores.corpus["METEOR"] < 1.0


@pytest.mark.java
def test_empty_hypotheses_score_zero_without_crashing(coco_and_ours):
    _, scores = coco_and_ours
    for image_id in ("cat.jpg", "bird.jpg"):
        assert scores.per_image[image_id]["METEOR"] == 0.0
        assert scores.per_image[image_id]["ROUGE-L"] == 0.0
        assert scores.per_image[image_id]["CIDEr"] == 0.0
    assert scores.per_image["dog.jpg"]["METEOR"] > 0.0
    everything_empty = score_captions(
        REFERENCES, dict.fromkeys(REFERENCES, ""), ("CIDEr",), tokenize=False
    )
    assert everything_empty.corpus["CIDEr"] == 0.0


def test_untokenized_scores_are_pycocoevalcaps_on_normalized_text():
    expected, expected_per_image = coco_scores(REFERENCES, WITH_EMPTY, tokenize=False)
    no_meteor = [k for k in METRIC_KEYS if k != "METEOR"]
    scores = score_captions(REFERENCES, WITH_EMPTY, metrics=no_meteor, tokenize=False)
    assert scores.corpus == expected
    for key in no_meteor:
        assert {i: s[key] for i, s in scores.per_image.items()} == expected_per_image[key]


def test_untokenized_cider_never_starts_java(monkeypatch):
    monkeypatch.setenv("PATH", "")
    scores = score_captions(REFERENCES, HYPOTHESES, metrics=("CIDEr",), tokenize=False)
    assert list(scores.corpus) == ["CIDEr"]
    assert scores.corpus["CIDEr"] > 0.0
    assert set(scores.per_image["dog.jpg"]) == {"CIDEr"}


@pytest.mark.parametrize(
    ("tokenize", "metrics", "needs"),
    [(True, ("CIDEr",), "PTB tokenizer"), (False, ("METEOR",), "METEOR")],
)
def test_missing_java_is_a_clear_error(monkeypatch, tokenize, metrics, needs):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ScoringError, match=f"{needs} needs a Java runtime.*'java' is not on PATH"):
        score_captions(REFERENCES, HYPOTHESES, metrics=metrics, tokenize=tokenize)


@pytest.mark.java
def test_a_hypothesis_equal_to_a_reference_scores_near_perfect():
    same = {i: refs[0] for i, refs in REFERENCES.items()}
    scores = score_captions(REFERENCES, same, metrics=QUICK)
    assert scores.corpus["BLEU-1"] == pytest.approx(1.0)
    assert scores.corpus["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert scores.corpus["ROUGE-L"] == pytest.approx(1.0)
    assert scores.corpus["CIDEr"] > 3.0
    other = score_captions(REFERENCES, HYPOTHESES, metrics=QUICK)
    assert scores.corpus["CIDEr"] > 2 * other.corpus["CIDEr"]


@pytest.mark.java
def test_line_breaks_inside_a_caption_do_not_shift_later_captions():
    # Java's tokenizer breaks lines at \r and U+2028; unguarded, every later caption
    # would be scored against the wrong image.
    broken = dict(HYPOTHESES, **{"dog.jpg": "A black dog\rruns on the\u2028grass."})
    expected = score_captions(REFERENCES, HYPOTHESES, QUICK).per_image
    assert score_captions(REFERENCES, broken, QUICK).per_image == expected


def test_mismatched_ids_are_reported_with_counts_and_names():
    hypotheses = {k: v for k, v in HYPOTHESES.items() if k != "kids.jpg"}
    hypotheses["horse.jpg"] = "a horse"
    with pytest.raises(ScoringError) as info:
        score_captions(REFERENCES, hypotheses, tokenize=False, metrics=("CIDEr",))
    message = str(info.value)
    assert "1 image(s) without a hypothesis (first: kids.jpg)" in message
    assert "1 hypothesis id(s) not in the references (first: horse.jpg)" in message


def test_many_missing_ids_show_only_the_first_few():
    references = {f"{n}.jpg": ["a caption"] for n in range(20)}
    with pytest.raises(
        ScoringError,
        match=r"20 image\(s\) without .*first: 0.jpg, 1.jpg, 2.jpg, 3.jpg, 4.jpg, \.\.\.\)",
    ):
        score_captions(references, {}, tokenize=False, metrics=("CIDEr",))


@pytest.mark.parametrize(
    ("references", "hypotheses", "message"),
    [
        ({"a": ["x"]}, {"a": 3}, "hypothesis of 'a' must be a string, got int"),
        ({"a": ["x"]}, {"a": ["x"]}, "hypothesis of 'a' must be a string, got list"),
        ({"a": []}, {"a": "x"}, "references of 'a' are empty"),
        ({"a": "x y"}, {"a": "x"}, "references of 'a' must be a list of strings, got str"),
        ({"a": ["x", None]}, {"a": "x"}, "references of 'a' must be strings, got NoneType"),
        ({}, {}, "nothing to score"),
    ],
)
def test_malformed_inputs_are_scoring_errors(references, hypotheses, message):
    with pytest.raises(ScoringError, match=message):
        score_captions(references, hypotheses, metrics=("CIDEr",), tokenize=False)
    assert issubclass(ScoringError, ValueError)


def test_unknown_metric_is_named():
    with pytest.raises(ScoringError, match="unknown metric.*'SPICE'.*known: BLEU-1"):
        score_captions(REFERENCES, HYPOTHESES, metrics=("CIDEr", "SPICE"), tokenize=False)


TRAIN_CAPTIONS = [
    "A dog runs on the grass .",
    "a dog runs on the grass",
    "A man rides a wave .",
    "Two kids play in the park .",
    "A man on a bike .",
    "A black dog .",
    "A man in a red shirt .",
    "Someone riding a bicycle .",
    "A person .",
    "a man is riding a wave in the ocean",
    "Two children on a swing",
    "A cat on a sofa",
    "",
]


def constant_cider(caption: str) -> float:
    constant = dict.fromkeys(REFERENCES, caption)
    return score_captions(REFERENCES, constant, ("CIDEr",), tokenize=False).corpus["CIDEr"]


def test_best_constant_caption_beats_every_other_training_caption():
    caption, score = best_constant_caption(TRAIN_CAPTIONS, REFERENCES, candidates=100)
    assert score == constant_cider(caption)
    assert caption == " ".join(normalize(caption))
    others = {other: constant_cider(other) for other in TRAIN_CAPTIONS}
    assert all(score >= s for s in others.values()), others
    assert score == max(others.values())
    assert score > 0.0


def test_best_constant_caption_samples_reproducibly_and_keeps_the_frequent_ones():
    first = best_constant_caption(TRAIN_CAPTIONS, REFERENCES, candidates=3, seed=1)
    assert first == best_constant_caption(TRAIN_CAPTIONS, REFERENCES, candidates=3, seed=1)
    # The most frequent normalised caption is always a candidate.
    assert first[1] >= constant_cider("a dog runs on the grass")
    just_the_top = best_constant_caption(TRAIN_CAPTIONS, REFERENCES, candidates=1)
    assert just_the_top == ("a dog runs on the grass", constant_cider("a dog runs on the grass"))


def test_best_constant_caption_needs_captions():
    with pytest.raises(ScoringError, match="no non-empty training captions"):
        best_constant_caption(["", "..."], REFERENCES)


@pytest.mark.java
def test_score_files_reads_both_jsons(tmp_path, coco_and_ours):
    refs, hyps = tmp_path / "refs.json", tmp_path / "hyps.json"
    refs.write_text(json.dumps(REFERENCES))
    hyps.write_text(json.dumps(WITH_EMPTY))
    assert score_files(refs, hyps) == coco_and_ours[0][0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no hypotheses file at"),
        ("{not json", "hypotheses file .* is not valid JSON"),
        ('["a caption"]', r"must hold a JSON object \(image id -> caption\), got list"),
        ('{"dog.jpg": "a dog"}', r"5 image\(s\) without a hypothesis"),
        (b"\xff\xfe{", "cannot read hypotheses file"),
    ],
)
def test_score_files_reports_bad_files(tmp_path, content, message):
    refs, hyps = tmp_path / "refs.json", tmp_path / "hyps.json"
    refs.write_text(json.dumps(REFERENCES))
    if isinstance(content, bytes):
        hyps.write_bytes(content)
    elif content is not None:
        hyps.write_text(content)
    with pytest.raises(ScoringError, match=message):
        score_files(refs, hyps)


def test_score_files_names_a_missing_references_file(tmp_path):
    hyps = tmp_path / "hyps.json"
    hyps.write_text(json.dumps(HYPOTHESES))
    with pytest.raises(ScoringError, match="no references file at .*nothing.json"):
        score_files(tmp_path / "nothing.json", hyps)


def test_paired_bootstrap_separates_a_better_system_and_not_noise():
    import numpy as np

    from training.bootstrap import bootstrap

    rng = np.random.default_rng(3)
    base = rng.uniform(0.0, 1.0, 60)
    better = base + 0.2 + rng.normal(0, 0.05, 60)
    ci = bootstrap(better, base, resamples=4000)
    assert ci.excludes_zero() and ci.low > 0.15 and ci.mean == pytest.approx(0.2, abs=0.03)
    noise = base + rng.normal(0, 0.05, 60)
    assert not bootstrap(noise, base, resamples=4000).excludes_zero()
    single = bootstrap(base)
    assert single.low < base.mean() < single.high
    # The same seed gives the same interval; a paired interval needs paired lengths.
    assert bootstrap(better, base, seed=1) == bootstrap(better, base, seed=1)
    with pytest.raises(ScoringError, match="differ in length"):
        bootstrap(better, base[:-1])
