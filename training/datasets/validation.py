"""Data validation checks (as Made-With-ML's ``tests/data``), also run by ``captioner data``."""

from __future__ import annotations

from dataclasses import dataclass

from captioner.text import Vocabulary, normalize
from training.datasets.base import CaptionDataset


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def validate(
    train: CaptionDataset,
    others: list[CaptionDataset],
    vocab: Vocabulary,
    captions_per_image: int = 5,
    min_coverage: float = 0.95,
) -> list[Check]:
    """Caption counts, split disjointness by image, vocabulary coverage of other splits."""
    checks = []
    for ds in [train, *others]:
        bad = [ex.image_id for ex in ds.examples if len(ex.captions) < captions_per_image]
        empty = [ex.image_id for ex in ds.examples if any(not normalize(c) for c in ex.captions)]
        checks.append(
            Check(
                f"{ds.split}: at least {captions_per_image} captions per image",
                not bad,
                f"{len(bad)} images short (first: {', '.join(bad[:3])})"
                if bad
                else f"{len(ds)} images",
            )
        )
        checks.append(
            Check(
                f"{ds.split}: no empty caption",
                not empty,
                f"{len(empty)} images with an empty caption (first: {', '.join(empty[:3])})"
                if empty
                else "ok",
            )
        )
    seen = {ex.image_id: train.split for ex in train.examples}
    for ds in others:
        overlap = [ex.image_id for ex in ds.examples if ex.image_id in seen]
        checks.append(
            Check(
                f"{train.split}/{ds.split}: disjoint by image",
                not overlap,
                f"{len(overlap)} shared images (first: {', '.join(overlap[:3])})"
                if overlap
                else "ok",
            )
        )
    for ds in others:
        coverage = vocab.coverage(ds.all_captions())
        checks.append(
            Check(
                f"{ds.split}: vocabulary coverage >= {min_coverage:.0%}",
                coverage >= min_coverage,
                f"{coverage:.2%} of words known",
            )
        )
    return checks
