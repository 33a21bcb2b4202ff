"""A durable local outbox for feedback the database could not take, and its flusher.

One SQLite file (WAL, ``synchronous=FULL``: a queued feedback survives a crash or a
power cut once :meth:`Outbox.put` returns), one row per request id, so a changed
feedback replaces the queued one. Delivery saves, then deletes; since the store
upserts by request id, a crash between the two delivers the same record again and
never doubles it: exactly once in effect.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedback.record import Feedback, FeedbackError, make_feedback
from feedback.store import StoreUnavailable

if TYPE_CHECKING:
    from feedback.metrics import FeedbackMetrics
    from feedback.store import FeedbackStore

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    request_id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    record TEXT NOT NULL,
    image BLOB,
    revision INTEGER NOT NULL DEFAULT 0
)
"""
# A newer submit replaces the queued one and bumps its revision; an older copy loses.
_PUT = """
INSERT INTO outbox (request_id, created, record, image) VALUES (?, ?, ?, ?)
ON CONFLICT (request_id) DO UPDATE SET
    created = excluded.created, record = excluded.record, image = excluded.image,
    revision = outbox.revision + 1
WHERE excluded.created >= outbox.created
"""


class Outbox:
    """Feedback waiting for the database, on disk; safe to share between threads."""

    def __init__(self, path: Path, metrics: FeedbackMetrics | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._metrics = metrics
        self._lock = threading.Lock()
        # One delivery at a time, so two flushes cannot save one record out of order.
        self._delivering = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_SCHEMA)
        self._gauge()

    def put(self, feedback: Feedback) -> None:
        """Queue (or replace the queued copy of) one feedback, durably."""
        if not isinstance(feedback, Feedback):
            raise TypeError(f"put() takes a Feedback, got {type(feedback).__name__}")
        record = feedback.to_document()
        image = record.pop("image", None)
        # One fixed format, so that the text column sorts and compares as the time does.
        record["created"] = feedback.created.isoformat(timespec="milliseconds")
        row = (feedback.request_id, record["created"], json.dumps(record), image)
        with self._lock:
            self._db.execute(_PUT, row)
        self._gauge()

    def depth(self) -> int:
        """How many feedbacks wait."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def pending(self) -> list[Feedback]:
        """The waiting feedback, oldest first."""
        return [feedback for feedback, _ in self._rows()]

    def deliver(self, store: FeedbackStore) -> int:
        """Save every waiting feedback to the store, oldest first, removing each once saved.

        A record the store refuses for any other reason is logged and stays queued,
        without holding back the ones after it.

        Returns:
            How many were delivered; it stops at the first :class:`StoreUnavailable`.
        """
        delivered = 0
        with self._delivering:
            for feedback, revision in self._rows():
                try:
                    store.save(feedback)
                except StoreUnavailable as exc:
                    log.info("outbox delivery paused after %d: %s", delivered, exc)
                    if self._metrics is not None:
                        self._metrics.store_errors.inc()
                    break
                except Exception:
                    # One record the database refuses must not hold back the others;
                    # it stays queued, and logged, for someone to look at.
                    log.exception("feedback %s not delivered; left queued", feedback.request_id)
                    continue
                # Only the revision just saved: a newer one queued meanwhile stays.
                with self._lock:
                    self._db.execute(
                        "DELETE FROM outbox WHERE request_id = ? AND revision = ?",
                        (feedback.request_id, revision),
                    )
                delivered += 1
        if self._metrics is not None:
            self._metrics.delivered.inc(delivered)
        self._gauge()
        return delivered

    def close(self) -> None:
        """Close the file; the queued feedback stays in it for the next start."""
        with self._lock:
            self._db.close()

    def _rows(self) -> list[tuple[Feedback, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT request_id, record, image, revision FROM outbox "
                "ORDER BY created, request_id"
            ).fetchall()
        return [item for item in map(_decode, rows) if item is not None]

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.outbox_depth.set(self.depth())


def _decode(row: tuple[str, str, bytes | None, int]) -> tuple[Feedback, int] | None:
    """A queued feedback, validated again; a row that no longer validates stays, logged."""
    request_id, record, image, revision = row
    try:
        fields: dict[str, Any] = json.loads(record)
        fields["created"] = datetime.fromisoformat(fields["created"])
        return make_feedback(**fields, image=image), revision
    except (ValueError, TypeError, KeyError, FeedbackError) as exc:
        log.error("outbox row %r cannot be read, left in place: %s", request_id, exc)
        return None


class Flusher(threading.Thread):
    """Delivers the outbox every ``interval`` seconds until :meth:`stop`; never raises."""

    def __init__(
        self,
        outbox: Outbox,
        store: FeedbackStore,
        interval: float = 5.0,
        metrics: FeedbackMetrics | None = None,
    ) -> None:
        super().__init__(name="feedback-outbox-flusher", daemon=True)
        self.outbox = outbox
        self.store = store
        self.interval = interval
        self._metrics = metrics
        self._stopping = threading.Event()

    def run(self) -> None:
        # Deliver first: feedback queued before a restart should not wait a full interval.
        while True:
            try:
                self.outbox.deliver(self.store)
                if self._metrics is not None:
                    self._metrics.outbox_depth.set(self.outbox.depth())
            except Exception:  # a daemon that dies silently would strand the outbox
                log.exception("outbox delivery failed; trying again in %.1f s", self.interval)
            if self._stopping.wait(self.interval):
                return

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to finish after its current delivery, and wait for it."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)
