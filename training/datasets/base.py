"""What every dataset loader returns: images with their reference captions."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from captioner.images import to_rgb


class DatasetError(ValueError):
    """A dataset that cannot be loaded: missing files, bad format, missing images."""


@dataclass(frozen=True)
class Example:
    """One image and its reference captions.

    Real datasets give ``path``; the synthetic ``shapes`` dataset gives ``scene``
    and renders the image from it.
    """

    image_id: str
    captions: tuple[str, ...]
    path: Path | None = None
    scene: Any = None


@dataclass
class CaptionDataset:
    """One split of one dataset, already sampled per its spec."""

    name: str
    split: str
    examples: list[Example]
    render: Callable[[Example], np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.examples)

    def image(self, example: Example) -> np.ndarray:
        """The RGB uint8 HxWx3 pixels of an example."""
        if example.path is None and self.render is not None:
            return self.render(example)
        if example.path is None:
            raise DatasetError(f"{example.image_id} has neither a path nor a renderer")
        with Image.open(example.path) as img:
            return np.asarray(to_rgb(img))

    def references(self) -> dict[str, list[str]]:
        return {ex.image_id: list(ex.captions) for ex in self.examples}

    def all_captions(self) -> list[str]:
        return [c for ex in self.examples for c in ex.captions]


def sample(examples: Sequence[Example], count: int | None, seed: int | None) -> list[Example]:
    """COUNT examples drawn reproducibly with SEED (all of them, in order, without a count)."""
    if count is None:
        return list(examples)
    if count > len(examples):
        raise DatasetError(f"asked for {count} images but the split has {len(examples)}")
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(examples)), count))
    return [examples[i] for i in picked]


def check_images(examples: Sequence[Example], verify: bool = True) -> None:
    """Raise one clear error for missing or unreadable image files.

    The message gives the count and the first few names, never a traceback per file.
    """
    missing: list[str] = []
    unreadable: list[str] = []
    for ex in examples:
        if ex.path is None:
            continue
        if not ex.path.is_file():
            missing.append(ex.path.name)
            continue
        if verify:
            try:
                with Image.open(ex.path) as img:
                    img.verify()
            except Exception:
                unreadable.append(ex.path.name)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: {', '.join(missing[:5])})")
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable (first: {', '.join(unreadable[:5])})")
    if problems:
        raise DatasetError(f"images of {len(examples)}: " + "; ".join(problems))
