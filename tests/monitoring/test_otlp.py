"""The OpenTelemetry Collector configuration, and the service's OTLP export it receives.

The collector binary (otelcol-contrib) is not installable from the package registries
this project may use, so it does not run here: its configuration is checked for
consistency, and the other side of the wire is real: a ``captioner serve`` process
exports its spans over OTLP/HTTP (protobuf) to a receiver on loopback that stands in
for the collector's ``otlp`` receiver and decodes them with the OTLP protobuf schema.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import REAL_PHOTOS, REPO, ProcessServer, free_port, wait_until

CONFIG = REPO / "monitoring" / "otel-collector" / "config.yaml"


def test_the_collector_pipeline_uses_only_components_it_defines():
    config = yaml.safe_load(CONFIG.read_text())
    service = config["service"]
    for kind in ("receivers", "processors", "exporters"):
        defined = set(config[kind])
        for name, pipeline in service["pipelines"].items():
            assert set(pipeline.get(kind, [])) <= defined, (name, kind)
    assert set(service["extensions"]) <= set(config["extensions"])
    traces = service["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    # Memory limiter first, batch last: the collector's documented order.
    assert traces["processors"][0] == "memory_limiter" and traces["processors"][-1] == "batch"
    assert "googlecloud" in traces["exporters"]
    assert any(e.startswith("otlp") for e in traces["exporters"])


class _Receiver(BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            _Receiver.requests.append(request)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.server
def test_the_service_exports_its_request_and_stage_spans_over_otlp_http(served_package, tmp_path):
    receiver = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    server = ProcessServer(served_package, tmp_path / "service.log")
    server.env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        with server:
            server.wait_ready()
            answer = httpx.post(
                f"{server.url}/v1/captions",
                files={"image": ("a.jpg", (REAL_PHOTOS / "img2.jpg").read_bytes())},
                headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
                timeout=30,
            )
            assert answer.status_code == 200

            def exported() -> dict[str, str] | None:
                names, services = {}, set()
                for request in _Receiver.requests:
                    for resource_spans in request.resource_spans:
                        for attribute in resource_spans.resource.attributes:
                            if attribute.key == "service.name":
                                services.add(attribute.value.string_value)
                        for scope in resource_spans.scope_spans:
                            for span in scope.spans:
                                if span.trace_id.hex() == trace_id:
                                    names[span.name] = span.parent_span_id.hex()
                stages = {"decode_image", "preprocess", "queue", "encoder", "decoder"}
                if "POST /v1/captions" in names and stages <= set(names):
                    return {"service": ",".join(sorted(services)), **names}
                return None

            spans = wait_until(exported, 30, what="the request's spans at the OTLP receiver")
    finally:
        receiver.shutdown()
    assert spans["POST /v1/captions"] == "00f067aa0ba902b7"  # the caller's span is the parent
    assert "captioner" in spans["service"]
