"""Feedback's Prometheus metrics, the UI's ``/metrics``: every one, in one place.

Names follow docs/architecture.md, "Telemetry".
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, multiprocess, start_http_server


class FeedbackMetrics:
    """Feedback counters and the outbox depth, on a registry of their own.

    A registry per object (rather than the global one) lets tests and several UI
    processes in one interpreter count independently.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.feedback = Counter(
            "captioner_feedback_total",
            "Feedback submitted on the page, by model version, rating, whether it carries a"
            " correction, and outcome (stored, queued, or rate_limited and not kept).",
            ["model_version", "rating", "corrected", "outcome"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "captioner_feedback_outbox_depth",
            "Feedback waiting in the local outbox for the database.",
            multiprocess_mode="mostrecent",
            registry=self.registry,
        )
        self.delivered = Counter(
            "captioner_feedback_delivered_total",
            "Feedback delivered from the outbox to the database.",
            registry=self.registry,
        )
        self.store_errors = Counter(
            "captioner_feedback_store_errors_total",
            "Attempts to store feedback that failed because the database was unreachable.",
            registry=self.registry,
        )


def serve_metrics(metrics: FeedbackMetrics, port: int, host: str = "127.0.0.1") -> object:
    """Serve ``/metrics`` for Prometheus on a daemon thread; returns what prometheus_client does.

    Args:
        metrics: whose registry to expose.
        port: the port to listen on.
        host: the address to bind; loopback unless a scraper elsewhere needs it.
    """
    registry = metrics.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # `captioner ui`: the page's process counts, the launcher serves the sum.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return start_http_server(port, addr=host, registry=registry)
