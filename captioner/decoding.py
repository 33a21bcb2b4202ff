"""Greedy and beam search over any one-step decoder, batched, in numpy.

The algorithm lives here once. Training plugs in the Keras decoder step, the
inference service plugs in the ONNX Runtime step, so both decode word for word
alike when their step functions agree.
"""

from __future__ import annotations

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
    length_penalty: float = 0.7

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {self.max_length}")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be non-negative, got {self.length_penalty}")


@dataclass
class Candidate:
    """One caption hypothesis: word ids (no specials), summed log-probability, rank score."""

    tokens: list[int]
    log_prob: float
    score: float
    attention: list[np.ndarray] = field(default_factory=list, repr=False)


def _rank_score(log_prob: float, steps: int, penalty: float) -> float:
    return log_prob / (max(steps, 1) ** penalty)


def greedy_search(
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    """Most likely word at each step, for a batch of images at once."""
    batch = features.shape[0]
    tokens = np.full((batch,), start_id, dtype=np.int32)
    words: list[list[int]] = [[] for _ in range(batch)]
    attention: list[list[np.ndarray]] = [[] for _ in range(batch)]
    log_probs = np.zeros(batch, dtype=np.float64)
    done = np.zeros(batch, dtype=bool)
    for step in range(options.max_length + 1):
        logp, state, alpha = model.step(features, tokens, state)
        if step == options.max_length:
            # No room for another word: close every caption still open with <end>.
            chosen = np.full(batch, end_id, dtype=np.int32)
        else:
            chosen = np.argmax(logp, axis=-1).astype(np.int32)
        for i in np.flatnonzero(~done):
            log_probs[i] += float(logp[i, chosen[i]])
            if alpha is not None:
                attention[i].append(np.asarray(alpha[i]))
            if chosen[i] == end_id:
                done[i] = True
            else:
                words[i].append(int(chosen[i]))
        tokens = chosen
        if done.all():
            break
    return [
        [
            Candidate(
                words[i],
                float(log_probs[i]),
                _rank_score(log_probs[i], len(words[i]) + 1, options.length_penalty),
                attention[i],
            )
        ]
        for i in range(batch)
    ]


@dataclass
class _Beam:
    image: int
    tokens: list[int]
    log_prob: float
    attention: list[np.ndarray]


def beam_search(
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    """Beam search for a batch of images; the beams of all images step together.

    Each image keeps ``beam_size`` open beams; a beam that emits ``<end>`` is
    finished. An image is done when it has ``beam_size`` finished beams and no
    open beam can still outrank the worst of them (log-probabilities only fall,
    so ``log_prob / (max_length + 1)**length_penalty`` bounds an open beam), or
    at ``max_length``. Candidates come back best first by rank score. Ties break
    towards the lower beam index, then the lower token id, so the search is
    deterministic.
    """
    k = options.beam_size
    batch = features.shape[0]
    beams = [_Beam(i, [], 0.0, []) for i in range(batch)]
    rows = np.arange(batch)
    tokens = np.full((batch,), start_id, dtype=np.int32)
    finished: list[list[Candidate]] = [[] for _ in range(batch)]
    for step in range(options.max_length + 1):
        logp, state, alpha = model.step(features[rows], tokens, state)
        last = step == options.max_length
        next_beams: list[_Beam] = []
        parents: list[int] = []
        next_tokens: list[int] = []
        for image in range(batch):
            mine = [j for j, b in enumerate(beams) if b.image == image]
            if not mine or _settled(finished[image], [beams[j] for j in mine], options):
                continue
            totals = np.array([beams[j].log_prob for j in mine])[:, None] + logp[mine].astype(
                np.float64
            )
            if last:
                # Force <end>: every open beam is finished as it stands.
                order = [(m, end_id) for m in range(len(mine))]
            else:
                flat = np.argsort(-totals, axis=None, kind="stable")[: 2 * k]
                order = [divmod(int(f), totals.shape[1]) for f in flat]
            for m, token in order:
                j = mine[m]
                beam = beams[j]
                total = float(totals[m, token])
                trail = beam.attention + ([np.asarray(alpha[j])] if alpha is not None else [])
                if token == end_id:
                    steps = len(beam.tokens) + 1
                    score = _rank_score(total, steps, options.length_penalty)
                    finished[image].append(Candidate(list(beam.tokens), total, score, trail))
                else:
                    if sum(1 for b in next_beams if b.image == image) >= k:
                        continue
                    next_beams.append(_Beam(image, [*beam.tokens, token], total, trail))
                    parents.append(j)
                    next_tokens.append(token)
        if not next_beams:
            break
        index = np.array(parents)
        state = [s[index] for s in state]
        rows = np.array([b.image for b in next_beams])
        tokens = np.array(next_tokens, dtype=np.int32)
        beams = next_beams
    for image in range(batch):
        finished[image].sort(key=lambda c: -c.score)
        del finished[image][k:]
    return finished


def _settled(finished: list[Candidate], open_beams: list[_Beam], options: DecodeOptions) -> bool:
    """True when ``beam_size`` finished candidates exist that no open beam can beat."""
    if len(finished) < options.beam_size:
        return False
    kth = sorted((c.score for c in finished), reverse=True)[options.beam_size - 1]
    longest = options.max_length + 1
    bound = max(b.log_prob for b in open_beams) / (longest**options.length_penalty)
    return bound <= kth


def decode(
    model: StepDecoder,
    features: np.ndarray,
    state: list[np.ndarray],
    start_id: int,
    end_id: int,
    options: DecodeOptions,
) -> list[list[Candidate]]:
    """Greedy search when ``beam_size`` is 1, beam search otherwise."""
    search = greedy_search if options.beam_size == 1 else beam_search
    return search(model, features, state, start_id, end_id, options)


def best_tokens(candidates: Sequence[Sequence[Candidate]]) -> list[list[int]]:
    """The top candidate's word ids for each image."""
    return [c[0].tokens for c in candidates]
