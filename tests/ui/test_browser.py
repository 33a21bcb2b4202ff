"""The page in a real browser: Debian's Chromium, headless, driven by Playwright.

`captioner ui` runs as a user starts it, against `captioner serve` and the
database over the wire; the test uploads a real photo, reads the caption, answers
thumbs down with a correction, and reads the record back from the database.
A screenshot of the page is kept in test-artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import httpx
import pymongo
import pytest

from tests.helpers import REAL_PHOTOS, REPO, free_port, metric_value, wait_until
from tests.ui.browser import require_chromium, send_feedback, upload

pytestmark = pytest.mark.server

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def ui_process(running_service, mongo_uri, tmp_path):
    with page_process(running_service, mongo_uri, tmp_path) as started:
        yield started


@contextlib.contextmanager
def page_process(service, mongo_uri, tmp_path):
    """``captioner ui`` against SERVICE; yields its URL, database and metrics port."""
    require_chromium()
    port, metrics_port = free_port(), free_port()
    database = f"browser_{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "MONGODB_URI": mongo_uri,
        "CAPTIONER_MONGODB_DATABASE": database,
        "CAPTIONER_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
        "CAPTIONER_UI_METRICS_PORT": str(metrics_port),
    }
    log = (tmp_path / "ui.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "ui",
            "--port",
            str(port),
            "--service-url",
            service.url,
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200,
            60,
            what="Streamlit to answer",
        )
        yield url, database, metrics_port
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        pymongo.MongoClient(mongo_uri).drop_database(database)


def test_upload_caption_thumbs_down_and_correction_reach_the_database(
    ui_process, running_service, mongo_uri
):
    from playwright.sync_api import sync_playwright

    url, database, metrics_port = ui_process
    photo = REAL_PHOTOS / "img5.jpg"
    expected = httpx.post(
        f"{running_service.url}/v1/captions",
        files={"image": ("p.jpg", photo.read_bytes())},
        data={"beam_size": "3"},
    ).json()["caption"]
    correction = "two dogs play in the snow <b>near</b> a fence"
    with sync_playwright() as playwright:
        browser, page = upload(playwright, url, photo, expected)
        send_feedback(page, correction)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-caption-page.png"), full_page=True)
        browser.close()
    [record] = list(pymongo.MongoClient(mongo_uri)[database]["feedback"].find({}))
    assert record["rating"] == "down"
    assert record["correction"] == correction
    assert record["caption"] == expected
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert metric_value(metrics, "captioner_feedback_total", rating="down", corrected="true") == 1
    assert (
        metric_value(metrics, "captioner_feedback_total", model_version=record["model_version"])
        == 1
    )


@pytest.mark.java
def test_the_page_captions_a_real_photo_with_the_real_photo_model(
    real_service, mongo_uri, tmp_path
):
    from playwright.sync_api import sync_playwright

    photo = REAL_PHOTOS / "img3.jpg"  # two dogs running on a beach
    with page_process(real_service, mongo_uri, tmp_path) as (url, _database, _port):
        expected = httpx.post(
            f"{real_service.url}/v1/captions",
            files={"image": ("p.jpg", photo.read_bytes())},
            data={"beam_size": "3"},
        ).json()["caption"]
        assert "dog" in expected.split()
        with sync_playwright() as playwright:
            browser, page = upload(playwright, url, photo, expected)
            # The photo itself, drawn, not its placeholder (the README shows this screenshot).
            page.wait_for_function(
                "() => [...document.images].some(i => i.complete && i.naturalWidth > 100)",
                timeout=30_000,
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-real-photo.png"), full_page=True)
            browser.close()
