"""Feedback as a training dataset: corrections and confirmed captions, as a ``feedback`` dataset.

The training registry's ``feedback`` entry (``training/datasets/feedback.py``, whose
docstring is the contract) reads what this writes::

    OUT/feedback/dataset_feedback.json   every image in split "train", or "test" for the
                                         held-out share (ExportRules.split)
    OUT/feedback/images/<sha256>.jpg     the images stored with their feedback
    OUT/feedback/missing_images.txt      the ones that were not, to copy in by hand

and trains with ``--dataset 'feedback[train]'`` and ``CAPTIONER_DATA_ROOT=OUT``. The
two sides share the layout, not code: training never imports this package.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedback.store import FeedbackStore

if TYPE_CHECKING:
    from feedback.localdb import LocalMongo
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


@dataclass(frozen=True)
class ExportRules:
    """What feedback an export keeps: feedback trains models now, so it is checked.

    Attributes:
        holdout: share of the images put in split ``test`` (by SHA-256, stable).
        min_words, max_words: the bounds on a caption's words; an empty or near-empty
            correction teaches nothing and a wall of text is not a caption.
        max_images_per_caption: a caption given to more images than this (one sentence
            pasted everywhere) is dropped from all of them.
    """

    holdout: float = 0.1
    min_words: int = 3
    max_words: int = 40
    max_images_per_caption: int = 3

    @classmethod
    def from_settings(cls, settings: FeedbackSettings) -> ExportRules:
        return cls(
            settings.export_holdout,
            settings.min_correction_words,
            settings.max_caption_words,
            settings.max_images_per_caption,
        )

    def split(self, digest: str) -> str:
        """``test`` for the held-out share of images, by their SHA-256; else ``train``."""
        return "test" if int(digest[:8], 16) / 0x1_0000_0000 < self.holdout else "train"


def export_feedback(
    settings: FeedbackSettings, *, since: datetime | None = None, out: Path
) -> dict[str, Any]:
    """Export from the database the settings name: :func:`write_dataset` on its store.

    Without ``mongodb_uri`` it reads the embedded database the page keeps in
    ``local_db_dir``: the page's running server when it is up, else one started on
    that directory for the export and stopped after it. An export never starts an
    embedded database where there is none: an empty one would export nothing and hide
    a missing ``MONGODB_URI``.

    Args:
        settings: the database (``mongodb_uri`` or ``local_db_dir``, its timeout) and the
            export's rules (:class:`ExportRules`).
        since: only feedback created from then on; ``None`` for all of it.
        out: the data root to write the ``feedback/`` dataset folder under.

    Returns:
        The summary of :func:`write_dataset`, and ``database`` (which one was read).

    Raises:
        NoDatabase: no ``mongodb_uri`` and no embedded database.
        StoreUnavailable: the database cannot be reached.
        LocalDBError: the embedded database cannot be started.
    """
    uri, started, where = _database(settings)
    try:
        with FeedbackStore(uri, settings.mongodb_database, settings.mongodb_timeout_ms) as store:
            summary = write_dataset(store, since, out, ExportRules.from_settings(settings))
    finally:
        if started is not None:
            started.stop()
    return {**summary, "database": where}


def _database(settings: FeedbackSettings) -> tuple[str, LocalMongo | None, str]:
    """The URI to read, the embedded server started for it (or None), and what it is."""
    from feedback.localdb import LocalMongo, listening

    if settings.mongodb_uri is not None and settings.mongodb_uri.get_secret_value():
        return settings.mongodb_uri.get_secret_value(), None, "MONGODB_URI"
    data_dir = settings.local_db_dir
    local = LocalMongo(data_dir, settings.local_db_port)
    if not (data_dir.is_dir() and any(data_dir.iterdir())):
        raise NoDatabase(
            f"no database: pass --mongodb-uri or set MONGODB_URI (there is no embedded "
            f"database in {data_dir}, where the page keeps one when MONGODB_URI is unset; "
            "run the export from the folder the page ran in, or set CAPTIONER_LOCAL_DB_DIR)"
        )
    where = f"embedded database in {data_dir}"
    if listening(local.host, local.port):
        if not local.pid_file.is_file():
            raise NoDatabase(
                f"port {local.port} is in use, but not by the embedded database of {data_dir}: "
                "set MONGODB_URI, or CAPTIONER_LOCAL_DB_PORT to the page's port"
            )
        return local.uri, None, f"{where} (the page's, running)"
    local.start()
    return local.uri, local, where


def write_dataset(
    store: FeedbackStore,
    since: datetime | None,
    out_dir: Path,
    rules: ExportRules | None = None,
) -> dict[str, Any]:
    """Write the feedback since a time as a dataset the training pipeline loads.

    One entry per image (feedback is grouped by image SHA-256, since the captions file
    may not repeat a file name), with every distinct sentence it received that passes
    RULES (:class:`ExportRules`). Thumbs-down without a correction teaches nothing and
    is skipped; so is an image left with no sentence.

    Returns:
        ``records`` (feedback read), ``captions`` (sentences written), ``images``,
        ``splits`` (images per split), ``images_written``, ``missing_images`` (listed but
        not stored with their feedback), ``skipped`` (nothing to teach), ``dropped``
        (by reason: ``too_short``, ``too_long``, ``duplicate``, ``repeated``),
        ``path`` (the JSON file), ``images_dir`` and, when images are missing, ``note``.
    """
    rules = rules or ExportRules()
    root = Path(out_dir) / DATASET
    image_dir = root / IMAGES
    image_dir.mkdir(parents=True, exist_ok=True)
    sentences: dict[str, dict[tuple[str, ...], str]] = {}
    images: dict[str, bytes] = {}
    dropped: Counter[str] = Counter()
    records = skipped = 0
    for feedback in store.scan(since, images=True):
        records += 1
        text = sentence(feedback)
        if text is None:
            skipped += 1
            continue
        words = tuple(_tokens(text))
        if len(words) < rules.min_words:
            dropped["too_short"] += 1
            continue
        if len(words) > rules.max_words:
            dropped["too_long"] += 1
            continue
        known = sentences.setdefault(feedback.image_sha256, {})
        if words in known:
            dropped["duplicate"] += 1  # the same words again, whatever the case or commas
            continue
        known[words] = " ".join(text.split())
        if feedback.image is not None:
            images.setdefault(feedback.image_sha256, feedback.image)
    spread = Counter(words for known in sentences.values() for words in known)
    for known in sentences.values():
        for words in [w for w in known if spread[w] > rules.max_images_per_caption]:
            del known[words]
            dropped["repeated"] += 1
    kept = {digest: list(known.values()) for digest, known in sentences.items() if known}
    written = 0
    for digest in kept:
        if digest in images:
            (image_dir / f"{digest}.jpg").write_bytes(images[digest])
            written += 1
    # An image copied in by hand after an earlier export counts as present.
    missing = sorted(d for d in kept if not (image_dir / f"{d}.jpg").is_file())
    entries = [
        {
            "imgid": number,
            "filepath": IMAGES,
            "filename": f"{digest}.jpg",
            "split": rules.split(digest),
            "sentences": [{"raw": s, "tokens": _tokens(s)} for s in texts],
        }
        for number, (digest, texts) in enumerate(kept.items())
    ]
    path = root / CAPTIONS
    info: dict[str, Any] = {
        "source": "captioner feedback",
        "since": since.isoformat() if since else None,
    }
    info["exported"] = datetime.now(UTC).isoformat(timespec="seconds")
    info["rules"] = asdict(rules)
    _write_json(path, {"dataset": DATASET, "info": info, "images": entries})
    missing_list = root / MISSING
    missing_list.write_text("".join(f"{d}.jpg\n" for d in missing))
    summary: dict[str, Any] = {
        "records": records,
        "captions": sum(len(texts) for texts in kept.values()),
        "images": len(kept),
        "splits": dict(Counter(e["split"] for e in entries)),
        "images_written": written,
        "missing_images": len(missing),
        "skipped": skipped,
        "dropped": dict(dropped),
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
