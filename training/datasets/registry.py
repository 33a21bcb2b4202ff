"""Dataset names to loaders, and where real datasets are expected on disk.

Layout under ``data_root`` (``CAPTIONER_DATA_ROOT``, default ``data/``):

- ``flickr8k/``: either ``dataset_flickr8k.json`` (Karpathy) or the original
  ``Flickr8k_text/``; images in ``Flickr8k_Dataset/`` (the seed's
  ``Flicker8k_Dataset/`` spelling is accepted too).
- ``flickr30k/``: ``dataset_flickr30k.json`` and ``flickr30k-images/``.
- ``coco/``: ``dataset_coco.json``; images under it as the JSON's ``filepath``
  says (``train2014/``, ``val2014/``).
- ``feedback/``: ``dataset_feedback.json`` and ``images/``, as ``captioner feedback
  export`` writes them (see :mod:`training.datasets.feedback`).

A real dataset may be partial: only the photos present are used, and one log
line says how many of the split are missing. Loading refuses only when none is
present, or when ``require_all`` asks for every photo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from training.datasets.base import CaptionDataset, DatasetError, Example, sample
from training.datasets.spec import DatasetSpec, parse_spec

DATASETS = ("shapes", "flickr8k", "flickr30k", "coco", "feedback")

log = logging.getLogger(__name__)


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        found = _follow(root / name)
        if found.is_dir():
            return found
    return root / names[0]


def _follow(path: Path) -> Path:
    """PATH, or the folder it names when it is a link stored as a small text file.

    Git writes a symbolic link as such a file (its target as the content) where links
    are not supported or a copy lost them, as in a copied ``../shared/data``.
    """
    if path.is_file() and path.stat().st_size < 1024:
        try:
            target = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return path
        if target and "\n" not in target and (path.parent / target).is_dir():
            return (path.parent / target).resolve()
    return path


def load_dataset(
    spec: DatasetSpec | str,
    data_root: Path = Path("data"),
    check_images: bool = True,
    require_all: bool = False,
) -> CaptionDataset:
    """Load one split per its spec (docs/architecture.md, dataset specs), sampled by COUNT and SEED.

    Args:
        spec: the split and sample.
        data_root: where real datasets live (see the module docstring).
        check_images: verify that the photos used can be read.
        require_all: refuse a split with any photo missing, instead of using those
            present.

    Raises:
        DatasetError: files missing or malformed, no photo of the split present, a
            photo missing with ``require_all``, or an unreadable photo.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec, DATASETS)
    elif spec.name not in DATASETS:
        raise DatasetError(f"unknown dataset {spec.name!r}; known: {', '.join(DATASETS)}")
    if spec.name == "shapes":
        from training.datasets.shapes import load_shapes

        return load_shapes(spec.split, spec.count, spec.seed)

    from training.datasets.feedback import load_feedback
    from training.datasets.flickr import load_flickr8k_original
    from training.datasets.karpathy import load_karpathy

    root = data_root / spec.name
    karpathy = root / f"dataset_{spec.name}.json"
    if spec.name == "feedback":
        examples = load_feedback(root, spec.split, check=False)
    elif spec.name == "flickr8k" and not karpathy.is_file():
        text_dir = _first_dir(root, ("Flickr8k_text", "text"))
        image_dir = _first_dir(root, ("Flickr8k_Dataset", "Flicker8k_Dataset", "images"))
        if not text_dir.is_dir():
            raise DatasetError(
                f"flickr8k not found: expected {karpathy} or {text_dir}/ under {data_root} "
                "(set CAPTIONER_DATA_ROOT, or use the built-in shapes dataset)"
            )
        examples = load_flickr8k_original(text_dir, image_dir, spec.split, check=False)
    else:
        if not karpathy.is_file():
            raise DatasetError(f"{spec.name} not found: expected the Karpathy JSON at {karpathy}")
        image_root = root
        if spec.name == "flickr8k":
            image_root = _first_dir(root, ("Flickr8k_Dataset", "Flicker8k_Dataset", "images"))
        elif spec.name == "flickr30k":
            image_root = _first_dir(root, ("flickr30k-images", "images"))
        examples = load_karpathy(karpathy, image_root, spec.split, check=False)
    if check_images:
        examples = present_photos(examples, f"{spec.name}[{spec.split}]", require_all)
    picked = sample(examples, spec.count, spec.seed)
    if check_images:
        from training.datasets.base import check_images as check

        check(picked)
    return CaptionDataset(spec.name, spec.split, picked)


@dataclass(frozen=True)
class Survey:
    """What of one split is on disk: the split's size and the examples whose photo is there."""

    spec: DatasetSpec
    total: int
    present: CaptionDataset
    missing: list[str]

    @property
    def captions(self) -> int:
        return sum(len(ex.captions) for ex in self.present.examples)


def survey(spec: DatasetSpec | str, data_root: Path) -> Survey:
    """How much of SPEC's split is present under DATA_ROOT, without refusing a partial one.

    Raises:
        DatasetError: the split's caption files are missing or malformed.
    """
    everything = load_dataset(spec, data_root, check_images=False)
    spec = parse_spec(str(spec), DATASETS) if isinstance(spec, str) else spec
    present, missing = [], []
    for ex in everything.examples:
        if ex.path is None or ex.path.is_file():
            present.append(ex)
        else:
            missing.append(ex.image_id)
    dataset = CaptionDataset(everything.name, everything.split, present, everything.render)
    return Survey(spec, len(everything), dataset, missing)


def present_photos(examples: list[Example], what: str, require_all: bool = False) -> list[Example]:
    """The examples whose photo is on disk; one log line counts the missing ones.

    Raises:
        DatasetError: none is present, or some are missing and ``require_all`` is set.
    """
    present = [ex for ex in examples if ex.path is None or ex.path.is_file()]
    missing = len(examples) - len(present)
    if not missing:
        return present
    folder = next((ex.path.parent for ex in examples if ex.path is not None), None)
    absent = [ex.image_id for ex in examples if ex.path is not None and not ex.path.is_file()]
    first = ", ".join(absent[:3])
    if not present:
        raise DatasetError(f"{what}: none of its {len(examples)} photos is in {folder}")
    if require_all:
        raise DatasetError(
            f"{what}: {missing} of {len(examples)} photos missing in {folder} (first: {first}); "
            "every photo is required (require_all)"
        )
    log.info(
        "%s: %d of %d photos present, %d missing in %s (first: %s)",
        what, len(present), len(examples), missing, folder, first,
    )  # fmt: skip
    return present
