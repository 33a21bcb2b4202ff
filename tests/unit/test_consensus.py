"""Consensus re-ranking (captioner/consensus.py): its CIDEr-D is pycocoevalcap's, its
neighbours are the most similar photos, and its files round-trip or are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from captioner.consensus import (
    CONFIG_FILE,
    CiderD,
    ConsensusError,
    ConsensusReranker,
    document_frequencies,
)
from captioner.decoding import Candidate
from captioner.text import Vocabulary

REFS = {
    "a": ["a dog runs on the beach", "a brown dog running on sand", "the dog runs by the sea"],
    "b": ["a man rides a bike", "a cyclist on a road", "a man on a bicycle rides down a street"],
    "c": ["two children play in the snow", "kids playing in snow", "two kids in the snow"],
}
HYPS = {"a": "a dog running on the beach", "b": "a man riding a bike down a road", "c": "a dog"}


def test_cider_d_equals_pycocoevalcap_on_the_same_references():
    from pycocoevalcap.cider.cider import Cider

    corpus, per_image = Cider().compute_score(dict(REFS), {i: [HYPS[i]] for i in REFS})
    words = {i: [r.split() for r in refs] for i, refs in REFS.items()}
    cider = CiderD(dict(document_frequencies(words.values())), len(REFS))
    ours = [
        cider.score(cider.vector(HYPS[i].split()), [cider.vector(r) for r in words[i]])
        for i in REFS
    ]
    np.testing.assert_allclose(ours, per_image, rtol=1e-9, atol=1e-12)
    assert np.mean(ours) == pytest.approx(corpus)


def reranker(k: int = 1, weight: float = 0.0) -> ConsensusReranker:
    features = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    return ConsensusReranker.build(features, list(REFS.values()), k=k, weight=weight)


def vocab() -> Vocabulary:
    words = sorted({w for caps in [*REFS.values(), HYPS.values()] for c in caps for w in c.split()})
    return Vocabulary(("<pad>", "<start>", "<end>", "<unk>", *words), max_length=12)


def candidate(v: Vocabulary, text: str, score: float) -> Candidate:
    return Candidate(v.encode(text), 0.0, score)


def test_neighbours_are_the_most_similar_photos_first():
    r = reranker(k=2)
    assert list(r.neighbours(np.array([0.1, 0.9, 0.3], np.float32))) == [1, 2]
    assert list(r.neighbours(np.array([[0.9, 0.0, 0.2]], np.float32))) == [0, 2]


def test_rerank_puts_the_caption_the_neighbours_agree_with_first():
    v, r = vocab(), reranker(k=1)
    wrong = candidate(v, "two kids in the snow", score=-0.5)
    right = candidate(v, "a dog runs on the beach", score=-1.5)
    ranked = r.rerank(np.array([1.0, 0.1, 0.0], np.float32), [wrong, right], v)
    assert [v.decode(c.tokens) for c in ranked] == [
        "a dog runs on the beach",
        "two kids in the snow",
    ]
    assert ranked[0].consensus > ranked[1].consensus >= 0.0
    # With a heavy weight on the decoder's score, the decoder's order comes back.
    heavy = r.with_settings(weight=100.0).rerank(
        np.array([1.0, 0.1, 0.0], np.float32), [wrong, right], v
    )
    assert v.decode(heavy[0].tokens) == "two kids in the snow"


def test_the_nearest_neighbour_caption_is_the_neighbours_consensus():
    features = np.eye(3, dtype=np.float32)
    captions = [
        ["a man rides a bike", "a man rides a red bike", "a cat sleeps"],
        ["a man rides a bike down the hill", "a cat", "a dog"],
        ["a cat", "white snow", "white snow falls down", "white snow falls"],
    ]
    r = ConsensusReranker.build(features, captions, k=2)
    query = np.array([1.0, 0.8, 0.0], np.float32)  # photos 0 and 1 are its neighbours
    assert r.consensus_caption(query) == "a man rides a bike"
    assert r.consensus_caption(np.array([0.0, 0.1, 1.0], np.float32), k=1) == "white snow falls"


def test_files_round_trip_and_damage_is_refused(tmp_path):
    r = reranker(k=2, weight=0.3)
    r.save(tmp_path)
    loaded = ConsensusReranker.load(tmp_path)
    assert (loaded.k, loaded.weight) == (2, 0.3)
    np.testing.assert_array_equal(loaded.features, r.features)
    query = np.array([0.2, 0.1, 0.9], np.float32)
    assert loaded.consensus_caption(query) == r.consensus_caption(query)
    payload = json.loads((tmp_path / CONFIG_FILE).read_text())
    payload["captions"] = payload["captions"][:2]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(payload))
    with pytest.raises(ConsensusError, match="image count|do not match"):
        ConsensusReranker.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{")
    with pytest.raises(ConsensusError, match="cannot read"):
        ConsensusReranker.load(tmp_path)


def test_a_feature_of_the_wrong_size_is_refused():
    with pytest.raises(ConsensusError, match="does not fit"):
        reranker().neighbours(np.zeros(5, np.float32))
    with pytest.raises(ConsensusError, match="k must be"):
        reranker(k=4)


def test_other_settings_share_the_caption_vectors_and_are_checked():
    r = reranker(k=1)
    other = r.with_settings(k=2, weight=0.5)
    assert (other.k, other.weight, r.k, r.weight) == (2, 0.5, 1, 0.0)
    assert other._vectors is r._vectors
    with pytest.raises(ConsensusError, match="k must be"):
        r.with_settings(k=9)
