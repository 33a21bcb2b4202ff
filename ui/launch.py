"""``captioner ui``: the embedded database when needed, then Streamlit on the page.

Streamlit runs the page's code only when someone opens it, so what must run from
the start lives in this launcher process: the local database, the outbox flusher
(queued feedback is delivered after a restart even before anyone visits), and the
UI's ``/metrics``, which sums this process's and the page process's counters
through prometheus_client's multiprocess mode. Both processes build the feedback
component with :func:`feedback.runtime.build`; the launcher starts its flusher
first, so the page's finds the outbox taken and the outbox has one flusher.
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
    from feedback.metrics import serve_metrics
    from feedback.runtime import build

    env = dict(os.environ)
    # Without MONGODB_URI, the embedded default: real pymongo over the wire to
    # nx-27017 on a local file, which the page then uses too.
    feedback = build(settings)
    if feedback.local is not None:
        env["MONGODB_URI"] = feedback.uri
        print(f"feedback database: nx-27017 at {feedback.uri} ({settings.local_db_dir})")
    env["CAPTIONER_SERVICE_URL"] = settings.service_url
    env["CAPTIONER_UI_PORT"] = str(settings.ui_port)
    env["CAPTIONER_UI_METRICS_PORT"] = "0"  # served here, summed over both processes
    if settings.ui_metrics_port:
        serve_metrics(feedback.metrics, settings.ui_metrics_port, host=settings.ui_host)
    # Before the page starts: the outbox's one flusher is this process's.
    feedback.start()
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
        feedback.close()
