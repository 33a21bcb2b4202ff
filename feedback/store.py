"""Feedback in MongoDB: database ``captioner``, collection ``feedback`` (docs/architecture.md).

Filters are built only from validated values (a request id that matched its pattern,
a rating from :data:`feedback.record.RATINGS`, plain strings, aware datetimes), so a value
shaped like an operator never becomes one. Every connection failure surfaces as
:class:`StoreUnavailable`, which the page answers with the outbox.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)

from feedback.record import (
    MAX_NAME,
    Feedback,
    FeedbackError,
    text,
    validate_rating,
    validate_request_id,
    validate_time,
)

log = logging.getLogger(__name__)

COLLECTION = "feedback"
_UNREACHABLE = (ServerSelectionTimeoutError, NetworkTimeout, AutoReconnect, ConnectionFailure)


class StoreUnavailable(RuntimeError):
    """The feedback database cannot be reached."""


@contextmanager
def _reachable(action: str) -> Iterator[None]:
    try:
        yield
    except _UNREACHABLE as exc:
        raise StoreUnavailable(f"feedback database unreachable while {action}: {exc}") from exc


class FeedbackStore:
    """Reads and writes feedback; connects lazily, so building one contacts nothing."""

    def __init__(self, uri: str, database: str = "captioner", timeout_ms: int = 2000) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            tz_aware=True,
            connect=False,
            appname="captioner-ui",
        )
        self._collection = self._client[database][COLLECTION]
        self._indexed = False

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_indexes(self) -> None:
        """Create the indexes: unique ``request_id``, ``created``, ``(model_version, created)``."""
        with _reachable("creating indexes"):
            self._collection.create_index([("request_id", ASCENDING)], unique=True)
            self._collection.create_index([("created", DESCENDING)])
            self._collection.create_index([("model_version", ASCENDING), ("created", DESCENDING)])
        self._indexed = True

    def save(self, feedback: Feedback) -> None:
        """Insert or replace the feedback for its request id: never two records for one.

        A replacement only wins when it is not older than the stored record, so a
        stale copy (delivered late from an outbox) cannot undo a newer submit. (nx-27017
        compares dates to the second: there, two versions within one second tie.)

        Raises:
            StoreUnavailable: the database cannot be reached; nothing or only part was
                written, and saving again completes it.
        """
        if not isinstance(feedback, Feedback):
            raise TypeError(f"save() takes a Feedback, got {type(feedback).__name__}")
        # The created guard relies on the unique index: without it a stale upsert would
        # insert a second record. The page may have started while the database was down.
        if not self._indexed:
            self.ensure_indexes()
        where = {"request_id": feedback.request_id, "created": {"$lte": feedback.created}}
        doc = feedback.to_document()
        image = doc.pop("image", None)
        with _reachable("saving feedback"):
            if not self._replace(where, doc):
                log.info("kept the newer stored feedback for %s", feedback.request_id)
                return
            if image is not None:
                # Set apart: nx-27017 fails to replace a record that holds bytes, but
                # sets them fine. A failure in between leaves the caller to retry.
                self._collection.update_one(
                    {"request_id": feedback.request_id, "image_sha256": feedback.image_sha256},
                    {"$set": {"image": image}},
                )

    def _replace(self, where: dict[str, Any], doc: dict[str, Any]) -> bool:
        """Upsert; ``False`` when the stored record is newer."""
        for _ in range(2):
            try:
                self._collection.replace_one(where, doc, upsert=True)
                return True
            except DuplicateKeyError:
                # Either two first submits raced (the retry then replaces), or the
                # stored record is newer than this one (the retry fails the same way).
                continue
        return False

    def get(self, request_id: str) -> Feedback | None:
        """The feedback for one request, or ``None``."""
        where = {"request_id": validate_request_id(request_id)}
        with _reachable("reading feedback"):
            doc = self._collection.find_one(where, {"_id": False})
        return None if doc is None else Feedback.from_document(doc)

    def recent(
        self,
        limit: int | None = 100,
        *,
        model_version: str | None = None,
        rating: str | None = None,
        since: datetime | None = None,
        images: bool = False,
    ) -> list[Feedback]:
        """Feedback newest first, filtered; ``limit=None`` for all of it.

        Image bytes are left out unless ``images`` is true: a listing should not
        carry megabytes per row.

        Raises:
            FeedbackError: a filter value is not a plain string, a rating or an aware datetime.
        """
        if limit is not None and (type(limit) is not int or limit < 1):
            raise FeedbackError(f"limit must be a positive int or None, got {limit!r}")
        where, start = _filter(model_version, rating, since)
        with _reachable("listing feedback"):
            cursor = self._collection.find(where, _projection(images))
            cursor = cursor.sort([("created", DESCENDING), ("request_id", DESCENDING)])
            docs = list(cursor.limit(limit or 0))
        return [fb for fb in map(_decode, docs) if fb is not None and _after(fb.created, start)]

    def scan(self, since: datetime | None = None, *, images: bool = False) -> Iterator[Feedback]:
        """All feedback since a time, oldest first, streamed in batches (for exports)."""
        where, start = _filter(None, None, since)
        with _reachable("reading feedback"):
            cursor = self._collection.find(where, _projection(images), batch_size=100)
            for doc in cursor.sort([("created", ASCENDING), ("request_id", ASCENDING)]):
                fb = _decode(doc)
                if fb is not None and _after(fb.created, start):
                    yield fb

    def up_rate(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Thumbs-up counts and rate per model version and UTC day.

        Grouped here rather than with ``$group``: nx-27017 (the embedded default)
        does not evaluate ``$dateToString`` in a group key. Only three small fields
        per record travel.

        Returns:
            ``{"model_version", "day" (YYYY-MM-DD), "up", "down", "rate"}`` dicts,
            sorted by model version and day.
        """
        where, start = _filter(None, None, since)
        fields = {"_id": False, "model_version": True, "rating": True, "created": True}
        counts: Counter[tuple[str, str, Any]] = Counter()
        with _reachable("counting feedback"):
            for doc in self._collection.find(where, fields):
                version, rating, created = (
                    doc.get(k) for k in ("model_version", "rating", "created")
                )
                if isinstance(version, str) and isinstance(created, datetime):
                    created = _utc(created)
                    if _after(created, start):
                        counts[(version, created.date().isoformat(), rating)] += 1
        rows = []
        for version, day in sorted({(version, day) for version, day, _ in counts}):
            up, down = counts[(version, day, "up")], counts[(version, day, "down")]
            if up + down:
                rate = up / (up + down)
                rows.append(
                    {"model_version": version, "day": day, "up": up, "down": down, "rate": rate}
                )
        return rows

    def model_versions(self) -> list[str]:
        """The model versions that have feedback, sorted."""
        with _reachable("listing model versions"):
            values = self._collection.distinct("model_version")
        return sorted(v for v in values if isinstance(v, str))

    def ping(self) -> bool:
        """Whether the database answers now (never raises for an outage)."""
        try:
            with _reachable("pinging"):
                self._client.admin.command("ping")
        except StoreUnavailable:
            return False
        return True

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def _filter(model_version: Any, rating: Any, since: Any) -> tuple[dict[str, Any], datetime | None]:
    """The query from validated values only, and the validated start time."""
    where: dict[str, Any] = {}
    if model_version is not None:
        where["model_version"] = text("model_version", model_version, MAX_NAME, multiline=False)
    if rating is not None:
        where["rating"] = validate_rating(rating)
    start = None if since is None else validate_time("since", since)
    if start is not None:
        where["created"] = {"$gte": start}
    return where, start


def _after(created: datetime, start: datetime | None) -> bool:
    # nx-27017 compares dates to the second, so its answer to $gte is a superset:
    # checked again here to be exact on every server.
    return start is None or created >= start


def _projection(images: bool) -> dict[str, bool]:
    return {"_id": False} if images else {"_id": False, "image": False}


def _utc(value: datetime) -> datetime:
    # BSON dates are UTC; a naive one (a client without tz_aware) means UTC too.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _decode(doc: dict[str, Any]) -> Feedback | None:
    """A stored record, or ``None`` (logged) when it no longer validates."""
    try:
        return Feedback.from_document(doc)
    except FeedbackError as exc:
        log.warning("skipping an invalid feedback record %r: %s", doc.get("request_id"), exc)
        return None
