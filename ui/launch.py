"""``captioner ui``: the embedded database when needed, then Streamlit on the page.

Streamlit runs the page's code only when someone opens it, so what must run from
the start lives in this launcher process: the local database, the outbox flusher
(queued feedback is delivered after a restart even before anyone visits), and the
UI's ``/metrics``, which sums this process's and the page process's counters
through prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ui.localdb import LocalMongo
from ui.settings import UISettings

log = logging.getLogger(__name__)

APP = Path(__file__).with_name("app.py")


def streamlit_command(settings: UISettings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        settings.ui_host,
        "--server.port",
        str(settings.ui_port),
        "--server.headless",
        "true",
        "--server.maxUploadSize",
        str(settings.max_upload_mb),
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def run(settings: UISettings) -> int:
    """Run the page until interrupted; returns Streamlit's exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="captioner-ui-metrics-")
    # Before prometheus_client is imported: it picks its value store at import.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _run(settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(settings: UISettings) -> int:
    from ui.metrics import UIMetrics, serve_metrics
    from ui.outbox import Flusher, Outbox
    from ui.store import FeedbackStore

    env = dict(os.environ)
    local = None
    uri = settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else ""
    if not uri:
        # The embedded default: real pymongo over the wire to nx-27017 on a local file.
        local = LocalMongo(settings.local_db_dir, settings.local_db_port)
        env["MONGODB_URI"] = local.start()
        print(f"feedback database: nx-27017 at {env['MONGODB_URI']} ({settings.local_db_dir})")
    env["CAPTIONER_SERVICE_URL"] = settings.service_url
    env["CAPTIONER_UI_PORT"] = str(settings.ui_port)
    env["CAPTIONER_UI_METRICS_PORT"] = "0"  # served here, summed over both processes
    metrics = UIMetrics()
    if settings.ui_metrics_port:
        serve_metrics(metrics, settings.ui_metrics_port)
    store = FeedbackStore(
        env["MONGODB_URI"] if local else uri,
        settings.mongodb_database,
        settings.mongodb_timeout_ms,
    )
    outbox = Outbox(settings.outbox_path, metrics=metrics)
    flusher = Flusher(outbox, store, interval=settings.flush_seconds, metrics=metrics)
    flusher.start()
    print(f"captioner UI on http://{settings.ui_host}:{settings.ui_port}", flush=True)
    print(f"  inference service: {settings.service_url}", flush=True)
    if settings.ui_metrics_port:
        print(f"  UI metrics: http://127.0.0.1:{settings.ui_metrics_port}/metrics", flush=True)
    process = subprocess.Popen(streamlit_command(settings), env=env)
    # SIGTERM (Kubernetes, a test) must take the page and the database down with us:
    # turned into SystemExit, it runs the clean-up below instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        flusher.stop(10)
        outbox.close()
        store.close()
        if local is not None:
            local.stop()
