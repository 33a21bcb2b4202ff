"""Per-request telemetry: in-flight gauge, request count and duration, trace id, access log.

Every request passes through here, routed or not, so a 404 is counted and logged as a
200 is; an unhandled exception becomes a 500 in the one error shape.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: that one runs
the rest of the app in a task group of its own and streams the response through a
memory channel, which cost about a millisecond of the event loop per request here
(py-spy, docs/inference.md "Where a request's time goes").
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.handlers import error_response
from inference.metrics import ServiceMetrics
from telemetry.tracing import current_ids

log = logging.getLogger("inference.access")

# Probes and scrapes come every few seconds: counted, not logged.
UNLOGGED = ("/metrics", "/v2/health/live", "/v2/health/ready")


class TelemetryMiddleware:
    """Records each request in ``metrics`` and the access log; ``request.state.started``
    is when it arrived (the captions response reports its total time from it)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started  # what request.state reads
        status = 0

        async def send_with_trace_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ids = current_ids()
                if ids:
                    MutableHeaders(scope=message).append("X-Trace-Id", ids[0])
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_trace_id)
        except Exception:  # our bug, not the client's: a 500 in the one error shape
            logging.getLogger(__name__).exception("unhandled error")
            if status:  # the response had begun: nothing sound can follow it
                raise
            response = error_response(500, "internal", "internal error; see the service log")
            await response(scope, receive, send_with_trace_id)
        finally:
            metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        method = scope["method"]
        metrics.requests.labels(template, method, str(status)).inc()
        metrics.request_duration.labels(template).observe(elapsed)
        if template not in UNLOGGED:
            log.info(
                "%s %s %d",
                method,
                template,
                status,
                extra={"status": status, "duration_seconds": round(elapsed, 6)},
            )
