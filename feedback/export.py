"""Feedback as a training dataset: corrections and confirmed captions, as a ``feedback`` dataset.

The training registry's ``feedback`` entry (``training/datasets/feedback.py``, whose
docstring is the contract) reads what this writes::

    OUT/feedback/dataset_feedback.json   every image in split "train"
    OUT/feedback/images/<sha256>.jpg     the images stored with their feedback
    OUT/feedback/missing_images.txt      the ones that were not, to copy in by hand

and trains with ``--dataset 'feedback[train]'`` and ``CAPTIONER_DATA_ROOT=OUT``. The
two sides share the layout, not code: training never imports this package.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedback.store import FeedbackStore

if TYPE_CHECKING:
    from feedback.record import Feedback
    from feedback.settings import FeedbackSettings

DATASET = "feedback"
CAPTIONS = f"dataset_{DATASET}.json"
IMAGES = "images"
MISSING = "missing_images.txt"


class NoDatabase(RuntimeError):
    """An export was asked for without a database to read."""


def sentence(feedback: Feedback) -> str | None:
    """The caption a feedback teaches: its correction, else the shown caption if rated up."""
    if feedback.correction:
        return feedback.correction
    if feedback.rating == "up" and feedback.caption.strip():
        return feedback.caption.strip()
    return None


def export_feedback(
    settings: FeedbackSettings, *, since: datetime | None = None, out: Path
) -> dict[str, Any]:
    """Export from the database the settings name: :func:`write_dataset` on its store.

    Unlike the page, an export never starts the embedded database: an empty one would
    export nothing and hide a missing ``MONGODB_URI``.

    Args:
        settings: the database (``mongodb_uri``, ``mongodb_database``, its timeout).
        since: only feedback created from then on; ``None`` for all of it.
        out: the data root to write the ``feedback/`` dataset folder under.

    Returns:
        The summary of :func:`write_dataset`.

    Raises:
        NoDatabase: ``mongodb_uri`` is not set.
        StoreUnavailable: the database cannot be reached.
    """
    if settings.mongodb_uri is None or not settings.mongodb_uri.get_secret_value():
        raise NoDatabase("no database: pass --mongodb-uri or set MONGODB_URI")
    uri = settings.mongodb_uri.get_secret_value()
    with FeedbackStore(uri, settings.mongodb_database, settings.mongodb_timeout_ms) as store:
        return write_dataset(store, since, out)


def write_dataset(store: FeedbackStore, since: datetime | None, out_dir: Path) -> dict[str, Any]:
    """Write the feedback since a time as a dataset the training pipeline loads.

    One entry per image (feedback is grouped by image SHA-256, since the captions file
    may not repeat a file name), with every distinct sentence it received.
    Thumbs-down without a correction teaches nothing and is skipped.

    Returns:
        ``records`` (feedback read), ``captions`` (sentences written), ``images_written``,
        ``missing_images`` (listed but not stored with their feedback), ``skipped``,
        ``path`` (the JSON file), ``images_dir`` and, when images are missing, ``note``.
    """
    root = Path(out_dir) / DATASET
    image_dir = root / IMAGES
    image_dir.mkdir(parents=True, exist_ok=True)
    sentences: dict[str, list[str]] = {}
    written: set[str] = set()
    records = skipped = 0
    for feedback in store.scan(since, images=True):
        records += 1
        text = sentence(feedback)
        if text is None:
            skipped += 1
            continue
        digest = feedback.image_sha256
        known = sentences.setdefault(digest, [])
        if text not in known:
            known.append(text)
        if feedback.image is not None and digest not in written:
            (image_dir / f"{digest}.jpg").write_bytes(feedback.image)
            written.add(digest)
    # An image copied in by hand after an earlier export counts as present.
    missing = sorted(d for d in sentences if not (image_dir / f"{d}.jpg").is_file())
    entries = [
        {
            "imgid": number,
            "filepath": IMAGES,
            "filename": f"{digest}.jpg",
            "split": "train",
            "sentences": [{"raw": s, "tokens": _tokens(s)} for s in texts],
        }
        for number, (digest, texts) in enumerate(sentences.items())
    ]
    path = root / CAPTIONS
    info = {"source": "captioner feedback", "since": since.isoformat() if since else None}
    info["exported"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json(path, {"dataset": DATASET, "info": info, "images": entries})
    missing_list = root / MISSING
    missing_list.write_text("".join(f"{d}.jpg\n" for d in missing))
    summary: dict[str, Any] = {
        "records": records,
        "captions": sum(len(texts) for texts in sentences.values()),
        "images_written": len(written),
        "missing_images": len(missing),
        "skipped": skipped,
        "path": str(path),
        "images_dir": str(image_dir),
    }
    if missing:
        summary["note"] = (
            f"{len(missing)} image(s) were not stored with their feedback (storing images "
            f"is off): copy them into {image_dir} under the names in {missing_list} "
            "(<sha256>.jpg) before training"
        )
    return summary


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Written aside, then renamed: a reader never sees half a file.
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    partial.replace(path)
