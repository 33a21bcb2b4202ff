"""Caption normalisation and the vocabulary, one implementation for all components."""

from __future__ import annotations

import json
import math
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
VOCAB_FORMAT = 1

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(caption: str) -> list[str]:
    """Tokens of a caption as the seed cleaned them.

    Lower case, punctuation removed (``t-shirt`` becomes ``tshirt``), tokens that
    contain a digit dropped. Nothing is substituted or invented.
    """
    words = caption.lower().translate(_PUNCTUATION).split()
    return [w for w in words if not any(ch.isdigit() for ch in w)]


class VocabularyError(ValueError):
    """A vocabulary file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Vocabulary:
    """Token ids for captions: specials first (``<pad>`` is 0), then words by frequency.

    ``max_length`` counts words; a decoded caption has at most that many words, and
    a training sequence has ``max_length + 1`` steps (``<start>`` + words, words + ``<end>``).
    """

    tokens: tuple[str, ...]
    max_length: int
    min_count: int = 1
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise VocabularyError(f"vocabulary must start with {SPECIALS}, got {self.tokens[:4]}")
        if len(set(self.tokens)) != len(self.tokens):
            raise VocabularyError("vocabulary has duplicate tokens")
        if self.max_length < 1:
            raise VocabularyError(f"max_length must be positive, got {self.max_length}")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(
        cls,
        captions: Iterable[str],
        min_count: int = 1,
        max_length_quantile: float = 1.0,
    ) -> Vocabulary:
        """Build from training captions only.

        Args:
            captions: raw captions of the training split.
            min_count: words seen fewer times become ``<unk>``.
            max_length_quantile: the maximum length is this quantile of caption
                lengths in words (1.0 keeps the longest caption whole).
        """
        counts: Counter[str] = Counter()
        lengths: list[int] = []
        for caption in captions:
            words = normalize(caption)
            counts.update(words)
            lengths.append(len(words))
        if not lengths:
            raise VocabularyError("cannot build a vocabulary from no captions")
        if not 0.0 < max_length_quantile <= 1.0:
            raise VocabularyError("max_length_quantile must be in (0, 1]")
        words = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        lengths.sort()
        rank = max(0, math.ceil(max_length_quantile * len(lengths)) - 1)
        return cls(
            tokens=SPECIALS + tuple(words), max_length=max(1, lengths[rank]), min_count=min_count
        )

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def start_id(self) -> int:
        return 1

    @property
    def end_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    def id_of(self, word: str) -> int:
        return self._index.get(word, self.unk_id)

    def encode(self, caption: str) -> list[int]:
        """Word ids of a caption, truncated to ``max_length``; no specials added."""
        return [self.id_of(w) for w in normalize(caption)[: self.max_length]]

    def sequences(self, caption: str) -> tuple[list[int], list[int]]:
        """Teacher-forcing input and target, each padded to ``max_length + 1``."""
        ids = self.encode(caption)
        steps = self.max_length + 1
        inputs = [self.start_id, *ids] + [self.pad_id] * (steps - len(ids) - 1)
        targets = [*ids, self.end_id] + [self.pad_id] * (steps - len(ids) - 1)
        return inputs, targets

    def decode(self, ids: Sequence[int]) -> str:
        """The caption for a token-id sequence: stops at ``<end>``, skips other specials."""
        words: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            if not 0 <= i < len(self.tokens):
                raise VocabularyError(f"token id {i} is outside the vocabulary of {len(self)}")
            words.append(self.tokens[i])
        return " ".join(words)

    def coverage(self, captions: Iterable[str]) -> float:
        """Share of word occurrences in ``captions`` that the vocabulary knows."""
        known = total = 0
        for caption in captions:
            for w in normalize(caption):
                total += 1
                known += w in self._index
        return known / total if total else 1.0

    def to_dict(self) -> dict[str, object]:
        return {
            "format": VOCAB_FORMAT,
            "tokens": list(self.tokens),
            "specials": {t: i for i, t in enumerate(SPECIALS)},
            "max_length": self.max_length,
            "min_count": self.min_count,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=0, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise VocabularyError(f"no vocabulary at {path}") from exc
        except json.JSONDecodeError as exc:
            raise VocabularyError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise VocabularyError(f"{path}: unsupported vocabulary format {data.get('format')!r}")
        try:
            return cls(
                tokens=tuple(data["tokens"]),
                max_length=int(data["max_length"]),
                min_count=int(data.get("min_count", 1)),
            )
        except KeyError as exc:
            raise VocabularyError(f"{path}: missing field {exc}") from exc
