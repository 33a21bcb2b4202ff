"""The built-in synthetic dataset ``shapes``: scenes of coloured shapes, five captions each.

It stands in wherever a real dataset is absent, so it has to be learnable by a small
model on a CPU in minutes and still punish a model that ignores the image: a scene is
one object, two different objects in a spatial relation, or a group of two or three
identical objects, drawn from 24 object kinds (3 shapes, 4 colours, 2 sizes). Captions
come from a closed grammar, which is what lets ``is_correct`` check a generated caption
against the scene exactly.

Every scene and caption derives from ``(split, index)``; images render lazily from
the scene, so loading a split costs only the scene descriptions.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from captioner.text import normalize
from training.datasets.base import CaptionDataset, DatasetError, Example, sample

__all__ = [
    "SIZES",
    "Scene",
    "Shape",
    "correct_share",
    "describe",
    "is_correct",
    "load_shapes",
    "make_scene",
    "render",
]

SIZES = {"train": 6000, "val": 500, "test": 500}
KINDS = ("single", "pair", "group")
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (215, 35, 35),
    "green": (30, 150, 50),
    "blue": (35, 75, 215),
    "yellow": (240, 200, 20),
}
# Half the side of an object's bounding box, as a share of the image side: far enough
# apart (13 vs 22 pixels across at 64) that size is never a judgement call.
RADII = {"small": 0.10, "large": 0.17}
BACKGROUND = (228, 228, 222)
_MARGIN = 0.03  # keeps every object clear of the image border
_GAP = 0.06  # least empty space between two objects' boxes
_JITTER = 0.05  # how far two related objects may stray off their shared axis


@dataclass(frozen=True)
class Shape:
    """One object: centre ``x``, ``y`` as shares of the image side (``y`` grows downwards)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def radius(self) -> float:
        return RADII[self.size]


@dataclass(frozen=True)
class Scene:
    """What an image shows.

    ``kind`` is ``single``, ``pair`` or ``group``. A pair's ``relation`` is ``left of``
    or ``above`` and always reads ``objects[0] <relation> objects[1]``; the other
    kinds have none. A group's objects differ only in position.
    """

    kind: str
    objects: tuple[Shape, ...]
    relation: str | None = None


def make_scene(rng: random.Random) -> Scene:
    """A random scene; the same generator state gives the same scene."""
    kind = rng.choice(KINDS)
    if kind == "pair":
        return _make_pair(rng)
    shape, colour, size = (
        rng.choice(SHAPES),
        rng.choice(tuple(COLOURS)),
        rng.choice(("small", "large")),
    )
    count = 1 if kind == "single" else rng.choice((2, 3))
    centres = _scatter(rng, count, RADII[size])
    return Scene(kind, tuple(Shape(shape, colour, size, x, y) for x, y in centres))


def _coord(rng: random.Random, radius: float) -> float:
    return rng.uniform(_MARGIN + radius, 1.0 - _MARGIN - radius)


def _scatter(rng: random.Random, count: int, radius: float) -> list[tuple[float, float]]:
    """Centres of ``count`` equal boxes that neither overlap nor touch, in reading order."""
    apart = 2 * radius + _GAP
    while True:
        centres: list[tuple[float, float]] = []
        for _ in range(50):
            x, y = _coord(rng, radius), _coord(rng, radius)
            if all(max(abs(x - u), abs(y - v)) >= apart for u, v in centres):
                centres.append((x, y))
                if len(centres) == count:
                    return sorted(centres, key=lambda c: (c[1], c[0]))
        # A crowded start can leave no room for the last box; start again.


def _make_pair(rng: random.Random) -> Scene:
    """Two objects differing in shape or colour, clearly apart along one axis.

    Differing in shape or colour keeps captions without sizes unambiguous. Along the
    relation's axis the boxes are separated by at least ``_GAP``; across it the
    centres differ by at most ``2 * _JITTER``, so left/right never reads as above/below.
    """
    kinds = [(s, c) for s in SHAPES for c in COLOURS]
    first = rng.choice(kinds)
    second = rng.choice([k for k in kinds if k != first])
    ra_size, rb_size = rng.choice(("small", "large")), rng.choice(("small", "large"))
    ra, rb = RADII[ra_size], RADII[rb_size]
    free = 1.0 - 2 * _MARGIN - 2 * ra - 2 * rb - _GAP
    low, high = sorted((rng.uniform(0, free), rng.uniform(0, free)))
    along_a = _MARGIN + low + ra
    along_b = along_a + ra + _GAP + (high - low) + rb
    reach = max(ra, rb) + _JITTER
    middle = rng.uniform(_MARGIN + reach, 1.0 - _MARGIN - reach)
    across_a = middle + rng.uniform(-_JITTER, _JITTER)
    across_b = middle + rng.uniform(-_JITTER, _JITTER)
    relation = rng.choice(("left of", "above"))
    if relation == "left of":
        a = Shape(*first, ra_size, along_a, across_a)
        b = Shape(*second, rb_size, along_b, across_b)
    else:
        a = Shape(*first, ra_size, across_a, along_a)
        b = Shape(*second, rb_size, across_b, along_b)
    return Scene("pair", (a, b), relation)


def render(scene: Scene, image_size: int = 64) -> np.ndarray:
    """The scene's pixels: RGB uint8, ``image_size`` square, the same on every call."""
    image = np.empty((image_size, image_size, 3), np.uint8)
    image[:] = BACKGROUND
    # Pixel centres as shares of the side, so a scene renders at any resolution.
    grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    ys, xs = grid[:, None], grid[None, :]
    for obj in scene.objects:
        dx, dy, r = xs - obj.x, ys - obj.y, obj.radius
        if obj.shape == "circle":
            mask = dx * dx + dy * dy <= r * r
        elif obj.shape == "square":
            # 0.85 of the box gives a square about the area of the circle.
            mask = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
        else:
            # Apex at the top of the box, base across it at 0.8 r below the centre.
            mask = (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) / 1.8)
        image[mask] = COLOURS[obj.colour]
    return image


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


@functools.lru_cache(maxsize=8)
def _stream(split: str, count: int) -> tuple[Example, ...]:
    """The first ``count`` examples of a split; each split's seeds differ from the others'."""
    examples = []
    for index in range(count):
        # String seeds hash with SHA-512, stable across Python versions and platforms.
        rng = random.Random(f"shapes/{split}/{index}")
        scene = make_scene(rng)
        examples.append(Example(f"shapes-{split}-{index:06d}", describe(scene, rng), scene=scene))
    return tuple(examples)


def _render_example(example: Example, image_size: int) -> np.ndarray:
    return render(example.scene, image_size)


def load_shapes(
    split: str, count: int | None = None, seed: int | None = None, image_size: int = 64
) -> CaptionDataset:
    """One split of ``shapes``, optionally sampled.

    Args:
        split: ``train``, ``val`` or ``test``; their images never share an id.
        count: how many images. With ``seed`` they are sampled from the split's
            ``SIZES[split]`` images as ``base.sample`` does for every dataset; without
            one they are the split's first ``count`` images, and may exceed its size.
        seed: the sampling seed.
        image_size: side in pixels of the rendered images.

    Raises:
        DatasetError: an unknown split, or a sample larger than the split.
    """
    if split not in SIZES:
        raise DatasetError(f"shapes has no split {split!r}; splits: {', '.join(SIZES)}")
    if count is not None and seed is None:
        examples = list(_stream(split, count))
    else:
        examples = sample(_stream(split, SIZES[split]), count, seed)
    renderer = functools.partial(_render_example, image_size=image_size)
    return CaptionDataset(name="shapes", split=split, examples=examples, render=renderer)
