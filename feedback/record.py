"""One piece of feedback on a caption: validated and bounded before it goes anywhere.

Every field is checked for its exact type, so that a value shaped like a query
operator (``{"$gt": ""}``) never reaches MongoDB, and for its length, so that nothing
is silently truncated. Text is stored as typed: ``<script>`` stays inert text, and
the page escapes it when it shows it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

RATINGS = ("up", "down")
MAX_CAPTION = 500
MAX_CORRECTION = 500
MAX_NAME = 128
# A MongoDB document is at most 16 MiB; the image must leave room for the other fields.
MAX_IMAGE = 15 * 2**20

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MULTILINE = frozenset("\n\t")


class FeedbackError(ValueError):
    """A field that is missing, of the wrong type, or out of bounds; the message names it."""


@dataclass(frozen=True)
class Feedback:
    """Validated feedback; build it with :func:`make_feedback`, never directly from input."""

    request_id: str
    model_name: str
    model_version: str
    caption: str
    rating: str
    correction: str | None
    image_sha256: str
    ui_version: str
    created: datetime
    image: bytes | None = None

    def to_document(self) -> dict[str, Any]:
        """The MongoDB document (docs/architecture.md, feedback); ``image`` only if stored."""
        doc = asdict(self)
        if self.image is None:
            del doc["image"]
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Feedback:
        """Feedback read back from MongoDB, validated again as if it were new.

        Raises:
            FeedbackError: the document misses a field or holds a bad value.
        """
        if not isinstance(doc, dict):
            raise FeedbackError(f"a feedback document must be a dict, got {type(doc).__name__}")
        created = doc.get("created")
        # BSON dates are UTC; a client without tz_aware=True hands them back naive.
        if isinstance(created, datetime) and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        fields = {k: doc.get(k) for k in _FIELDS}
        return make_feedback(**fields, created=created, image=doc.get("image"))


_FIELDS = (
    "request_id",
    "model_name",
    "model_version",
    "caption",
    "rating",
    "correction",
    "image_sha256",
    "ui_version",
)


def make_feedback(
    *,
    request_id: Any,
    model_name: Any,
    model_version: Any,
    caption: Any,
    rating: Any,
    correction: Any = None,
    image_sha256: Any,
    ui_version: Any,
    created: Any = None,
    image: Any = None,
) -> Feedback:
    """Validate every field and build the feedback.

    Strings must be exactly ``str``; they are NFC-normalised and may not hold control
    characters (names not even newlines or tabs). ``correction`` is stripped and an
    empty one becomes ``None``. ``created`` defaults to now and is kept in UTC at
    millisecond precision, which is what a BSON date holds, so a record reads back equal.

    Raises:
        FeedbackError: naming the first field that is missing, mistyped or out of bounds.
    """
    if type(correction) is str:
        correction = correction.strip()
    if correction is not None:
        correction = text("correction", correction, MAX_CORRECTION) or None
    return Feedback(
        request_id=validate_request_id(request_id),
        model_name=text("model_name", model_name, MAX_NAME, minimum=1, multiline=False),
        model_version=text("model_version", model_version, MAX_NAME, minimum=1, multiline=False),
        caption=text("caption", caption, MAX_CAPTION),
        rating=validate_rating(rating),
        correction=correction,
        image_sha256=_sha256(image_sha256, image),
        ui_version=text("ui_version", ui_version, MAX_NAME, minimum=1, multiline=False),
        created=_created(created),
        image=_image(image),
    )


def text(
    field: str,
    value: Any,
    maximum: int,
    *,
    minimum: int = 0,
    multiline: bool = True,
) -> str:
    """A plain, bounded, NFC-normalised string.

    Raises:
        FeedbackError: naming ``field``.
    """
    if type(value) is not str:
        raise FeedbackError(f"{field} must be a string, got {type(value).__name__}")
    value = unicodedata.normalize("NFC", value)
    if not minimum <= len(value) <= maximum:
        raise FeedbackError(f"{field} must be {minimum} to {maximum} characters, got {len(value)}")
    for char in value:
        # Cs: a lone surrogate cannot be encoded as UTF-8, so BSON and SQLite refuse it.
        if unicodedata.category(char) in ("Cc", "Cs") and not (multiline and char in _MULTILINE):
            raise FeedbackError(f"{field} holds a control character ({ord(char):#06x})")
    return value


def validate_request_id(value: Any) -> str:
    """A request id: 8 to 64 characters of ``[A-Za-z0-9_-]``; the only key a filter uses."""
    if type(value) is not str:
        raise FeedbackError(f"request_id must be a string, got {type(value).__name__}")
    if not _REQUEST_ID.fullmatch(value):
        raise FeedbackError("request_id must be 8 to 64 characters of A-Z, a-z, 0-9, '_', '-'")
    return value


def validate_rating(value: Any) -> str:
    """One of :data:`RATINGS`."""
    if type(value) is not str or value not in RATINGS:
        raise FeedbackError(f"rating must be one of {', '.join(RATINGS)}")
    return value


def validate_time(field: str, value: Any) -> datetime:
    """A timezone-aware datetime, in UTC at millisecond precision."""
    if not isinstance(value, datetime):
        raise FeedbackError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise FeedbackError(f"{field} must be timezone-aware")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _created(value: Any) -> datetime:
    return validate_time("created", datetime.now(UTC) if value is None else value)


def _sha256(value: Any, image: Any) -> str:
    if type(value) is not str or not _SHA256.fullmatch(value):
        raise FeedbackError("image_sha256 must be 64 lowercase hexadecimal characters")
    # The digest names the image file in exports: it must be the digest of these bytes.
    if type(image) is bytes and hashlib.sha256(image).hexdigest() != value:
        raise FeedbackError("image_sha256 is not the SHA-256 of the image")
    return value


def _image(value: Any) -> bytes | None:
    if value is None:
        return None
    if type(value) is not bytes:
        raise FeedbackError(f"image must be bytes, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_IMAGE:
        raise FeedbackError(f"image must be 1 to {MAX_IMAGE} bytes, got {len(value)}")
    return value
