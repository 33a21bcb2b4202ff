"""Validation of feedback: exact types, bounds, no control characters, inert text."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from feedback.record import (
    MAX_CAPTION,
    MAX_CORRECTION,
    MAX_NAME,
    Feedback,
    FeedbackError,
    make_feedback,
)

STRING_FIELDS = (
    "request_id",
    "model_name",
    "model_version",
    "caption",
    "rating",
    "correction",
    "image_sha256",
    "ui_version",
)
OPERATOR_SHAPED = ({"$gt": ""}, {"$ne": None}, {"$where": "1"}, ["up"], ("up",), b"up", 7, 1.5)
MEGABYTE = "a" * (1 << 20)


def valid(**overrides):
    fields = {
        "request_id": "req-0123456789",
        "model_name": "attention",
        "model_version": "v1",
        "caption": "a red square",
        "rating": "up",
        "image_sha256": "ab" * 32,
        "ui_version": "0.1.0",
        "created": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return fields


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("value", OPERATOR_SHAPED, ids=repr)
def test_operator_shaped_and_non_string_values_are_refused_for_every_field(field, value):
    with pytest.raises(FeedbackError, match=field):
        make_feedback(**valid(**{field: value}))


@pytest.mark.parametrize("field", [f for f in STRING_FIELDS if f != "correction"])
def test_required_fields_refuse_none(field):
    with pytest.raises(FeedbackError, match=field):
        make_feedback(**valid(**{field: None}))


def test_a_string_subclass_is_not_a_plain_string():
    class Sneaky(str):
        pass

    with pytest.raises(FeedbackError, match="model_version"):
        make_feedback(**valid(model_version=Sneaky("v1")))


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_megabyte_strings_are_refused_not_truncated(field):
    with pytest.raises(FeedbackError, match=field):
        make_feedback(**valid(**{field: MEGABYTE}))


@pytest.mark.parametrize(
    ("field", "limit"),
    [("caption", MAX_CAPTION), ("correction", MAX_CORRECTION), ("model_version", MAX_NAME)],
)
def test_limits_are_exact(field, limit):
    assert getattr(make_feedback(**valid(**{field: "x" * limit})), field) == "x" * limit
    with pytest.raises(FeedbackError, match=field):
        make_feedback(**valid(**{field: "x" * (limit + 1)}))


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\r", "\x7f", "\x85", "\ud800"], ids=repr)
@pytest.mark.parametrize("field", ["caption", "correction", "model_name", "ui_version"])
def test_control_characters_and_lone_surrogates_are_refused(field, char):
    with pytest.raises(FeedbackError, match=field):
        make_feedback(**valid(**{field: f"a{char}b"}))


def test_newlines_and_tabs_are_text_in_a_correction_but_not_in_a_name():
    fb = make_feedback(**valid(correction="line one\n\tline two"))
    assert fb.correction == "line one\n\tline two"
    with pytest.raises(FeedbackError, match="model_version"):
        make_feedback(**valid(model_version="v1\nv2"))


def test_markup_is_kept_as_the_characters_typed():
    typed = "<script>alert(1)</script> & <b>bold</b>"
    fb = make_feedback(**valid(correction=typed, rating="down"))
    assert fb.correction == typed
    assert fb.to_document()["correction"] == typed


def test_text_is_nfc_normalised_and_measured_after_normalising():
    decomposed = "cafe\u0301 au lait"
    fb = make_feedback(**valid(caption=decomposed, correction=decomposed))
    assert fb.caption == fb.correction == "caf\u00e9 au lait"
    # 501 code points decomposed, 500 composed: within the limit once normalised.
    assert (
        make_feedback(**valid(correction="e\u0301" + "x" * 499)).correction == "\u00e9" + "x" * 499
    )


@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
def test_a_blank_correction_is_none_and_a_correction_is_stripped(blank):
    assert make_feedback(**valid(correction=blank)).correction is None
    assert make_feedback(**valid(correction="  a dog  \n")).correction == "a dog"


@pytest.mark.parametrize(
    "request_id", ["short", "x" * 65, "abcd$efgh", "abcd.efgh", "abcdefgh\n", "abcd efgh"]
)
def test_request_ids_outside_the_pattern_are_refused(request_id):
    with pytest.raises(FeedbackError, match="request_id"):
        make_feedback(**valid(request_id=request_id))


@pytest.mark.parametrize("rating", ["UP", "meh", "", " up"])
def test_only_up_and_down_are_ratings(rating):
    with pytest.raises(FeedbackError, match="rating"):
        make_feedback(**valid(rating=rating))


@pytest.mark.parametrize("digest", ["AB" * 32, "ab" * 31, "ab" * 32 + "\n", "zz" * 32])
def test_image_sha256_is_64_lowercase_hex(digest):
    with pytest.raises(FeedbackError, match="image_sha256"):
        make_feedback(**valid(image_sha256=digest))


def test_stored_image_bytes_must_match_their_digest():
    image = b"\xff\xd8 not really a jpeg"
    fb = make_feedback(**valid(image=image, image_sha256=hashlib.sha256(image).hexdigest()))
    assert fb.image == image
    with pytest.raises(FeedbackError, match="image_sha256"):
        make_feedback(**valid(image=image))
    with pytest.raises(FeedbackError, match="image"):
        make_feedback(**valid(image=bytearray(image)))


def test_created_is_aware_utc_at_millisecond_precision():
    plus_two = timezone(timedelta(hours=2))
    fb = make_feedback(**valid(created=datetime(2025, 3, 1, 14, 0, 0, 123456, tzinfo=plus_two)))
    assert fb.created == datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert fb.created.utcoffset() == timedelta(0)
    with pytest.raises(FeedbackError, match="created"):
        make_feedback(**valid(created=datetime(2025, 3, 1, 12, 0)))
    with pytest.raises(FeedbackError, match="created"):
        make_feedback(**valid(created="2025-03-01T12:00:00Z"))
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert make_feedback(**valid(created=None)).created >= before


def test_document_round_trip_and_image_only_when_stored():
    fb = make_feedback(**valid(correction="a blue square", rating="down"))
    doc = fb.to_document()
    assert "image" not in doc
    assert doc["rating"] == "down" and doc["correction"] == "a blue square"
    assert Feedback.from_document(doc) == fb
    image = b"pixels"
    with_image = make_feedback(**valid(image=image, image_sha256=hashlib.sha256(image).hexdigest()))
    assert with_image.to_document()["image"] == image
    assert Feedback.from_document(with_image.to_document()) == with_image


def test_a_document_with_an_operator_in_it_does_not_validate():
    doc = make_feedback(**valid()).to_document()
    with pytest.raises(FeedbackError, match="model_version"):
        Feedback.from_document({**doc, "model_version": {"$gt": ""}})
    with pytest.raises(FeedbackError, match="caption"):
        Feedback.from_document({k: v for k, v in doc.items() if k != "caption"})
