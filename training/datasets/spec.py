"""Dataset specs (docs/architecture.md, dataset specs): ``NAME[SPLIT]-COUNTsSEED``."""

from __future__ import annotations

import re
from dataclasses import dataclass

SPLITS = ("train", "val", "test")
_SPEC = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]*)\[(?P<split>[a-z]+)\](?:-(?P<count>\d+)s(?P<seed>\d+))?$"
)


class SpecError(ValueError):
    """A dataset spec that cannot be parsed or names nothing known."""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset split, optionally sampled: COUNT images drawn reproducibly with SEED."""

    name: str
    split: str
    count: int | None = None
    seed: int | None = None

    def __str__(self) -> str:
        tail = f"-{self.count}s{self.seed}" if self.count is not None else ""
        return f"{self.name}[{self.split}]{tail}"

    def with_split(self, split: str) -> DatasetSpec:
        """Another split of the same dataset, whole (a sample size rarely fits two splits)."""
        return DatasetSpec(self.name, split)


def parse_spec(text: str, known: tuple[str, ...] | None = None) -> DatasetSpec:
    """Parse ``NAME[SPLIT]`` or ``NAME[SPLIT]-COUNTsSEED``.

    Args:
        text: the spec, e.g. ``flickr8k[test]-500s42``.
        known: dataset names to accept; ``None`` accepts any well-formed name.

    Raises:
        SpecError: naming what is wrong.
    """
    text = text.strip()
    match = _SPEC.match(text)
    if match is None:
        hint = ""
        if "[" not in text or not text.endswith(("]",)) and "]-" not in text:
            hint = " (the split goes in brackets: NAME[SPLIT])"
        elif re.search(r"\]-\d+$", text):
            hint = " (a count needs a seed: -COUNTsSEED, e.g. -500s42)"
        elif re.search(r"\]-", text):
            hint = " (the sample part is -COUNTsSEED with whole numbers, e.g. -500s42)"
        raise SpecError(f"malformed dataset spec {text!r}: expected NAME[SPLIT]-COUNTsSEED{hint}")
    name, split = match["name"], match["split"]
    if known is not None and name not in known:
        raise SpecError(f"unknown dataset {name!r} in {text!r}; known: {', '.join(known)}")
    if split not in SPLITS:
        raise SpecError(f"unknown split {split!r} in {text!r}; splits: {', '.join(SPLITS)}")
    count = int(match["count"]) if match["count"] is not None else None
    seed = int(match["seed"]) if match["seed"] is not None else None
    if count is not None and count < 1:
        raise SpecError(f"sample count must be at least 1 in {text!r}")
    return DatasetSpec(name, split, count, seed)
