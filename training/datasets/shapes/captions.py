"""Captions of ``shapes`` scenes: five phrasings each, and the parser behind ``is_correct``.

Captions come from a closed grammar, which is what lets ``is_correct`` check a
generated caption against the scene exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeVar

from captioner.text import normalize
from training.datasets.base import CaptionDataset
from training.datasets.shapes.scene import COLOURS, SHAPES, Scene, Shape

_SYNONYMS = {"small": ("small", "little"), "large": ("large", "big")}
_NUMBER_WORDS = {2: "two", 3: "three"}


def describe(scene: Scene, rng: random.Random) -> tuple[str, ...]:
    """Five differently phrased captions of a scene, as five annotators might write them.

    The first is canonical (``large``/``small``, a pair named left or top object
    first); the others draw size synonyms, open with "there is/are", name a pair in
    either order, and one leaves sizes out. The five always differ.
    """

    def said(obj: Shape, sized: bool = True) -> str:
        size = rng.choice(_SYNONYMS[obj.size]) + " " if sized else ""
        return f"{size}{obj.colour} {obj.shape}"

    def either(forward: str, backward: str) -> str:
        return forward if rng.random() < 0.5 else backward

    a = scene.objects[0]
    plain_a = f"{a.size} {a.colour} {a.shape}"
    if scene.kind == "single":
        return (
            f"a {plain_a}",
            f"there is a {said(a)}",
            f"a single {said(a)}",
            f"a {said(a, sized=False)}",
            f"a {said(a)} on its own",
        )
    if scene.kind == "group":
        n = _NUMBER_WORDS[len(scene.objects)]
        return (
            f"{n} {plain_a}s",
            f"there are {n} {said(a)}s",
            f"{n} {said(a, sized=False)}s",
            f"a group of {n} {said(a)}s",
            f"{n} identical {said(a)}s",
        )
    b = scene.objects[1]
    plain_b = f"{b.size} {b.colour} {b.shape}"
    if scene.relation == "left of":
        ahead, behind, near, far = (
            "to the left of",
            "to the right of",
            "on the left",
            "on the right",
        )
        short_ahead, short_behind = "left of", "right of"
    else:
        ahead, behind, near, far = "above", "below", "at the top", "at the bottom"
        short_ahead, short_behind = ahead, behind
    return (
        f"a {plain_a} {ahead} a {plain_b}",
        f"a {said(b)} {behind} a {said(a)}",
        either(
            f"there is a {said(a)} {short_ahead} a {said(b)}",
            f"there is a {said(b)} {short_behind} a {said(a)}",
        ),
        either(
            f"a {said(a, sized=False)} {ahead} a {said(b, sized=False)}",
            f"a {said(b, sized=False)} {behind} a {said(a, sized=False)}",
        ),
        either(
            f"a {said(a)} {near} and a {said(b)} {far}",
            f"a {said(b)} {far} and a {said(a)} {near}",
        ),
    )


_SIZE_WORDS = {"small": "small", "little": "small", "large": "large", "big": "large"}
_COUNTS = {word: n for n, word in _NUMBER_WORDS.items()}
_SINGULAR = {s: s for s in SHAPES}
_PLURAL = {f"{s}s": s for s in SHAPES}
# Each relation phrase gives the scene's axis and whether it names the objects in
# reverse scene order: "a right of b" is "b left of a".
_RELATIONS = (
    (("to", "the", "left", "of"), "left of", False),
    (("left", "of"), "left of", False),
    (("to", "the", "right", "of"), "left of", True),
    (("right", "of"), "left of", True),
    (("above",), "above", False),
    (("below",), "above", True),
)
_PLACES = (  # "a ... on the left and a ... on the right"
    (("on", "the", "left"), ("on", "the", "right"), "left of", False),
    (("on", "the", "right"), ("on", "the", "left"), "left of", True),
    (("at", "the", "top"), ("at", "the", "bottom"), "above", False),
    (("at", "the", "bottom"), ("at", "the", "top"), "above", True),
)
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Phrase:
    count: int
    size: str | None
    colour: str
    shape: str
    single: bool  # "a single ...", which only a lone object may be called


@dataclass(frozen=True)
class _Reading:
    phrases: tuple[_Phrase, ...]  # in scene order: left or top object first
    relation: str | None = None


class _Words:
    """A cursor over a caption's tokens that consumes only whole matches."""

    def __init__(self, words: list[str]) -> None:
        self.words, self.at = words, 0

    @property
    def done(self) -> bool:
        return self.at == len(self.words)

    def take(self, *expected: str) -> bool:
        if tuple(self.words[self.at : self.at + len(expected)]) != expected:
            return False
        self.at += len(expected)
        return True

    def pick(self, choices: dict[str, _T]) -> _T | None:
        if self.done or self.words[self.at] not in choices:
            return None
        self.at += 1
        return choices[self.words[self.at - 1]]


def _phrase(words: _Words) -> _Phrase | None:
    grouped = words.take("a", "group", "of")
    count = words.pick(_COUNTS)
    single = False
    if count is None:
        if grouped or not words.take("a"):
            return None
        count, single = 1, words.take("single")
    else:
        words.take("identical")
    size = words.pick(_SIZE_WORDS)
    colour = words.pick({c: c for c in COLOURS})
    shape = words.pick(_SINGULAR if count == 1 else _PLURAL)
    if colour is None or shape is None:
        return None
    return _Phrase(count, size, colour, shape, single)


def _second(words: _Words, first: _Phrase, axis: str, swapped: bool) -> _Reading | None:
    second = _phrase(words)
    if second is None or second.count != 1 or second.single:
        return None
    return _Reading((second, first) if swapped else (first, second), axis)


def _parse(tokens: list[str]) -> _Reading | None:
    """The caption's meaning, or None for anything outside the grammar."""
    words = _Words(tokens)
    opening = "is" if words.take("there", "is") else "are" if words.take("there", "are") else None
    first = _phrase(words)
    if first is None or (opening is not None and (opening == "are") != (first.count > 1)):
        return None
    if words.done:
        return _Reading((first,))
    if words.take("on", "its", "own"):
        return _Reading((first,)) if words.done and first.count == 1 else None
    if first.count != 1 or first.single:
        return None
    for relation, axis, swapped in _RELATIONS:
        if words.take(*relation):
            reading = _second(words, first, axis, swapped)
            return reading if words.done else None
    for here, there, axis, swapped in _PLACES:
        if words.take(*here, "and"):
            reading = _second(words, first, axis, swapped)
            return reading if words.take(*there) and words.done else None
    return None


def _matches(reading: _Reading, scene: Scene) -> bool:
    if reading.relation != scene.relation:
        return False
    named = scene.objects if scene.kind == "pair" else scene.objects[:1]
    if scene.kind != "pair" and reading.phrases[0].count != len(scene.objects):
        return False
    return len(reading.phrases) == len(named) and all(
        p.colour == o.colour and p.shape == o.shape and p.size in (None, o.size)
        for p, o in zip(reading.phrases, named, strict=True)
    )


def is_correct(caption: str, scene: Scene) -> bool:
    """Whether a caption describes the scene exactly, in any phrasing of the grammar.

    Every object must be named with its colour and shape, a group with its count,
    and a pair with its relation (either order: "a right of b" is "b left of a");
    nothing may be added. Size may be left out, but a stated size must be right.
    A caption outside the grammar is not correct.
    """
    reading = _parse(normalize(caption))
    return reading is not None and _matches(reading, scene)


def correct_share(hypotheses: dict[str, str], dataset: CaptionDataset) -> float:
    """Share of generated captions that ``is_correct`` accepts for their image's scene.

    Args:
        hypotheses: one generated caption per image id, for some or all of the split.
        dataset: the ``shapes`` split the ids come from.

    Raises:
        ValueError: no hypotheses, or an id that the dataset lacks or has no scene for.
    """
    if not hypotheses:
        raise ValueError("no captions to judge")
    scenes = {ex.image_id: ex.scene for ex in dataset.examples}
    unknown = [i for i in hypotheses if scenes.get(i) is None]
    if unknown:
        raise ValueError(
            f"{len(unknown)} ids have no shapes scene (first: {', '.join(unknown[:5])})"
        )
    right = sum(is_correct(caption, scenes[i]) for i, caption in hypotheses.items())
    return right / len(hypotheses)
