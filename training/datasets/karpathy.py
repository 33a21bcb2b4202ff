"""Flickr8k, Flickr30k and COCO from Karpathy's split files.

``dataset_{flickr8k,flickr30k,coco}.json`` (from the NeuralTalk release) holds
``{"dataset": ..., "images": [{"filename", "filepath"?, "split", "sentences": [{"raw",
"tokens"}], "imgid", "cocoid"?}]}``. Splits are ``train``, ``val``, ``test`` and
``restval``; ``restval`` counts as train, as in the papers that use these files.

Image ids are file names, for COCO too: its names carry the folder
(``COCO_val2014_000000391895.jpg``), so they are unique across folders and readable
in reports; ``cocoid`` is not needed to tell images apart.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from training.datasets.base import DatasetError, Example
from training.datasets.flickr import check_image_dir
from training.datasets.spec import SPLITS

KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


def load_karpathy(
    json_path: Path, image_root: Path, split: str, check: bool = True
) -> list[Example]:
    """One split of a Karpathy split file, in file order.

    Args:
        json_path: ``dataset_flickr8k.json``, ``dataset_flickr30k.json`` or ``dataset_coco.json``.
        image_root: the folder that ``filepath/filename`` (or ``filename``) is relative to.
        split: ``train`` (with ``restval``), ``val`` or ``test``.
        check: fail now, with one clear message, if images are missing or unreadable.

    Raises:
        DatasetError: naming the unreadable file, malformed entry, or missing images.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    json_path, image_root = Path(json_path), Path(image_root)
    entries = _read_images(json_path)
    wanted = KARPATHY_SPLITS[split]
    examples = []
    for number, entry in enumerate(entries):
        where = f"{json_path}: images[{number}]"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where} must be an object, got {type(entry).__name__}")
        if _field(entry, "split", str, where) not in wanted:
            continue
        filename = _field(entry, "filename", str, where)
        folder = entry.get("filepath") or ""
        captions = tuple(
            _caption(s, f"{where} ({filename})") for s in _field(entry, "sentences", list, where)
        )
        if not captions:
            raise DatasetError(f"{where} ({filename}) has no sentences")
        examples.append(
            Example(image_id=filename, captions=captions, path=image_root / folder / filename)
        )
    if not examples:
        raise DatasetError(
            f"{json_path} has no images in split {split!r} (looked for {', '.join(wanted)})"
        )
    repeated = [i for i, count in Counter(ex.image_id for ex in examples).items() if count > 1]
    if repeated:
        first = ", ".join(repeated[:5])
        raise DatasetError(
            f"{json_path}: {len(repeated)} file name(s) repeat in split {split!r} (first: {first})"
        )
    if check:
        check_image_dir(examples, image_root, f"{json_path.name}[{split}]")
    return examples


def _read_images(json_path: Path) -> list[Any]:
    try:
        with json_path.open(encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {json_path}") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{json_path} is not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {json_path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(
            f"{json_path} is not a Karpathy split file: expected an object with an 'images' list"
        )
    return data["images"]


def _field(entry: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in entry:
        raise DatasetError(f"{where} has no {name!r}")
    value = entry[name]
    if not isinstance(value, kind):
        raise DatasetError(
            f"{where}: {name!r} must be a {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _caption(sentence: Any, where: str) -> str:
    """The raw caption; the tokens joined when a file has no raw text."""
    if isinstance(sentence, dict):
        if isinstance(sentence.get("raw"), str):
            return sentence["raw"].strip()
        tokens = sentence.get("tokens")
        if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
            return " ".join(tokens)
    raise DatasetError(f"{where}: a sentence needs a 'raw' string or a 'tokens' list")
