"""The page's service client against the real service: one trace, plain-word errors."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import REAL_PHOTOS, free_port
from ui.client import PLAIN_WORDS, UNREACHABLE, CaptionClient, CaptionError

pytestmark = pytest.mark.server


def test_the_page_and_the_service_share_one_trace(running_service):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = CaptionClient(running_service.url, tracer=provider.get_tracer("test"))
    result = client.caption((REAL_PHOTOS / "img6.jpg").read_bytes(), "img6.jpg", beam_size=2)
    [span] = exporter.get_finished_spans()
    assert span.name == "ui.caption"
    # The service continued the page's trace: its trace id is the page span's.
    assert result.trace_id == format(span.context.trace_id, "032x")
    assert len(result.body["candidates"]) == 2


def test_errors_come_back_in_plain_words(running_service):
    client = CaptionClient(running_service.url, retries=0)
    with pytest.raises(CaptionError) as refused:
        client.caption(b"GIF89a but not really", "x.gif")
    assert refused.value.status == 415 and refused.value.message == PLAIN_WORDS[415]
    assert "supported format" in refused.value.detail


def test_an_unreachable_service_is_said_plainly_after_retries():
    client = CaptionClient(f"http://127.0.0.1:{free_port()}", timeout=2, retries=1)
    with pytest.raises(CaptionError) as failed:
        client.caption(b"...", "x.jpg")
    assert failed.value.message == UNREACHABLE and failed.value.status is None


def test_without_a_beam_size_the_service_uses_the_model_s_choice(running_service):
    import httpx

    client = CaptionClient(running_service.url)
    result = client.caption((REAL_PHOTOS / "img6.jpg").read_bytes(), "img6.jpg")
    ready = httpx.get(f"{running_service.url}/v2/models/{result.body['model']['name']}").json()
    chosen = ready["parameters"]["default_beam_size"]
    assert len(result.body["candidates"]) == chosen
