"""The ``feedback`` dataset: what users corrected or confirmed on the page, as exported.

``captioner feedback export --out DATA_ROOT`` writes it; this module reads it. The
folder layout is the contract between the two (training imports nothing of the
feedback component)::

    DATA_ROOT/feedback/dataset_feedback.json   the captions file
    DATA_ROOT/feedback/images/<sha256>.jpg     each image, named by its SHA-256
    DATA_ROOT/feedback/missing_images.txt      images not stored with their feedback

The captions file has the shape of a Karpathy split file (see
:mod:`training.datasets.karpathy`): ``{"dataset": "feedback", "info": {"source",
"since", "exported"}, "images": [{"imgid", "filepath": "images", "filename":
"<sha256>.jpg", "split": "train", "sentences": [{"raw", "tokens"}]}]}``, one entry per
image with every distinct caption it received (a correction, or the shown caption when
rated up). The export puts a held-out share of the images in ``test`` (by their SHA-256,
so an image keeps its split as feedback grows) and the rest in ``train``; there is no
``val``: validation is the main dataset's. Train on it as an extra dataset
(``--extra-dataset 'feedback[train]' --extra-data-root DIR``) and compare on
``feedback[test]``. An image listed in ``missing_images.txt`` counts as present once it
is copied into ``images/``.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import DatasetError, Example
from training.datasets.karpathy import load_karpathy

NAME = "feedback"
CAPTIONS = f"dataset_{NAME}.json"


def load_feedback(root: Path, split: str, check: bool = True) -> list[Example]:
    """One split of an exported feedback dataset, in file order.

    Args:
        root: the dataset folder, ``DATA_ROOT/feedback``.
        split: ``train`` (everything the export writes), ``val`` or ``test``.
        check: fail now, with one clear message, if images are missing or unreadable.

    Raises:
        DatasetError: the captions file is missing or malformed, the split is empty,
            or (with ``check``) images are missing.
    """
    captions = Path(root) / CAPTIONS
    if not captions.is_file():
        raise DatasetError(
            f"feedback not found: expected {captions} (write it with "
            f"`captioner feedback export --out {Path(root).parent}`)"
        )
    # Entries name their folder (filepath "images"), relative to the dataset folder.
    return load_karpathy(captions, root, split, check=check)
