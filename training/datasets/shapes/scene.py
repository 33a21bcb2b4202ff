"""Scenes of the ``shapes`` dataset: what is in an image, and how it is drawn."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

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
