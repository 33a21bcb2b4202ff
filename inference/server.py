"""The entry point: logging, settings and uvicorn, one process or several workers.

uvicorn does the life cycle: on SIGTERM it stops accepting connections, lets
in-flight requests finish (up to ``drain_seconds``), then runs the app's
shutdown, which drains the scheduler.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from fastapi import FastAPI

from inference.settings import ServeSettings
from telemetry.logs import configure_logging

log = logging.getLogger(__name__)


def app_from_env() -> FastAPI:
    """Factory for worker processes: settings from the ``CAPTIONER_*`` environment."""
    from inference.app import create_app

    settings = ServeSettings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)


def run(settings: ServeSettings) -> None:
    """Serve until SIGTERM or SIGINT."""
    import uvicorn

    configure_logging(settings.log_format, settings.log_level)
    # The stable HTTP semantic conventions (http.response.status_code, ...) unless
    # the operator chose otherwise; the instrumentation reads this once per process.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,  # the app logs each request itself, with its trace id
        "timeout_graceful_shutdown": int(settings.drain_seconds),
        "server_header": False,
    }
    if settings.workers == 1:
        from inference.app import create_app

        uvicorn.Server(uvicorn.Config(create_app(settings), **common)).run()
        return
    # Several workers: each writes its metric values to files in one directory,
    # and /metrics in any worker sums them (prometheus_client's multiprocess mode).
    metrics_dir = tempfile.mkdtemp(prefix="captioner-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(settings.to_env())
    try:
        uvicorn.run(
            "inference.server:app_from_env", factory=True, workers=settings.workers, **common
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
