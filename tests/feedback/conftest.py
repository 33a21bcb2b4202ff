"""Fixtures for the feedback component: a real MongoDB wire server and fresh databases.

``MONGODB_URI`` points the tests at a real MongoDB; without it a local nx-27017 is
started once per session. Every test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image
from pymongo import MongoClient

from feedback.record import Feedback, make_feedback
from feedback.store import FeedbackStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _jpeg(seed: int) -> bytes:
    color = (seed * 40 % 256, seed * 90 % 256, seed * 150 % 256)
    out = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def jpeg() -> Callable[[int], bytes]:
    """A factory of small real JPEGs, a different one for every seed."""
    return _jpeg


@pytest.fixture
def t0() -> datetime:
    """When the first feedback from ``make`` was created."""
    return T0


@pytest.fixture
def db_name() -> str:
    return f"test_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def raw(mongo_uri, db_name) -> Iterator[Any]:
    """The feedback collection through plain pymongo, to check what was really written."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    yield client[db_name]["feedback"]
    client.drop_database(db_name)
    client.close()


@pytest.fixture
def store(mongo_uri, db_name, raw) -> Iterator[FeedbackStore]:
    with FeedbackStore(mongo_uri, db_name) as feedback_store:
        feedback_store.ensure_indexes()
        yield feedback_store


@pytest.fixture
def make() -> Callable[..., Feedback]:
    """A factory of valid feedback: unique request ids, one minute apart from T0."""
    counter = itertools.count()

    def build(**overrides: Any) -> Feedback:
        n = next(counter)
        fields: dict[str, Any] = {
            "request_id": f"req-{uuid.uuid4().hex[:12]}",
            "model_name": "attention",
            "model_version": "v1",
            "caption": "a red square above a blue circle",
            "rating": "up",
            "image_sha256": hashlib.sha256(f"image {n}".encode()).hexdigest(),
            "ui_version": "0.1.0",
            "created": T0 + timedelta(minutes=n),
        }
        if overrides.get("image") is not None and "image_sha256" not in overrides:
            fields["image_sha256"] = hashlib.sha256(overrides["image"]).hexdigest()
        fields.update(overrides)
        return make_feedback(**fields)

    return build
