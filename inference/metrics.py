"""Every Prometheus metric of the inference service (docs/architecture.md, telemetry), in one place.

Names are ``captioner_<noun>_<unit>``; latencies are histograms with explicit
buckets; labels are few and bounded (route templates, never raw paths). With
several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker
starts and ``/metrics`` aggregates every worker's values (gauges say how).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 0.8,
    1.0, 1.5, 2.5, 4.0, 6.0, 10.0, 20.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WORD_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
BYTE_BUCKETS = tuple(float(1 << p) for p in range(10, 26, 2))  # 1 KiB .. 32 MiB
PIXEL_BUCKETS = (1e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8)
LOG_PROB_BUCKETS = (-40.0, -25.0, -15.0, -10.0, -7.5, -5.0, -3.0, -2.0, -1.0, -0.5, -0.1, 0.0)
STAGES = ("decode_image", "preprocess", "encoder", "decoder")

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The service's metrics, registered on ``registry`` (a fresh one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "captioner_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "captioner_request_duration_seconds",
            "End-to-end time from request received to response ready, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "captioner_stage_duration_seconds",
            "Time per image in each stage: decode_image, preprocess, encoder, decoder.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "captioner_queue_wait_seconds",
            "Time an image waited before its encoder batch started.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "captioner_batch_size",
            "Rows per model call: images per encoder batch, hypotheses per decoder step.",
            ["stage"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "captioner_requests_in_flight",
            "HTTP requests being handled.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queue_depth = Gauge(
            "captioner_queue_depth",
            "Images admitted and not yet answered (waiting or decoding).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queue_capacity = Gauge(
            "captioner_queue_capacity",
            "The most images admitted at once (max_queue); depth / capacity is saturation.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.rejected = Counter(
            "captioner_rejected_total",
            "Images refused or dropped by the scheduler, by reason (queue_full, deadline).",
            ["reason"],
            registry=r,
        )
        self.caption_length = Histogram(
            "captioner_caption_length_words",
            "Words in the best caption.",
            buckets=WORD_BUCKETS,
            registry=r,
        )
        self.caption_log_prob = Histogram(
            "captioner_caption_log_probability",
            "Log-probability of the best caption (a drop hints at unfamiliar images).",
            buckets=LOG_PROB_BUCKETS,
            registry=r,
        )
        self.image_bytes = Histogram(
            "captioner_image_size_bytes",
            "Encoded size of received images.",
            buckets=BYTE_BUCKETS,
            registry=r,
        )
        self.image_pixels = Histogram(
            "captioner_image_pixels",
            "Width times height of decoded images.",
            buckets=PIXEL_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "captioner_model_info",
            "1 for the loaded model; labels say which, on which execution provider.",
            ["model", "version", "variant", "architecture", "provider", "requested_provider"],
            multiprocess_mode="max",
            registry=r,
        )
        self.model_ready = Gauge(
            "captioner_model_ready",
            "1 when the model is loaded and warmed up (per worker; the minimum is shown).",
            multiprocess_mode="min",
            registry=r,
        )
        self.provider_fallback = Gauge(
            "captioner_provider_fallback",
            "1 when the preferred execution provider is not the active one (e.g. CUDA to CPU).",
            multiprocess_mode="max",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or every worker's when multiprocess."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
