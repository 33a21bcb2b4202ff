"""Life cycle of the service: readiness, load failures, GPU requirement, workers, drain, traces."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inference.app import create_app
from inference.metrics import ServiceMetrics
from inference.model import ServedModel
from inference.settings import ServeSettings
from telemetry.logs import JsonFormatter
from tests.helpers import REAL_PHOTOS, ProcessServer, ThreadServer, metric_value, wait_until

pytestmark = pytest.mark.server

PHOTO = (REAL_PHOTOS / "img1.jpg").read_bytes()


class GatedModel(ServedModel):
    """Loads only when the test opens the gate: the time before ready, made observable."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def load(self) -> None:
        self.gate.wait(60)
        super().load()


def test_live_at_once_ready_only_after_load_and_warm_up(served_package):
    settings = ServeSettings(model_dir=served_package)
    metrics = ServiceMetrics()
    model = GatedModel(settings, metrics)
    with ThreadServer(create_app(settings, model=model, metrics=metrics)) as server:
        assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
        before = httpx.get(f"{server.url}/v2/health/ready")
        assert before.status_code == 503
        assert before.json()["error"]["message"] == "the model is loading"
        early = httpx.post(f"{server.url}/v1/captions", files={"image": ("a", PHOTO)})
        assert early.status_code == 503 and early.json()["error"]["code"] == "not_ready"
        model.gate.set()
        wait_until(
            lambda: httpx.get(f"{server.url}/v2/health/ready").status_code == 200,
            what="readiness",
        )
        assert model.runtime is not None and model.scheduler is not None  # warmed up first
        answer = httpx.post(f"{server.url}/v1/captions", files={"image": ("a", PHOTO)}, timeout=30)
        assert answer.status_code == 200


@pytest.mark.parametrize("damage", ["missing", "flipped_byte"])
def test_a_bad_package_is_live_not_ready_with_the_reason(served_package, tmp_path, damage):
    package = tmp_path / "package"
    if damage == "flipped_byte":
        shutil.copytree(served_package, package)
        data = bytearray((package / "decoder.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (package / "decoder.onnx").write_bytes(bytes(data))
    with ProcessServer(package, tmp_path / "log") as server:
        reason = server.wait_not_ready("failed to load")
        expected = "no model package at" if damage == "missing" else "decoder.onnx"
        assert expected in reason
        assert any(reason in e["message"] for e in server.logs() if e["level"] == "error")
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_require_gpu_fails_readiness_on_a_cpu_machine(served_package, tmp_path):
    with ProcessServer(served_package, tmp_path / "log", require_gpu="true") as server:
        assert "CPUExecutionProvider" in server.wait_not_ready("require_gpu")
        metrics = httpx.get(f"{server.url}/metrics").text
        assert metric_value(metrics, "captioner_model_info", provider="CPUExecutionProvider") == 1
        assert metric_value(metrics, "captioner_model_ready") == 0
        assert any("CPUExecutionProvider" in e["message"] for e in server.logs())


def test_sigterm_finishes_every_request_in_flight(served_package, tmp_path):
    # Admitted images wait 2 s for a batch, so all are in flight when SIGTERM comes.
    server = ProcessServer(served_package, tmp_path / "log", max_queue_delay_ms=2000)
    with server:
        server.wait_ready()
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(server.caption, PHOTO) for _ in range(6)]
            server.wait_in_flight(6)
            code = server.stop()
            answers = [f.result() for f in futures]
        assert [a.status_code for a in answers] == [200] * 6
        assert len({a.json()["request_id"] for a in answers}) == 6
        # uvicorn re-raises the signal once it has shut down cleanly, so the exit
        # status says "ended by SIGTERM" rather than 0; the log shows the clean path.
        assert code in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/v2/health/live", timeout=2)
        messages = [e["message"] for e in server.logs()]
        assert "Application shutdown complete." in messages


def test_metrics_add_up_across_workers(served_package, tmp_path):
    with ProcessServer(served_package, tmp_path / "log", workers=2) as server:
        wait_until(
            lambda: (
                len({e["process"] for e in server.logs() if e["message"].startswith("ready after")})
                == 2
            ),
            what="both workers to be ready",
        )
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: server.caption(PHOTO), range(12)))
        assert all(a.status_code == 200 for a in answers)
        # Every scrape, whichever worker answers it, counts all 12.
        for _ in range(4):
            text = httpx.get(f"{server.url}/metrics").text
            assert metric_value(text, "captioner_requests_total", route="/v1/captions") == 12
            assert metric_value(text, "captioner_queue_capacity") == 2 * 64
        served_by = {e["process"] for e in server.logs() if e["logger"] == "inference.access"}
        assert len(served_by) == 2


def test_one_trace_spans_the_request_and_its_stages(served_package):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = ServeSettings(model_dir=served_package)
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(JsonFormatter().format(record))

    handler = Capture()
    access = logging.getLogger("inference.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        with ThreadServer(create_app(settings, tracer_provider=provider)) as server:
            wait_until(lambda: httpx.get(f"{server.url}/v2/health/ready").status_code == 200)
            # The caller's trace context (as the UI sends it) is continued, not replaced.
            parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            answer = httpx.post(
                f"{server.url}/v1/captions",
                files={"image": ("a", PHOTO)},
                headers={"traceparent": parent},
                timeout=30,
            )
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)
    trace_id = answer.headers["X-Trace-Id"]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    spans = [
        s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id
    ]
    by_name = {s.name: s for s in spans}
    server_span = by_name["POST /v1/captions"]
    for stage in ("decode_image", "preprocess", "queue", "encoder", "decoder"):
        assert by_name[stage].parent.span_id == server_span.context.span_id, stage
    assert by_name["encoder"].attributes["batch.size"] == 1
    assert by_name["decoder"].attributes["decoder.steps"] >= 2
    # Old or stable HTTP semantic conventions, as OTEL_SEMCONV_STABILITY_OPT_IN says.
    attributes = server_span.attributes
    assert attributes.get("http.response.status_code", attributes.get("http.status_code")) == 200
    assert attributes["http.route"] == "/v1/captions"
    logged = [json.loads(r) for r in records]
    assert any(e.get("trace_id") == trace_id and "/v1/captions" in e["message"] for e in logged)


def test_the_variant_comes_from_settings(variants_package):
    settings = ServeSettings(model_dir=variants_package, variant="int8")
    metrics = ServiceMetrics()
    with ThreadServer(create_app(settings, metrics=metrics)) as server:
        wait_until(lambda: httpx.get(f"{server.url}/v2/health/ready").status_code == 200)
        answer = httpx.post(f"{server.url}/v1/captions", files={"image": ("a", PHOTO)}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model"]["variant"] == "int8"
        text = httpx.get(f"{server.url}/metrics").text
        assert metric_value(text, "captioner_model_info", variant="int8") == 1
