"""The one builder of the feedback component, and the one flusher per outbox."""

from __future__ import annotations

import subprocess
import sys

import pytest

from feedback.outbox import Outbox
from feedback.runtime import FeedbackRuntime, build, lock_path
from feedback.settings import FeedbackSettings
from tests.helpers import free_port, wait_until


def sample(runtime: FeedbackRuntime, name: str) -> float | None:
    return runtime.metrics.registry.get_sample_value(name)


@pytest.fixture
def settings(mongo_uri, db_name, raw, tmp_path) -> FeedbackSettings:
    return FeedbackSettings(
        mongodb_uri=mongo_uri,
        mongodb_database=db_name,
        outbox_path=tmp_path / "outbox.sqlite3",
        flush_seconds=0.05,
    )


def test_build_wires_the_store_outbox_and_metrics_and_contacts_nothing(settings, raw, make):
    runtime = build(settings)
    try:
        assert runtime.uri == settings.mongodb_uri.get_secret_value()
        assert runtime.local is None  # a URI was given: no embedded database
        assert runtime.outbox.path == settings.outbox_path
        assert not runtime.delivering
        assert "feedback" not in raw.database.list_collection_names()  # nothing contacted
        assert runtime.ensure_indexes()
        unique = [i["key"] for i in raw.index_information().values() if i.get("unique")]
        assert unique == [[("request_id", 1)]]
        runtime.outbox.put(make())
        assert runtime.outbox.depth() == 1  # queued, and nobody delivers it yet
        assert sample(runtime, "captioner_feedback_outbox_depth") == 1
    finally:
        runtime.close()


def test_the_started_runtime_delivers_what_was_queued(settings, raw, make):
    queued = Outbox(settings.outbox_path)
    queued.put(make(rating="down", correction="queued before the start"))
    queued.close()
    runtime = build(settings)
    try:
        assert runtime.start()
        assert runtime.delivering
        delivered = "captioner_feedback_delivered_total"
        wait_until(lambda: sample(runtime, delivered) == 1, 30, what="delivery")
        assert runtime.outbox.depth() == 0
        assert [d["correction"] for d in raw.find()] == ["queued before the start"]
    finally:
        runtime.close()
    assert not runtime.delivering


def test_one_outbox_has_one_flusher(settings):
    first, second = build(settings), build(settings)
    try:
        assert first.start()
        assert not first.start()  # a second start on the same runtime starts nothing
        assert not second.start()  # nor another runtime on the same outbox
        assert (first.delivering, second.delivering) == (True, False)
        first.stop()
        assert second.start()  # released on stop: the next one takes over
    finally:
        first.close()
        second.close()


def test_a_process_that_delivers_the_outbox_keeps_it(settings):
    """The launcher's case: another process holds the outbox; the page's start yields."""
    settings.outbox_path.touch()
    hold = (
        "import fcntl, sys, time; lock = open(sys.argv[1], 'a'); "
        "fcntl.flock(lock, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock_path(settings.outbox_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    runtime = build(settings)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not runtime.start()
        assert not runtime.delivering
        holder.kill()
        holder.wait(10)
        assert runtime.start()  # the holder's exit released it, crash or not
    finally:
        if holder.poll() is None:
            holder.kill()
        runtime.close()


def test_an_unreachable_database_is_not_an_error_at_start(tmp_path):
    dead = f"mongodb://127.0.0.1:{free_port()}/"
    runtime = build(
        FeedbackSettings(mongodb_uri=dead, mongodb_timeout_ms=200, outbox_path=tmp_path / "o")
    )
    try:
        assert runtime.ensure_indexes() is False
        assert runtime.start()  # the flusher waits for the database, it does not fail
    finally:
        runtime.close()
