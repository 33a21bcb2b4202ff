"""Flickr8k from its original text files (Hodosh et al., 2013).

``Flickr8k.token.txt`` holds ``IMAGE.jpg#N<TAB>caption`` lines, five per image;
``Flickr_8k.{train,dev,test}Images.txt`` list the images of the official 6000/1000/1000
split. The ``val`` split is the ``dev`` file. Image ids are file names.

Where the official test photos are absent (a partial copy, such as the 875 photos
in ``../shared/data``), there is nothing to test on, so part of dev is held out
instead, by one reproducible rule (:func:`dev_holdout`): the dev photos present are
ordered by the sha256 of their file name; the first half (rounded up) is ``val``,
the rest is ``test``. Nothing trained or chosen ever sees that ``test`` half.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

from training.datasets.base import DatasetError, Example, check_images
from training.datasets.spec import SPLITS

TOKEN_FILE = "Flickr8k.token.txt"
log = logging.getLogger(__name__)

SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def read_flickr8k_captions(token_path: Path) -> dict[str, list[str]]:
    """Image file name -> captions, ordered by their ``#N`` index.

    Raises:
        DatasetError: the file is missing, or a line is malformed or repeats an index.
    """
    text = _read_text(token_path)
    indexed: dict[str, dict[int, str]] = {}
    # Split on "\n" only: str.splitlines() would also break a caption at \x0c or \x1c.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name, hash_, index = key.strip().rpartition("#")
        if not tab or not hash_ or not index.isdigit() or not name:
            raise DatasetError(
                f"{token_path}:{number}: expected 'IMAGE.jpg#N<TAB>caption', got {line[:80]!r}"
            )
        captions = indexed.setdefault(name, {})
        if int(index) in captions:
            raise DatasetError(f"{token_path}:{number}: caption {key.strip()!r} appears twice")
        captions[int(index)] = caption.strip()
    return {name: [caps[i] for i in sorted(caps)] for name, caps in indexed.items()}


def read_split_names(split_path: Path) -> list[str]:
    """The image file names of one split file, in file order."""
    names = [line.strip() for line in _read_text(split_path).splitlines() if line.strip()]
    repeated = [n for n, count in Counter(names).items() if count > 1]
    if repeated:
        first = ", ".join(repeated[:5])
        raise DatasetError(f"{split_path}: {len(repeated)} repeated image name(s) (first: {first})")
    return names


def load_flickr8k_original(
    text_dir: Path, image_dir: Path, split: str, check: bool = True
) -> list[Example]:
    """One split of Flickr8k from the original text files.

    Args:
        text_dir: the folder with ``Flickr8k.token.txt`` and the split files.
        image_dir: the folder with the JPEGs (``Flicker8k_Dataset`` in the download).
        split: ``train``, ``val`` (the dev file) or ``test``.
        check: fail now, with one clear message, if images are missing or unreadable.

    Raises:
        DatasetError: naming the missing file, malformed line, or missing images.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    text_dir, image_dir = Path(text_dir), Path(image_dir)
    names = read_split_names(text_dir / SPLIT_FILES[split])
    captions = read_flickr8k_captions(text_dir / TOKEN_FILE)
    uncaptioned = [n for n in names if not captions.get(n)]
    if uncaptioned:
        raise DatasetError(
            f"{len(uncaptioned)} image(s) of {SPLIT_FILES[split]} have no caption in {TOKEN_FILE} "
            f"(first: {', '.join(uncaptioned[:5])})"
        )
    if split != "train":
        names = _held_out(text_dir, image_dir, split, names)
    examples = [Example(image_id=n, captions=tuple(captions[n]), path=image_dir / n) for n in names]
    if check:
        check_image_dir(examples, image_dir, f"flickr8k[{split}]")
    return examples


HOLDOUT_RULE = (
    "the official test photos are absent, so the dev photos present are split by the "
    "sha256 of their file name: the first half is val, the rest test"
)


def dev_holdout(present_dev_names: list[str]) -> dict[str, list[str]]:
    """The dev photos present, split into ``val`` and held-out ``test`` (see module doc)."""
    ranked = sorted(present_dev_names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    half = (len(ranked) + 1) // 2
    return {"val": sorted(ranked[:half]), "test": sorted(ranked[half:])}


def holdout_active(text_dir: Path, image_dir: Path) -> bool:
    """True when none of the official test photos is present under ``image_dir``."""
    try:
        test = read_split_names(Path(text_dir) / SPLIT_FILES["test"])
    except DatasetError:  # no test split file: nothing to stand in for
        return False
    return not any((Path(image_dir) / n).is_file() for n in test)


def _held_out(text_dir: Path, image_dir: Path, split: str, names: list[str]) -> list[str]:
    """``names`` of SPLIT, or its half of the present dev photos when the holdout applies."""
    if not holdout_active(text_dir, image_dir):
        return names
    dev = read_split_names(text_dir / SPLIT_FILES["val"])
    present = [n for n in dev if (image_dir / n).is_file()]
    if not present:
        return names
    held = dev_holdout(present)[split]
    log.info(
        "flickr8k[%s]: %d of the %d dev photos present (%s)", split, len(held), len(present),
        HOLDOUT_RULE,
    )  # fmt: skip
    return held


def check_image_dir(examples: list[Example], image_dir: Path, what: str) -> None:
    """``check_images`` with the dataset and folder named in the message."""
    if not image_dir.is_dir():
        raise DatasetError(f"{what}: image folder {image_dir} does not exist")
    try:
        check_images(examples)
    except DatasetError as exc:
        raise DatasetError(f"{what} in {image_dir}: {exc}") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
