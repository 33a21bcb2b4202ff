"""One trace from the page to the model: the UI's span, the service's request span, its
stage spans, and the batch the image rode in (docs/architecture.md, telemetry), seen with
in-memory exporters on each side, as a collector would receive them from two processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inference.app import create_app
from inference.settings import ServeSettings
from tests.helpers import REAL_PHOTOS, ThreadServer, wait_until
from ui.client import CaptionClient

pytestmark = pytest.mark.server
STAGES = ("decode_image", "preprocess", "queue", "encoder", "decoder")


def recorder() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def hex_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def test_one_trace_id_from_the_page_through_the_service_stages_to_the_batch(served_package):
    ui_provider, ui_spans = recorder()
    service_provider, service_spans = recorder()
    # A batch window, so two pages' images ride one encoder batch.
    settings = ServeSettings(model_dir=served_package, max_queue_delay_ms=500)
    app = create_app(settings, tracer_provider=service_provider)
    with ThreadServer(app) as server:
        wait_until(lambda: httpx.get(f"{server.url}/v2/health/ready").status_code == 200)
        client = CaptionClient(server.url, tracer=ui_provider.get_tracer("ui"))
        photos = [(REAL_PHOTOS / name).read_bytes() for name in ("img1.jpg", "img4.jpg")]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda p: client.caption(p, "photo.jpg", beam_size=2), photos))

    page_spans = ui_spans.get_finished_spans()
    assert sorted(s.name for s in page_spans) == ["ui.caption", "ui.caption"]
    batches = set()
    for page_span, result in zip(
        sorted(page_spans, key=hex_id), sorted(results, key=lambda r: r.trace_id), strict=True
    ):
        trace_id = hex_id(page_span)
        assert result.trace_id == trace_id  # the X-Trace-Id the service answered with
        spans = {s.name: s for s in service_spans.get_finished_spans() if hex_id(s) == trace_id}
        request = spans["POST /v1/captions"]
        # The service's request span is a child of the page's span: one trace, not two.
        assert request.parent is not None and page_span.context is not None
        assert request.parent.span_id == page_span.context.span_id
        for stage in STAGES:
            stage_span = spans[stage]
            assert stage_span.parent is not None
            assert stage_span.parent.span_id == request.context.span_id, stage
        encoder = spans["encoder"].attributes or {}
        batches.add((encoder["batch.id"], encoder["batch.size"]))
    # Both traces name the same encoder batch, of two images.
    assert len(batches) == 1 and next(iter(batches))[1] == 2
