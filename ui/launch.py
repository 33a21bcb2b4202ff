"""``captioner ui``: the embedded database when needed, then Streamlit on the page."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
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
    env = dict(os.environ)
    local = None
    if not settings.mongodb_uri:
        # The embedded default: real pymongo over the wire to nx-27017 on a local file.
        local = LocalMongo(settings.local_db_dir, settings.local_db_port)
        env["MONGODB_URI"] = local.start()
        print(f"feedback database: nx-27017 at {env['MONGODB_URI']} ({settings.local_db_dir})")
    env["CAPTIONER_SERVICE_URL"] = settings.service_url
    env["CAPTIONER_UI_PORT"] = str(settings.ui_port)
    print(f"captioner UI on http://{settings.ui_host}:{settings.ui_port}", flush=True)
    print(f"  inference service: {settings.service_url}", flush=True)
    if settings.ui_metrics_port:
        print(f"  UI metrics: http://127.0.0.1:{settings.ui_metrics_port}/metrics", flush=True)
    process = subprocess.Popen(streamlit_command(settings), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        if local is not None:
            local.stop()
