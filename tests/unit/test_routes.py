"""The service's routes without a model: readiness, model names, body parsing and the
error table, each swapped in through ``app.dependency_overrides`` (no server, no package)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from inference import errors
from inference.app import create_app
from inference.deps import get_model, get_settings
from inference.handlers import ERRORS, STATUS
from inference.settings import ServeSettings

SERVED = "served-model"


@dataclass
class StubModel:
    """What the dependencies read of a ``ServedModel``: readiness, its reason, the package."""

    ready: bool = False
    reason: str = "the model is loading"
    package: object | None = None
    name: str = SERVED
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def service(tmp_path):
    """The app with its model swapped for a stub the test sets up."""
    app = create_app(ServeSettings(model_dir=tmp_path / "missing"))
    stub = StubModel()
    app.dependency_overrides[get_model] = lambda: stub
    # Not entered as a context manager: no lifespan, so nothing loads behind the stub.
    return TestClient(app, raise_server_exceptions=False), stub, app


def error(answer) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_every_route_that_needs_the_model_answers_503_with_the_reason(service):
    client, stub, _ = service
    stub.reason = "the model failed to load: no package"
    for answer in (
        client.get("/v2/health/ready"),
        client.get(f"/v2/models/{SERVED}"),
        client.get(f"/v2/models/{SERVED}/ready"),
        client.get(f"/v2/models/{SERVED}/versions/1/ready"),
        client.post(f"/v2/models/{SERVED}/infer", content=b"{}"),
        client.post("/v1/captions", content=b"\x89PNG", headers={"content-type": "image/png"}),
    ):
        assert error(answer) == (503, "not_ready"), answer.request.url
        assert answer.json()["error"]["message"] == stub.reason
    assert client.get("/v2/health/live").json() == {"live": True}


def test_ready_once_the_model_is(service):
    client, stub, _ = service
    stub.ready, stub.package = True, object()
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{SERVED}/ready").json() == {"ready": True}


def test_another_models_name_is_a_404_once_the_package_is_open(service):
    client, stub, _ = service
    stub.package = object()  # open, not ready (e.g. require_gpu unmet)
    assert error(client.get("/v2/models/other")) == (404, "model_not_found")
    # The name is checked before readiness for the ready route, after it for infer.
    assert error(client.get("/v2/models/other/ready")) == (404, "model_not_found")
    assert error(client.post("/v2/models/other/infer", content=b"{}")) == (503, "not_ready")
    stub.ready = True
    assert error(client.post("/v2/models/other/infer", content=b"{}")) == (404, "model_not_found")


def test_before_the_package_opens_any_name_waits_for_readiness(service):
    client, _, _ = service
    assert error(client.get("/v2/models/other")) == (503, "not_ready")
    assert error(client.get("/v2/models/other/ready")) == (503, "not_ready")


def test_a_malformed_caption_request_is_the_clients_error_even_while_loading(service):
    client, _, _ = service
    json = {"content-type": "application/json"}
    assert error(client.post("/v1/captions", content=b"{", headers=json)) == (400, "bad_request")
    text = {"content-type": "text/plain"}
    assert error(client.post("/v1/captions", content=b"x", headers=text)) == (415, "not_an_image")
    assert error(client.post("/v1/captions", files={"other": ("a", b"x")})) == (400, "bad_request")


def test_the_body_limit_comes_from_the_settings_dependency(service, tmp_path):
    client, _, app = service
    small = ServeSettings(model_dir=tmp_path / "missing", max_body_bytes=1024, max_image_bytes=1024)
    app.dependency_overrides[get_settings] = lambda: small
    answer = client.post("/v1/captions", content=b"x" * 2048, headers={"content-type": "image/png"})
    assert error(answer) == (413, "too_large")
    assert answer.headers["connection"] == "close"  # the rest of the body is not read


def test_every_domain_error_has_one_documented_status():
    domain = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServiceError)
    } - {errors.ServiceError}
    assert domain == set(STATUS)
    assert set(STATUS.values()) <= set(ERRORS)


def test_an_unhandled_error_is_a_500_in_the_one_shape_counted_under_its_route(tmp_path):
    """The telemetry middleware (plain ASGI) answers a bug with the error body, counts the
    request with its route template and status, and logs it; the app keeps serving."""
    from prometheus_client import generate_latest

    from inference.deps import get_tracer
    from inference.metrics import ServiceMetrics
    from tests.helpers import metric_value

    metrics = ServiceMetrics()
    app = create_app(ServeSettings(model_dir=tmp_path / "missing"), metrics=metrics)

    def broken():
        raise RuntimeError("a bug")

    app.dependency_overrides[get_model] = lambda: StubModel(ready=True)
    app.dependency_overrides[get_tracer] = broken
    client = TestClient(app, raise_server_exceptions=False)
    answer = client.post("/v1/captions", content=b"\x89PNG", headers={"content-type": "image/png"})
    assert error(answer) == (500, "internal")
    assert "a bug" not in answer.text  # the service log has it, the client does not
    text = generate_latest(metrics.registry).decode()
    count = metric_value(text, "captioner_requests_total", route="/v1/captions", status="500")
    assert count == 1
    del app.dependency_overrides[get_tracer]
    assert client.get("/v2/health/live").status_code == 200
    text = generate_latest(metrics.registry).decode()
    assert metric_value(text, "captioner_requests_total", route="/v2/health/live", status="200")
