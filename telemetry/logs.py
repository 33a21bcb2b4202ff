"""Log lines as JSON objects carrying the trace id of the request they belong to."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from telemetry.tracing import current_ids

# Attributes every LogRecord has; anything else came in through ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        ids = current_ids()
        if ids:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TraceTextFormatter(logging.Formatter):
    """Plain text for a terminal, with the trace id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = current_ids()
        return f"{line} trace_id={ids[0]}" if ids else line


def configure_logging(fmt: str, level: str) -> None:
    """Route the root logger (uvicorn's included) through one handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else TraceTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
