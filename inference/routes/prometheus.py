"""``GET /metrics``: the Prometheus scrape; names from ``inference/metrics.py``.

The rules for them are in docs/architecture.md, "Telemetry".
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from inference.deps import MetricsDep
from inference.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition (docs/architecture.md, telemetry)."""
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
