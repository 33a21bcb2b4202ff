"""The feedback store over the wire: one record per request, filters that stay values."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pymongo.errors import DuplicateKeyError

from feedback.record import FeedbackError
from feedback.store import FeedbackStore


def test_request_id_has_a_unique_index_that_the_database_enforces(store, raw, make):
    unique = [i for i in raw.index_information().values() if i.get("unique")]
    assert [i["key"] for i in unique] == [[("request_id", 1)]]
    store.save(make(request_id="req-unique-1"))
    with pytest.raises(DuplicateKeyError):
        raw.insert_one({"request_id": "req-unique-1"})


def test_a_fresh_store_creates_its_indexes_before_the_first_save(mongo_uri, db_name, raw, make):
    with FeedbackStore(mongo_uri, db_name) as fresh:
        fresh.save(make())
    assert any(i.get("unique") for i in raw.index_information().values())


def test_saving_again_replaces_the_record_and_never_doubles_it(store, raw, make):
    first = make(request_id="req-changed-1", rating="up")
    store.save(first)
    store.save(first)  # a retried submit
    changed = make(request_id="req-changed-1", rating="down", correction="a green triangle")
    store.save(changed)
    assert raw.count_documents({"request_id": "req-changed-1"}) == 1
    assert raw.count_documents({}) == 1
    assert store.get("req-changed-1") == changed


def test_a_stale_copy_does_not_undo_a_newer_submit(store, raw, make):
    older = make(request_id="req-stale-01", rating="up")
    newer = make(request_id="req-stale-01", rating="down", correction="two dogs")
    store.save(newer)
    store.save(older)  # e.g. delivered late from an outbox
    assert store.get("req-stale-01") == newer
    assert raw.count_documents({}) == 1


def test_markup_and_unicode_come_back_byte_identical(store, raw, make):
    typed = "<script>alert(1)</script> caf\u00e9 \u2603 \U0001f436\n\t\"quotes\" & 'apostrophes'"
    store.save(make(request_id="req-script-1", rating="down", correction=typed))
    stored = raw.find_one({"request_id": "req-script-1"})
    assert stored["correction"].encode("utf-8") == typed.encode("utf-8")
    assert store.get("req-script-1").correction == typed


def test_images_are_stored_when_given_and_left_out_of_listings(store, make, jpeg):
    image = jpeg(1)
    store.save(make(request_id="req-image-01", image=image))
    assert store.get("req-image-01").image == image
    assert store.recent()[0].image is None
    assert store.recent(images=True)[0].image == image
    assert store.get("req-absent-01") is None


def test_a_record_with_an_image_can_be_replaced(store, raw, make, jpeg):
    store.save(make(request_id="req-image-02", image=jpeg(2), rating="up"))
    again = make(request_id="req-image-02", image=jpeg(2), rating="down", correction="a dog")
    store.save(again)
    assert store.get("req-image-02") == again
    without = make(request_id="req-image-02", image_sha256=again.image_sha256, rating="up")
    store.save(without)  # storing images was turned off meanwhile
    assert store.get("req-image-02") == without
    assert raw.count_documents({}) == 1


def test_recent_is_newest_first_and_filters(store, make):
    made = [
        make(model_version="v1", rating="up"),
        make(model_version="v2", rating="down"),
        make(model_version="v1", rating="down"),
        make(model_version="v2", rating="up"),
        make(model_version="v1", rating="up"),
    ]
    for fb in made:
        store.save(fb)
    assert store.recent() == made[::-1]
    assert store.recent(2) == made[:2:-1]
    assert store.recent(model_version="v1") == [made[4], made[2], made[0]]
    assert store.recent(rating="down") == [made[2], made[1]]
    assert store.recent(model_version="v2", rating="up") == [made[3]]
    assert store.recent(since=made[2].created) == [made[4], made[3], made[2]]
    assert store.recent(since=made[4].created + timedelta(milliseconds=1)) == []
    assert store.model_versions() == ["v1", "v2"]


def test_up_rate_per_model_version_and_day(store, make, t0):
    day1, day2 = t0, t0 + timedelta(days=1)
    for version, created, rating in [
        ("v1", day1, "up"),
        ("v1", day1 + timedelta(hours=1), "up"),
        ("v1", day1 + timedelta(hours=2), "down"),
        ("v1", day2, "up"),
        ("v2", day1, "down"),
        ("v2", day2, "up"),
        ("v2", day2 + timedelta(hours=3), "down"),
        ("v2", day2 + timedelta(hours=4), "down"),
        ("v2", day2 + timedelta(hours=5), "down"),
    ]:
        store.save(make(model_version=version, created=created, rating=rating))
    assert store.up_rate() == [
        {"model_version": "v1", "day": "2025-03-01", "up": 2, "down": 1, "rate": 2 / 3},
        {"model_version": "v1", "day": "2025-03-02", "up": 1, "down": 0, "rate": 1.0},
        {"model_version": "v2", "day": "2025-03-01", "up": 0, "down": 1, "rate": 0.0},
        {"model_version": "v2", "day": "2025-03-02", "up": 1, "down": 3, "rate": 0.25},
    ]
    assert [(r["model_version"], r["day"]) for r in store.up_rate(since=day2)] == [
        ("v1", "2025-03-02"),
        ("v2", "2025-03-02"),
    ]


def test_user_values_are_matched_as_strings_never_as_operators(store, make):
    for _ in range(3):
        store.save(make())
    assert store.recent(model_version="{'$gt': ''}") == []
    assert store.recent(model_version='{"$ne": null}') == []
    assert store.recent(model_version="$gt") == []
    for bad in ({"$gt": ""}, {"$ne": None}, ["v1"]):
        with pytest.raises(FeedbackError, match="model_version"):
            store.recent(model_version=bad)
    with pytest.raises(FeedbackError, match="rating"):
        store.recent(rating={"$in": ["up", "down"]})
    with pytest.raises(FeedbackError, match="since"):
        store.recent(since="2025-01-01")
    with pytest.raises(FeedbackError, match="since"):
        store.recent(since=datetime(2025, 1, 1))
    with pytest.raises(FeedbackError, match="request_id"):
        store.get({"$ne": None})
    with pytest.raises(FeedbackError, match="limit"):
        store.recent(limit={"$gt": 0})
    assert len(store.recent()) == 3


def test_a_record_that_no_longer_validates_is_skipped_not_fatal(store, raw, make):
    good = make()
    store.save(good)
    raw.insert_one({**make().to_document(), "request_id": "req-bad-0001", "rating": {"$gt": ""}})
    assert store.recent() == [good]


def test_ping_answers_for_a_running_database(store):
    assert store.ping() is True
