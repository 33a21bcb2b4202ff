"""`captioner ui` itself: what must run before anyone opens the page."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import psutil
import pymongo
import pytest

from feedback.outbox import Outbox
from tests.helpers import REPO, free_port, metric_value, wait_until

pytestmark = pytest.mark.server


def test_queued_feedback_is_delivered_and_counted_before_any_visit(mongo_uri, make, tmp_path):
    outbox_path = tmp_path / "outbox.sqlite3"
    queued = Outbox(outbox_path)
    for _ in range(2):
        queued.put(make(rating="down", correction="a queued correction"))
    queued.close()
    database = f"launcher_{uuid.uuid4().hex[:12]}"
    metrics_port = free_port()
    env = {
        **os.environ,
        "MONGODB_URI": mongo_uri,
        "CAPTIONER_MONGODB_DATABASE": database,
        "CAPTIONER_OUTBOX_PATH": str(outbox_path),
        "CAPTIONER_UI_METRICS_PORT": str(metrics_port),
        "CAPTIONER_FLUSH_SECONDS": "0.3",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "ui"]
        + ["--port", str(free_port()), "--service-url", "http://127.0.0.1:9"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    feedback = pymongo.MongoClient(mongo_uri)[database]["feedback"]
    launcher = psutil.Process(process.pid)
    try:
        wait_until(lambda: feedback.count_documents({}) == 2, 60, what="delivery")

        def delivered() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            return text if metric_value(text, "captioner_feedback_delivered_total") == 2 else None

        text = wait_until(delivered, 30, what="the delivered counter")
        assert metric_value(text, "captioner_feedback_outbox_depth") == 0
        assert Outbox(outbox_path).depth() == 0
        page = wait_until(launcher.children, 30, what="the Streamlit process")
        process.terminate()
        assert process.wait(30) != 0
        gone, alive = psutil.wait_procs(page, timeout=30)
        assert not alive  # SIGTERM took the page process down too
    finally:
        if process.poll() is None:
            process.kill()
        pymongo.MongoClient(mongo_uri).drop_database(database)
