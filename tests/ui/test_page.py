"""The caption page's logic with Streamlit's AppTest, against the real service and database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pymongo
import pytest
import streamlit as st

from feedback.localdb import LocalMongo
from feedback.store import FeedbackStore
from tests.helpers import REAL_PHOTOS, REPO, free_port, wait_until
from tests.ui.page_driver import give_feedback, messages, open_page, upload
from ui.client import PLAIN_WORDS

pytestmark = pytest.mark.server

PHOTOS = sorted(REAL_PHOTOS.glob("*.jpg"))


@pytest.fixture
def service(running_service):
    return running_service


def page_environment(monkeypatch, service, mongo_uri, tmp_path) -> tuple[str, dict[str, str]]:
    database = f"page_{uuid.uuid4().hex[:12]}"
    env = {
        "CAPTIONER_SERVICE_URL": service.url,
        "MONGODB_URI": mongo_uri,
        "CAPTIONER_MONGODB_DATABASE": database,
        "CAPTIONER_MONGODB_TIMEOUT_MS": "500",
        "CAPTIONER_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
        "CAPTIONER_UI_METRICS_PORT": "0",
        "CAPTIONER_FLUSH_SECONDS": "0.3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()  # each test builds the page's resources from its environment
    return database, env


@pytest.fixture
def store(monkeypatch, service, mongo_uri, tmp_path):
    database, _ = page_environment(monkeypatch, service, mongo_uri, tmp_path)
    feedback = FeedbackStore(mongo_uri, database)
    yield feedback
    feedback.close()
    pymongo.MongoClient(mongo_uri).drop_database(database)


def test_upload_shows_the_services_caption_and_alternatives(store, service):
    page = open_page()
    assert not page.exception
    assert any("Upload an image" in m for m in messages(page)["info"])
    data = PHOTOS[0].read_bytes()
    upload(page, PHOTOS[0].name, data)
    assert not page.exception, messages(page)
    direct = httpx.post(
        f"{service.url}/v1/captions", files={"image": ("a.jpg", data)}, data={"beam_size": "3"}
    ).json()
    assert page.subheader[0].value == direct["caption"]
    table = page.dataframe[0].value
    assert list(table["caption"]) == [c["caption"] for c in direct["candidates"]]
    assert direct["model"]["version"] in page.caption[0].value.replace("\\", "")


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("notes.jpg", b"these are notes, not a photo", 415),
        ("cut.jpg", PHOTOS[1].read_bytes()[:3000], 422),
    ],
)
def test_service_errors_are_shown_in_plain_words(store, name, data, status):
    page = upload(open_page(), name, data)
    assert not page.exception
    assert messages(page)["error"] == [PLAIN_WORDS[status]]


def test_feedback_is_saved_and_a_change_never_doubles_it(store):
    page = upload(open_page(), PHOTOS[2].name, PHOTOS[2].read_bytes())
    give_feedback(page, "down", "a small red circle")
    assert messages(page)["success"] == ["Thank you! Your feedback was saved."]
    [saved] = store.recent(10)
    assert (saved.rating, saved.correction) == ("down", "a small red circle")
    assert saved.caption == page.subheader[0].value
    give_feedback(page, "up", "")
    assert messages(page)["success"] == ["Your feedback was updated."]
    [changed] = store.recent(10)
    assert changed.request_id == saved.request_id
    assert (changed.rating, changed.correction) == ("up", None)


def test_a_client_that_floods_feedback_is_refused_and_nothing_extra_is_kept(store, monkeypatch):
    monkeypatch.setenv("CAPTIONER_RATE_LIMIT", "2/minute")
    monkeypatch.setenv("CAPTIONER_STORE_IMAGES", "true")
    page = open_page()
    for n, photo in enumerate(PHOTOS[:3]):
        upload(page, photo.name, photo.read_bytes())
        assert any("this image are stored" in c.value for c in page.caption)  # stated
        give_feedback(page, "down", f"a corrected caption number {n}")
    said = messages(page)
    assert said["warning"] and said["warning"][0].startswith("You have sent a lot of feedback")
    assert "Please send more in" in said["warning"][0] and not said["success"]
    saved = store.recent(10)
    assert sorted(f.correction for f in saved) == [
        "a corrected caption number 0",
        "a corrected caption number 1",
    ]
    assert all(f.image is not None for f in store.scan(images=True))


def test_a_choice_is_needed_before_sending(store):
    page = upload(open_page(), PHOTOS[3].name, PHOTOS[3].read_bytes())
    [send] = [b for b in page.button if b.label == "Send feedback"]
    send.click()
    page.run()
    assert messages(page)["warning"] == ["Choose 👍 or 👎 first."]
    assert store.recent(10) == []


def test_markup_in_a_correction_is_stored_and_shown_as_text(store):
    hostile = "<script>alert('x')</script> **bold** [link](http://example.com)"
    page = upload(open_page(), PHOTOS[4].name, PHOTOS[4].read_bytes())
    give_feedback(page, "down", hostile)
    [saved] = store.recent(10)
    assert saved.correction == hostile
    page.sidebar.radio[0].set_value("Feedback")
    page.run()
    assert not page.exception
    shown = page.dataframe[0].value
    assert list(shown["correction"]) == [hostile]  # a dataframe cell: inert text


def test_outage_queues_three_and_delivers_them_once_after_a_restart(monkeypatch, service, tmp_path):
    """Database down: three feedbacks queue (the page says so); the UI process ends; the
    database comes back; a new UI process delivers them, each exactly once."""
    port = free_port()
    database = LocalMongo(tmp_path / "db", port)
    uri = database.start()
    _, env = page_environment(monkeypatch, service, uri, tmp_path)
    FeedbackStore(uri, env["CAPTIONER_MONGODB_DATABASE"]).ensure_indexes()
    database.stop()

    def ui_process(*args: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "tests.ui.page_driver", *args],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    first = ui_process("feedback", *(str(p) for p in PHOTOS[:3]))
    for step, page in enumerate(first["pages"], start=1):
        assert not page["exception"] and not page["error"]
        assert any("queued" in m and f"({step} waiting)" in m for m in page["info"]), page
    database = LocalMongo(tmp_path / "db", port)
    database.start()
    try:
        after = ui_process("open")
        assert not any("waiting" in w for w in after["pages"][0]["warning"])
        store = FeedbackStore(uri, env["CAPTIONER_MONGODB_DATABASE"])
        records = wait_until(lambda: len(store.recent(10)) == 3 and store.recent(10))
        corrections = sorted(r.correction for r in records)
        assert corrections == sorted(f"a corrected caption for {p.stem}" for p in PHOTOS[:3])
        documents = pymongo.MongoClient(uri)[env["CAPTIONER_MONGODB_DATABASE"]]["feedback"]
        assert documents.count_documents({}) == 3
        ui_process("open")  # a second restart delivers nothing twice
        assert documents.count_documents({}) == 3
        store.close()
    finally:
        database.stop()
