"""Dataset names to loaders, and where real datasets are expected on disk.

Layout under ``data_root`` (``CAPTIONER_DATA_ROOT``, default ``data/``):

- ``flickr8k/``: either ``dataset_flickr8k.json`` (Karpathy) or the original
  ``Flickr8k_text/``; images in ``Flickr8k_Dataset/`` (the seed's
  ``Flicker8k_Dataset/`` spelling is accepted too).
- ``flickr30k/``: ``dataset_flickr30k.json`` and ``flickr30k-images/``.
- ``coco/``: ``dataset_coco.json``; images under it as the JSON's ``filepath``
  says (``train2014/``, ``val2014/``).
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import CaptionDataset, DatasetError, sample
from training.datasets.spec import DatasetSpec, parse_spec

DATASETS = ("shapes", "flickr8k", "flickr30k", "coco")


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root / names[0]


def load_dataset(
    spec: DatasetSpec | str, data_root: Path = Path("data"), check_images: bool = True
) -> CaptionDataset:
    """Load one split per its spec (contract 1), sampled by COUNT and SEED."""
    if isinstance(spec, str):
        spec = parse_spec(spec, DATASETS)
    elif spec.name not in DATASETS:
        raise DatasetError(f"unknown dataset {spec.name!r}; known: {', '.join(DATASETS)}")
    if spec.name == "shapes":
        from training.datasets.shapes import load_shapes

        return load_shapes(spec.split, spec.count, spec.seed)

    from training.datasets.flickr import load_flickr8k_original
    from training.datasets.karpathy import load_karpathy

    root = data_root / spec.name
    karpathy = root / f"dataset_{spec.name}.json"
    if spec.name == "flickr8k" and not karpathy.is_file():
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
    picked = sample(examples, spec.count, spec.seed)
    if check_images:
        from training.datasets.base import check_images as check

        check(picked)
    return CaptionDataset(spec.name, spec.split, picked)
