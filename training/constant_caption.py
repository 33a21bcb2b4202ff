"""The constant baseline: the one caption that, given for every image, scores best.

Its search scores hundreds of candidates with a cached form of pycocoevalcap's
CIDEr-D; the score it reports is pycocoevalcap's own (:mod:`training.scoring`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from captioner.text import normalize
from training.scoring import ScoringError, check_inputs, score_captions


def best_constant_caption(
    train_captions: Sequence[str],
    references: Mapping[str, Sequence[str]],
    candidates: int = 300,
    seed: int | None = 0,
) -> tuple[str, float]:
    """The constant baseline: one caption, given for every image, that maximises CIDEr.

    Candidates are the normalised training captions: the most frequent half of
    ``candidates``, then a reproducible random sample of the others. The search uses
    a cached form of pycocoevalcap's CIDEr-D (the hypothesis is the same for every
    image, so its vector is computed once); the returned score is pycocoevalcap's own
    (``score_captions(..., tokenize=False)``).

    Returns:
        The normalised caption and its corpus CIDEr.
    """
    if candidates < 1:
        raise ScoringError(f"candidates must be at least 1, got {candidates}")
    counts = Counter(" ".join(normalize(c)) for c in train_captions)
    counts.pop("", None)
    if not counts:
        raise ScoringError("no non-empty training captions to choose a constant caption from")
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    pool = ranked[: max(1, candidates // 2)]
    rest = ranked[len(pool) :]
    pool += random.Random(seed).sample(rest, min(len(rest), candidates - len(pool)))

    check_inputs(references, dict.fromkeys(references, ""))
    cider = _ConstantCider([[" ".join(normalize(c)) for c in refs] for refs in references.values()])
    best = max(pool, key=lambda c: (cider(c), c))
    constant = dict.fromkeys(references, best)
    return best, score_captions(references, constant, ("CIDEr",), tokenize=False).corpus["CIDEr"]


class _ConstantCider:
    """pycocoevalcap's CIDEr-D (n=4, sigma=6) for one hypothesis shared by all images.

    The reference side (document frequencies, tf-idf vectors, norms, lengths) is
    computed once and kept as an inverted index, so each candidate costs only the
    postings of its own n-grams.
    """

    def __init__(self, refs_per_image: list[list[str]], n: int = 4, sigma: float = 6.0) -> None:
        from pycocoevalcap.cider.cider_scorer import cook_refs

        self.n, self.sigma = n, sigma
        cooked = [cook_refs(refs, n) for refs in refs_per_image]
        self.doc_freq: Counter[tuple[str, ...]] = Counter()
        for refs in cooked:
            self.doc_freq.update({g for ref in refs for g in ref})
        self.log_images = np.log(float(len(cooked)))
        postings: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        norms: list[list[float]] = []
        lengths: list[int] = []
        images: list[int] = []
        for image, refs in enumerate(cooked):
            for ref in refs:
                weights, norm, length = self._vector(ref)
                for gram, weight in weights.items():
                    rows, values = postings.setdefault(gram, ([], []))
                    rows.append(len(norms))
                    values.append(weight)
                norms.append(norm)
                lengths.append(length)
                images.append(image)
        self.postings = {g: (np.array(r), np.array(v)) for g, (r, v) in postings.items()}
        self.ref_norm = np.array(norms).T  # n x refs
        self.ref_len = np.array(lengths, dtype=float)
        self.image_of_ref = np.array(images)
        self.refs_per_image = np.array([len(refs) for refs in cooked], dtype=float)

    def _vector(self, counts: Mapping[tuple[str, ...], int]) -> tuple[dict, list[float], int]:
        weights: dict[tuple[str, ...], float] = {}
        norm = [0.0] * self.n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            weights[gram] = float(tf) * (self.log_images - np.log(max(1.0, self.doc_freq[gram])))
            norm[k] += weights[gram] ** 2
            if k == 1:  # pycocoevalcap counts "length" in bigrams; kept for equality
                length += tf
        return weights, [float(np.sqrt(x)) for x in norm], length

    def __call__(self, caption: str) -> float:
        from pycocoevalcap.cider.cider_scorer import cook_test

        weights, hyp_norm, hyp_len = self._vector(cook_test(caption, self.n))
        overlap = np.zeros_like(self.ref_norm)
        for gram, weight in weights.items():
            if gram in self.postings:
                rows, values = self.postings[gram]
                overlap[len(gram) - 1, rows] += np.minimum(weight, values) * values
        denominator = np.array(hyp_norm)[:, None] * self.ref_norm
        cosine = np.divide(overlap, denominator, out=overlap, where=denominator != 0)
        penalty = np.exp(-((hyp_len - self.ref_len) ** 2) / (2 * self.sigma**2))
        per_ref = cosine.sum(axis=0) * penalty
        per_image = np.bincount(self.image_of_ref, per_ref, len(self.refs_per_image))
        return float(np.mean(per_image / self.n / self.refs_per_image * 10.0))
