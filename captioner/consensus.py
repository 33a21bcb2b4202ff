"""Consensus re-ranking with the captions of the nearest training photos (Devlin et al. 2015).

A photo's nearest training photos, by cosine similarity of pooled encoder features,
bring their human captions; a caption that agrees with them (CIDEr-D against all
of them) is more likely right than one the decoder merely finds probable. The same
machinery gives the nearest-neighbour baseline: the neighbours' own caption that
agrees best with the others.

Numpy only, so that the service re-ranks exactly as evaluation does. CIDEr-D is
written here rather than taken from pycocoevalcap: pycocoevalcap recomputes the
document frequencies from whatever references it is handed, while re-ranking needs
them fixed, from the training captions, and shipped in the model package; a test
checks this scorer against pycocoevalcap's on the same references.

Files (a save/load pair): ``neighbours.npz`` (unit-norm features [N, D] float32,
the caption count of each photo) and ``consensus.json`` (captions as tokens,
document frequencies, ``k`` and ``weight``).
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from captioner.decoding import Candidate
from captioner.text import Vocabulary, normalize

FEATURES_FILE = "neighbours.npz"
CONFIG_FILE = "consensus.json"
FORMAT = 1
NGRAMS = 4
SIGMA = 6.0

Gram = tuple[str, ...]


class ConsensusError(ValueError):
    """Consensus files that are missing or malformed, or features that do not fit them."""


def ngrams(words: Sequence[str], n: int = NGRAMS) -> Counter[Gram]:
    """Counts of every 1..n-gram of ``words``."""
    return Counter(
        tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)
    )


def document_frequencies(captions_per_image: Iterable[Iterable[Sequence[str]]]) -> Counter[Gram]:
    """In how many images' reference sets each n-gram occurs (pycocoevalcap's ``df``)."""
    df: Counter[Gram] = Counter()
    for captions in captions_per_image:
        df.update({g for words in captions for g in ngrams(words)})
    return df


@dataclass(frozen=True)
class _Vector:
    counts: dict[Gram, int]
    norms: tuple[float, ...]
    length: int


class CiderD:
    """CIDEr-D (n = 4, sigma = 6, clipped tf-idf, length penalty) with fixed frequencies.

    Args:
        doc_freq: n-gram -> number of images whose references hold it.
        images: the number of images those frequencies were counted over.
    """

    def __init__(self, doc_freq: dict[Gram, float], images: int):
        if images < 1:
            raise ConsensusError("document frequencies need at least one image")
        self.doc_freq = doc_freq
        self.log_images = math.log(float(images))
        self.images = images

    def idf(self, gram: Gram) -> float:
        return self.log_images - math.log(max(1.0, self.doc_freq.get(gram, 0.0)))

    def vector(self, words: Sequence[str]) -> _Vector:
        counts = ngrams(words)
        norms = [0.0] * NGRAMS
        for gram, tf in counts.items():
            norms[len(gram) - 1] += (tf * self.idf(gram)) ** 2
        # pycocoevalcap measures length in bigrams; kept for equality.
        length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return _Vector(dict(counts), tuple(math.sqrt(x) for x in norms), length)

    def matrix(self, hyps: Sequence[_Vector], refs: Sequence[_Vector]) -> np.ndarray:
        """CIDEr-D of every hypothesis against every reference [H, R] (before the x10).

        With tf-idf weights ``w = tf * idf``, the clipped overlap ``min(w_h, w_r) * w_r``
        is ``idf**2 * min(tf_h, tf_r) * tf_r``, and ``min(a, b) = sum_t [a >= t][b >= t]``
        over counts t, so all pairs come from a few matrix products. Only the hypotheses'
        n-grams can overlap (the norms are the vectors' own), so they alone are columns:
        re-ranking three beams against fifty references then costs a tenth of the work.
        """
        columns: dict[Gram, int] = {}
        for vector in hyps:
            for gram in vector.counts:
                columns.setdefault(gram, len(columns))
        if not hyps or not refs or not columns:
            return np.zeros((len(hyps), len(refs)))
        order = np.array([len(g) - 1 for g in columns])
        idf2 = np.array([self.idf(g) ** 2 for g in columns])

        def dense(vectors: Sequence[_Vector]) -> np.ndarray:
            tf = np.zeros((len(vectors), len(columns)))
            for row, vector in enumerate(vectors):
                for gram, count in vector.counts.items():
                    column = columns.get(gram)
                    if column is not None:
                        tf[row, column] = count
            return tf

        h, r = dense(hyps), dense(refs)
        h_norm = np.array([v.norms for v in hyps])
        r_norm = np.array([v.norms for v in refs])
        total = np.zeros((len(hyps), len(refs)))
        for n in range(NGRAMS):
            cols = order == n
            hn, rn = h[:, cols], r[:, cols]
            weighted = rn * idf2[cols]
            overlap = np.zeros_like(total)
            for t in range(1, int(max(hn.max(initial=0), rn.max(initial=0))) + 1):
                overlap += (hn >= t).astype(float) @ ((rn >= t) * weighted).T
            denominator = h_norm[:, n][:, None] * r_norm[:, n][None, :]
            total += np.divide(
                overlap, denominator, out=np.zeros_like(total), where=denominator > 0
            )
        delta = np.array([v.length for v in hyps])[:, None] - np.array([v.length for v in refs])
        return total * np.exp(-(delta**2) / (2 * SIGMA * SIGMA)) / NGRAMS

    def score(self, hyp: _Vector, refs: Sequence[_Vector]) -> float:
        """CIDEr-D of a hypothesis against a reference set, on pycocoevalcap's scale."""
        if not refs:
            return 0.0
        return float(10.0 * self.matrix([hyp], refs).mean())


@dataclass
class ConsensusReranker:
    """The training photos' features and captions, and how re-ranking weighs them.

    Attributes:
        features: unit-norm pooled features of the training photos [N, D].
        captions: each photo's captions as normalised words.
        doc_freq: CIDEr-D document frequencies over those captions.
        k: neighbours consulted.
        weight: how much the decoder's rank score counts beside the consensus
            (``consensus + weight * score``); 0 ranks by consensus alone.
    """

    features: np.ndarray
    captions: list[list[list[str]]]
    doc_freq: dict[Gram, float]
    k: int = 30
    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != len(self.captions):
            raise ConsensusError(
                f"features {self.features.shape} do not match {len(self.captions)} photos"
            )
        if not 1 <= self.k <= len(self.captions):
            raise ConsensusError(f"k must be 1..{len(self.captions)}, got {self.k}")
        self.cider = CiderD(self.doc_freq, len(self.captions))
        self._vectors = [[self.cider.vector(c) for c in caps] for caps in self.captions]

    @classmethod
    def build(
        cls,
        features: np.ndarray,
        captions: Sequence[Sequence[str]],
        k: int = 30,
        weight: float = 0.0,
    ) -> ConsensusReranker:
        """From pooled features [N, D] and each photo's raw captions."""
        words = [[normalize(c) for c in caps] for caps in captions]
        df = document_frequencies(words)
        return cls(unit_rows(pooled(features)), words, dict(df), k, weight)

    def with_settings(self, k: int | None = None, weight: float | None = None) -> ConsensusReranker:
        """The same photos with another ``k`` or ``weight``; the caption vectors are shared.

        (``dataclasses.replace`` would rerun ``__post_init__`` and rebuild every vector.)
        """
        k = self.k if k is None else k
        if not 1 <= k <= len(self.captions):
            raise ConsensusError(f"k must be 1..{len(self.captions)}, got {k}")
        other = copy.copy(self)
        other.k, other.weight = k, self.weight if weight is None else weight
        return other

    def neighbours(self, feature: np.ndarray, k: int | None = None) -> np.ndarray:
        """Indices of the ``k`` most similar training photos, most similar first."""
        query = unit_rows(pooled(feature[None] if feature.ndim == 1 else feature))[0]
        if query.shape[0] != self.features.shape[1]:
            raise ConsensusError(
                f"a feature of size {query.shape[0]} does not fit neighbours of size "
                f"{self.features.shape[1]}"
            )
        k = self.k if k is None else k
        # Not ``features @ query``: that matrix-vector product goes to OpenBLAS's thread
        # pool, whose threads spin, and from the service's several image threads at once
        # they took 15% of its CPU at 64 clients (py-spy). einsum's own loop is one thread.
        similarity = np.einsum("ij,j->i", self.features, query)
        top = np.argpartition(-similarity, k - 1)[:k]
        return top[np.lexsort((top, -similarity[top]))]

    def rerank(
        self, feature: np.ndarray, candidates: list[Candidate], vocab: Vocabulary
    ) -> list[Candidate]:
        """Candidates ordered by ``consensus + weight * score``, each with its consensus."""
        if not candidates:
            return candidates
        refs = [v for i in self.neighbours(feature) for v in self._vectors[i]]
        hyps = [self.cider.vector(vocab.decode(c.tokens).split()) for c in candidates]
        consensus = 10.0 * self.cider.matrix(hyps, refs).mean(axis=1)
        scored = [
            replace(c, consensus=float(v)) for c, v in zip(candidates, consensus, strict=True)
        ]
        # Stable: equal totals keep the decoder's order.
        return sorted(scored, key=lambda c: -(float(c.consensus or 0.0) + self.weight * c.score))

    def consensus_caption(self, feature: np.ndarray, k: int | None = None) -> str:
        """The nearest-neighbour baseline: the neighbours' caption agreeing best with the rest.

        Each caption is scored against all the others (not itself); ties go to the
        nearer photo.
        """
        pool = [(i, j) for i in self.neighbours(feature, k) for j in range(len(self._vectors[i]))]
        vectors = [self._vectors[i][j] for i, j in pool]
        similarity = self.cider.matrix(vectors, vectors)
        np.fill_diagonal(similarity, 0.0)
        best = int(np.argmax(similarity.sum(axis=1)))
        i, j = pool[best]
        return " ".join(self.captions[i][j])

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``neighbours.npz`` and ``consensus.json`` into DIRECTORY."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / FEATURES_FILE, features=self.features.astype(np.float32))
        # Only n-grams in two or more images: the rest weigh as if absent (max(1, df)).
        df = {" ".join(g): int(n) for g, n in self.doc_freq.items() if n > 1}
        payload = {
            "format": FORMAT,
            "k": self.k,
            "weight": self.weight,
            "images": len(self.captions),
            "captions": [[" ".join(c) for c in caps] for caps in self.captions],
            "doc_freq": df,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(payload, separators=(",", ":")) + "\n")
        return [directory / FEATURES_FILE, directory / CONFIG_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> ConsensusReranker:
        """Read what :meth:`save` wrote, validating it."""
        directory = Path(directory)
        try:
            payload = json.loads((directory / CONFIG_FILE).read_text())
            with np.load(directory / FEATURES_FILE) as stored:
                features = np.asarray(stored["features"], np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise ConsensusError(f"cannot read the consensus files in {directory}: {exc}") from exc
        if payload.get("format") != FORMAT:
            raise ConsensusError(f"{CONFIG_FILE}: unsupported format {payload.get('format')!r}")
        try:
            captions = [[c.split() for c in caps] for caps in payload["captions"]]
            df = {tuple(g.split()): float(n) for g, n in payload["doc_freq"].items()}
            k, weight = int(payload["k"]), float(payload["weight"])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ConsensusError(f"{CONFIG_FILE} is malformed: {exc}") from exc
        if int(payload.get("images", len(captions))) != len(captions):
            raise ConsensusError(f"{CONFIG_FILE}: image count does not match its captions")
        return cls(features, captions, df, k, weight)


def pooled(features: np.ndarray) -> np.ndarray:
    """[B, D] features as they are; [B, N, D] grids averaged over positions."""
    features = np.asarray(features, np.float32)
    return features.mean(axis=1) if features.ndim == 3 else features


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
