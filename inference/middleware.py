"""Per-request telemetry: in-flight gauge, request count and duration, trace id, access log.

Every request passes through here, routed or not, so a 404 is counted and logged as a
200 is; an unhandled exception becomes a 500 in the one error shape.
"""

from __future__ import annotations

import logging
import time

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from inference.handlers import error_response
from inference.metrics import ServiceMetrics
from telemetry.tracing import current_ids

log = logging.getLogger("inference.access")

# Probes and scrapes come every few seconds: counted, not logged.
UNLOGGED = ("/metrics", "/v2/health/live", "/v2/health/ready")


class TelemetryMiddleware(BaseHTTPMiddleware):
    """Records each request in ``metrics`` and the access log; ``request.state.started``
    is when it arrived (the captions response reports its total time from it)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        metrics = self.metrics
        started = time.perf_counter()
        request.state.started = started
        metrics.in_flight.inc()
        try:
            response = await call_next(request)
        except Exception:  # our bug, not the client's: a 500 in the one error shape
            logging.getLogger(__name__).exception("unhandled error")
            response = error_response(500, "internal", "internal error; see the service log")
        finally:
            metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(template, request.method, str(response.status_code)).inc()
        metrics.request_duration.labels(template).observe(elapsed)
        ids = current_ids()
        if ids:
            response.headers["X-Trace-Id"] = ids[0]
        if template not in UNLOGGED:
            log.info(
                "%s %s %d",
                request.method,
                template,
                response.status_code,
                extra={"status": response.status_code, "duration_seconds": round(elapsed, 6)},
            )
        return response
