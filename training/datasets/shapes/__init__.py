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

import numpy as np

from training.datasets.base import CaptionDataset, DatasetError, Example, sample
from training.datasets.shapes.captions import correct_share, describe, is_correct
from training.datasets.shapes.scene import (
    BACKGROUND,
    COLOURS,
    KINDS,
    RADII,
    SHAPES,
    SIZES,
    Scene,
    Shape,
    make_scene,
    render,
)

__all__ = [
    "BACKGROUND",
    "COLOURS",
    "KINDS",
    "RADII",
    "SHAPES",
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
