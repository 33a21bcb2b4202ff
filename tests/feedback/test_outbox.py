"""Outages: feedback waits in the durable outbox and arrives exactly once."""

from __future__ import annotations

import socket
import time

import pytest

from feedback.localdb import LocalDBError, LocalMongo, mongodb_uri_or_local
from feedback.metrics import FeedbackMetrics
from feedback.outbox import Flusher, Outbox
from feedback.store import FeedbackStore, StoreUnavailable
from feedback.submit import submit
from tests.helpers import free_port


@pytest.fixture
def unreachable():
    """A store pointed at a port where nothing listens."""
    with FeedbackStore(f"mongodb://127.0.0.1:{free_port()}/", timeout_ms=300) as dead:
        yield dead


@pytest.fixture
def metrics():
    return FeedbackMetrics()


def sample(metrics: FeedbackMetrics, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_an_unreachable_database_fails_fast_as_store_unavailable(unreachable, make):
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        unreachable.save(make())
    assert time.monotonic() - started < 1.5
    with pytest.raises(StoreUnavailable):
        unreachable.recent()
    with pytest.raises(StoreUnavailable):
        unreachable.up_rate()
    assert unreachable.ping() is False


def test_submit_queues_while_down_and_the_queue_survives_a_restart(
    tmp_path, unreachable, store, raw, make, jpeg, metrics
):
    path = tmp_path / "ui" / "outbox.sqlite3"
    outbox = Outbox(path, metrics=metrics)
    made = [make(image=jpeg(1)), make(rating="down", correction="<b>two</b> cats"), make()]
    assert [submit(fb, unreachable, outbox, metrics=metrics) for fb in made] == ["queued"] * 3
    assert outbox.depth() == 3
    assert sample(metrics, "captioner_feedback_total", rating="up", outcome="queued") == 2
    assert sample(metrics, "captioner_feedback_total", rating="down", outcome="queued") == 1
    assert sample(metrics, "captioner_feedback_store_errors_total") == 3
    assert sample(metrics, "captioner_feedback_outbox_depth") == 3
    outbox.close()

    reopened = Outbox(path, metrics=metrics)  # the UI process restarted
    assert reopened.depth() == 3
    assert reopened.pending() == made  # oldest first, image bytes included
    assert reopened.deliver(unreachable) == 0
    assert reopened.depth() == 3
    assert reopened.deliver(store) == 3
    assert reopened.depth() == 0
    assert raw.count_documents({}) == 3
    assert store.get(made[0].request_id) == made[0]
    assert sample(metrics, "captioner_feedback_delivered_total") == 3
    assert sample(metrics, "captioner_feedback_outbox_depth") == 0

    # A crash between save and delete: the same feedback is delivered again.
    for fb in made:
        reopened.put(fb)
    assert reopened.deliver(store) == 3
    assert reopened.deliver(store) == 0
    assert raw.count_documents({}) == 3
    reopened.close()


def test_submit_stores_directly_when_the_database_answers(tmp_path, store, make, metrics):
    outbox = Outbox(tmp_path / "outbox.sqlite3", metrics=metrics)
    fb = make(rating="down")
    assert submit(fb, store, outbox, metrics=metrics) == "stored"
    assert store.get(fb.request_id) == fb
    assert outbox.depth() == 0
    assert sample(metrics, "captioner_feedback_total", rating="down", outcome="stored") == 1
    assert (
        sample(
            metrics,
            "captioner_feedback_total",
            model_version=fb.model_version,
            corrected=str(fb.correction is not None).lower(),
        )
        == 1
    )
    assert sample(metrics, "captioner_feedback_store_errors_total") == 0


def test_a_changed_feedback_replaces_the_queued_one(tmp_path, make):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    first = make(request_id="req-twice-01", rating="up")
    changed = make(request_id="req-twice-01", rating="down", correction="a cat")
    outbox.put(first)
    outbox.put(changed)
    assert outbox.depth() == 1
    assert outbox.pending() == [changed]
    outbox.put(first)  # a stale copy arriving late does not win
    assert outbox.pending() == [changed]


def test_a_newer_copy_queued_during_delivery_is_kept(tmp_path, store, make):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    first = make(request_id="req-racing-1", rating="up")
    changed = make(request_id="req-racing-1", rating="down")

    class ResubmitWhileSaving:
        """The page queues a changed feedback while the flusher is saving the old one."""

        def save(self, feedback):
            store.save(feedback)
            outbox.put(changed)

    outbox.put(first)
    assert outbox.deliver(ResubmitWhileSaving()) == 1
    assert outbox.pending() == [changed]
    assert outbox.deliver(store) == 1
    assert store.get("req-racing-1") == changed


def test_the_flusher_delivers_in_the_background(tmp_path, store, raw, make, metrics):
    outbox = Outbox(tmp_path / "outbox.sqlite3", metrics=metrics)
    for _ in range(3):
        outbox.put(make())
    flusher = Flusher(outbox, store, interval=0.05, metrics=metrics)
    flusher.start()
    deadline = time.monotonic() + 10
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.02)
    flusher.stop(timeout=5)
    assert not flusher.is_alive()
    assert raw.count_documents({}) == 3
    assert sample(metrics, "captioner_feedback_delivered_total") == 3


def test_one_refused_record_does_not_hold_back_the_others(tmp_path, store, raw, make, caplog):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    made = [make(), make(), make()]
    for fb in made:
        outbox.put(fb)

    class RefusesTheOldest:
        def save(self, feedback):
            if feedback == made[0]:
                raise ValueError("refused by the database")
            store.save(feedback)

    assert outbox.deliver(RefusesTheOldest()) == 2
    assert outbox.pending() == [made[0]]
    assert raw.count_documents({}) == 2
    assert "refused by the database" in caplog.text


def test_the_flusher_survives_errors_it_did_not_expect(tmp_path, store, make, caplog):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.put(make())
    outbox.close()  # every delivery now fails inside SQLite
    flusher = Flusher(outbox, store, interval=0.02)
    flusher.start()
    deadline = time.monotonic() + 10
    while caplog.text.count("outbox delivery failed") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flusher.is_alive()
    flusher.stop(timeout=5)
    assert not flusher.is_alive()
    assert caplog.text.count("outbox delivery failed") >= 3


def test_exactly_once_across_a_database_restart(tmp_path, make):
    assert mongodb_uri_or_local("mongodb://db.example:27017/", tmp_path, 1) == (
        "mongodb://db.example:27017/",
        None,
    )
    uri, local = mongodb_uri_or_local(None, tmp_path / "mongo", free_port())
    assert local is not None
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        store = FeedbackStore(uri, "restart", timeout_ms=300)
        first = make()
        assert submit(first, store, outbox) == "stored"
        local.stop()
        later = [make(), make(rating="down", correction="a tall tree")]
        assert [submit(fb, store, outbox) for fb in later] == ["queued", "queued"]
        local.start()  # same data directory, same port
        assert outbox.deliver(store) == 2
        assert outbox.deliver(store) == 0
        assert store.recent() == [*later[::-1], first]
        store.close()
    finally:
        local.stop()


def test_the_local_database_refuses_a_port_that_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        local = LocalMongo(tmp_path / "mongo", port=taken.getsockname()[1])
        with pytest.raises(LocalDBError, match="in use"):
            local.start()
