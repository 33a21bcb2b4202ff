"""Greedy and beam search over any one-step decoder, batched, in numpy.

The algorithm lives here once. Training plugs in the Keras decoder step, the
inference service plugs in the ONNX Runtime step, so both decode word for word
alike when their step functions agree.

Each image is an incremental search (:class:`GreedySearch`, :class:`BeamSearch`)
that owns its open hypotheses and advances by one word per step. A
:class:`BatchStepper` runs one decoder step for the open hypotheses of any set of
searches as one batch; offline decoding runs a fixed set to the end, the
inference service adds and removes searches between steps (continuous batching),
and both go through the same code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class StepDecoder(Protocol):
    """What decoding needs from a model: one step.

    ``features`` rows and state rows correspond one to one; decoding gathers
    feature rows itself when beams fan out. The initial state comes with the
    features (the ONNX encoder computes both; the Keras model has ``initial_state``).
    """

    def step(
        self, features: np.ndarray, tokens: np.ndarray, state: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        """Log-probabilities [B, V], the new state, attention weights [B, N] or None."""
        ...


# The decoding defaults: every other module takes them from here. A model whose
# decoding was never chosen on validation is evaluated with UNTUNED_BEAM_SIZE;
# its package is served greedy (captioner.package.Decoding).
DEFAULT_LENGTH_PENALTY = 0.7
UNTUNED_BEAM_SIZE = 3


@dataclass(frozen=True)
class DecodeOptions:
    """Search settings.

    Attributes:
        beam_size: 1 is greedy search.
        max_length: most words in a caption (``<end>`` not counted).
        length_penalty: finished beams rank by ``log_prob / steps**length_penalty``;
            0 ranks by raw log-probability, 1 by mean log-probability per step.
    """

    beam_size: int = 1
    max_length: int = 20
    length_penalty: float = DEFAULT_LENGTH_PENALTY

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {self.max_length}")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be non-negative, got {self.length_penalty}")


@dataclass
class Candidate:
    """One caption hypothesis: word ids (no specials), summed log-probability, rank score.

    ``consensus`` is set by re-ranking (:mod:`captioner.consensus`): the candidate's
    CIDEr-D against the captions of the nearest training photos.
    """

    tokens: list[int]
    log_prob: float
    score: float
    attention: list[np.ndarray] = field(default_factory=list, repr=False)
    consensus: float | None = None


_serials = itertools.count()


def _rank_score(log_prob: float, steps: int, penalty: float) -> float:
    return log_prob / (max(steps, 1) ** penalty)


class Search:
    """The search for one image: open hypotheses as rows, advanced one word per step.

    Attributes:
        tokens: the last token of each open hypothesis [rows].
        state: decoder state rows, one per open hypothesis.
        done: no open hypothesis is left to step.
    """

    def __init__(
        self,
        features: np.ndarray,
        state: Sequence[np.ndarray],
        start_id: int,
        end_id: int,
        options: DecodeOptions,
    ):
        if features.shape[0] != 1 or any(s.shape[0] != 1 for s in state):
            raise ValueError("a search starts from one image: features and state of batch 1")
        self.options = options
        self.end_id = end_id
        self.tokens = np.array([start_id], dtype=np.int32)
        self.state = list(state)
        self.done = False
        self.steps = 0
        self.serial = next(_serials)  # identity for step caches: ids of freed objects recur
        self._feature = features
        self._features = features

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def feature(self) -> np.ndarray:
        """The image's own feature row (what re-ranking compares with the training photos)."""
        return self._feature[0]

    @property
    def features(self) -> np.ndarray:
        """The image's feature row repeated once per open hypothesis."""
        if self._features.shape[0] != self.rows:
            self._features = np.repeat(self._feature, self.rows, axis=0)
        return self._features

    def advance(self, logp: np.ndarray, state: list[np.ndarray], alpha: np.ndarray | None) -> None:
        """Take one step's outputs for this search's rows."""
        raise NotImplementedError

    def result(self) -> list[Candidate]:
        """Ranked candidates, best first; valid once ``done``."""
        raise NotImplementedError


class GreedySearch(Search):
    """The most likely word at each step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._words: list[int] = []
        self._attention: list[np.ndarray] = []
        self._log_prob = 0.0

    def advance(self, logp, state, alpha):
        if self.steps == self.options.max_length:
            # No room for another word: close the caption with <end>.
            chosen = self.end_id
        else:
            chosen = int(np.argmax(logp[0]))
        self.steps += 1
        self._log_prob += float(logp[0, chosen])
        if alpha is not None:
            self._attention.append(np.asarray(alpha[0]))
        if chosen == self.end_id:
            self.done = True
        else:
            self._words.append(chosen)
        self.tokens = np.array([chosen], dtype=np.int32)
        self.state = state

    def result(self):
        steps = len(self._words) + 1
        score = _rank_score(self._log_prob, steps, self.options.length_penalty)
        return [Candidate(list(self._words), self._log_prob, score, self._attention)]


@dataclass
class _Beam:
    tokens: list[int]
    log_prob: float
    attention: list[np.ndarray]


class BeamSearch(Search):
    """Beam search for one image.

    The search keeps ``beam_size`` open beams; a beam that emits ``<end>`` is
    finished. It is done when it has ``beam_size`` finished beams and no open
    beam can still outrank the worst of them (log-probabilities only fall, so
    ``log_prob / (max_length + 1)**length_penalty`` bounds an open beam), or at
    ``max_length``. Ties break towards the lower beam index, then the lower
    token id, so the search is deterministic.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._beams = [_Beam([], 0.0, [])]
        self._finished: list[Candidate] = []

    def advance(self, logp, state, alpha):
        k = self.options.beam_size
        totals = np.array([b.log_prob for b in self._beams])[:, None] + logp.astype(np.float64)
        if self.steps == self.options.max_length:
            # Force <end>: every open beam is finished as it stands.
            order = [(m, self.end_id) for m in range(len(self._beams))]
        else:
            order = [divmod(int(f), totals.shape[1]) for f in _top(totals.ravel(), 2 * k)]
        self.steps += 1
        beams: list[_Beam] = []
        parents: list[int] = []
        for m, token in order:
            beam = self._beams[m]
            total = float(totals[m, token])
            trail = beam.attention + ([np.asarray(alpha[m])] if alpha is not None else [])
            if token == self.end_id:
                score = _rank_score(total, len(beam.tokens) + 1, self.options.length_penalty)
                self._finished.append(Candidate(list(beam.tokens), total, score, trail))
            elif len(beams) < k:
                beams.append(_Beam([*beam.tokens, token], total, trail))
                parents.append(m)
        self._beams = beams
        if not beams or self._settled():
            self.done = True
            return
        index = np.array(parents)
        self.state = [s[index] for s in state]
        self.tokens = np.array([b.tokens[-1] for b in beams], dtype=np.int32)

    def _settled(self) -> bool:
        """True when ``beam_size`` finished candidates exist that no open beam can beat."""
        options = self.options
        if len(self._finished) < options.beam_size:
            return False
        kth = sorted((c.score for c in self._finished), reverse=True)[options.beam_size - 1]
        longest = options.max_length + 1
        bound = max(b.log_prob for b in self._beams) / (longest**options.length_penalty)
        return bound <= kth

    def result(self):
        ranked = sorted(self._finished, key=lambda c: -c.score)
        return ranked[: self.options.beam_size]


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values, largest first, ties to the lower index.

    What ``np.argsort(-values, kind="stable")[:n]`` gives, without sorting a beam's
    whole vocabulary at every step (a tenth of the service's decoding thread at 64
    clients, beam 3): a partition finds the n-th largest, then only those are sorted.
    """
    if values.size <= n:
        chosen = np.arange(values.size)
    else:
        kth = values[np.argpartition(-values, n - 1)[n - 1]]
        above = np.flatnonzero(values > kth)
        chosen = np.concatenate([above, np.flatnonzero(values == kth)[: n - above.size]])
    return chosen[np.lexsort((chosen, -values[chosen]))]


def new_search(
    features: np.ndarray,
    state: Sequence[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> Search:
    """Greedy search when ``beam_size`` is 1, beam search otherwise, for one image."""
    return search_kind(options)(features, state, start_id, end_id, options)


def search_kind(options: DecodeOptions) -> type[Search]:
    """The search class the options ask for."""
    return GreedySearch if options.beam_size == 1 else BeamSearch


class BatchStepper:
    """Runs one decoder step for every open row of several searches, as one batch.

    The concatenated feature rows are kept while the searches and their row
    counts stay the same (greedy decoding of a fixed batch), so the usual step
    costs one copy of the state, not of the features.
    """

    def __init__(self, model: StepDecoder):
        self.model = model
        self._key: tuple[tuple[int, int], ...] = ()
        self._features: np.ndarray | None = None

    def step(self, searches: Sequence[Search]) -> int:
        """Advance every search that is not done by one word; returns the rows stepped."""
        active = [s for s in searches if not s.done]
        if not active:
            return 0
        key = tuple((s.serial, s.rows) for s in active)
        if key != self._key or self._features is None:
            self._features = np.concatenate([s.features for s in active])
            self._key = key
        tokens = np.concatenate([s.tokens for s in active])
        state = [np.concatenate(parts) for parts in zip(*(s.state for s in active), strict=True)]
        logp, new_state, alpha = self.model.step(self._features, tokens, state)
        offset = 0
        for search in active:
            end = offset + search.rows
            search.advance(
                logp[offset:end],
                [s[offset:end] for s in new_state],
                None if alpha is None else alpha[offset:end],
            )
            offset = end
        return offset


def _run(
    kind: type[Search],
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    searches = [
        kind(features[i : i + 1], [s[i : i + 1] for s in state], start_id, end_id, options)
        for i in range(features.shape[0])
    ]
    stepper = BatchStepper(model)
    while stepper.step(searches):
        pass
    return [s.result() for s in searches]


def greedy_search(
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    """Most likely word at each step, for a batch of images at once."""
    return _run(GreedySearch, model, features, state, start_id, end_id, options)


def beam_search(
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    """Beam search (see :class:`BeamSearch`) for a batch; the beams of all images step together."""
    return _run(BeamSearch, model, features, state, start_id, end_id, options)


def decode(
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    """Greedy search when ``beam_size`` is 1, beam search otherwise."""
    return _run(search_kind(options), model, features, state, start_id, end_id, options)


def best_tokens(candidates: Sequence[Sequence[Candidate]]) -> list[list[int]]:
    """The top candidate's word ids for each image."""
    return [c[0].tokens for c in candidates]
