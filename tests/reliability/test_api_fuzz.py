"""The HTTP API fuzzed from its own OpenAPI document with schemathesis.

Requests that follow the document (positive) and requests that break it (negative)
go to ``captioner serve`` on loopback: never a 5xx, every status, content type,
header and body as the document declares them, every schema-breaking request
refused with a 4xx, and the service ready afterwards (docs/architecture.md, the HTTP API).
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import ProcessServer, metric_value

pytestmark = pytest.mark.server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# "Schema-breaking requests are refused" is checked where the request arrives as it was
# generated: JSON bodies and requests without one. On a multipart wire some negations
# vanish (a field made an empty array sends no part at all, so a valid request arrives:
# seen as max_length=[] "accepted"), which would fail the check for the tool's sake.
REJECTION_MEDIA_TYPES = {None, "application/json"}
# Per generation mode, over every operation, from the hypothesis profile (conftest.py):
# in CI a fixed 300; HYPOTHESIS_PROFILE=fuzz searches 2,000 per mode with a random seed.
MAX_EXAMPLES = 2_000


@pytest.fixture(scope="module")
def server(served_package, tmp_path_factory):
    log = tmp_path_factory.mktemp("api-fuzz") / "server.log"
    with ProcessServer(served_package, log) as running:
        running.wait_ready()
        yield running


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzzed_requests_get_what_the_openapi_document_promises(server, served_package, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    model = json.loads((served_package / "manifest.json").read_text())["model"]
    # Random model names only reach the 404; the served name reaches the handlers.
    named = {"name": model["name"], "version": model["version"]}
    strategy = schema.as_strategy(mode) | schema.as_strategy(mode, path_parameters=named)
    seen: Counter[tuple[str, str, int]] = Counter()

    @given(case=strategy)
    @settings(
        max_examples=min(settings.default.max_examples, MAX_EXAMPLES),
        deadline=None,
        derandomize=settings.default.derandomize,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:
        response = case.call(base_url=server.url, timeout=30)
        seen[(case.method, case.path, response.status_code)] += 1
        checks = CHECKS + (
            [negative_data_rejection] if case.media_type in REJECTION_MEDIA_TYPES else []
        )
        case.validate_response(response, checks=checks)  # a failure names the check and a curl

    call()
    print(f"\n{mode}: " + ", ".join(f"{m} {p} {s}: {n}" for (m, p, s), n in sorted(seen.items())))
    assert max(status for _, _, status in seen) < 500
    if mode == GenerationMode.POSITIVE:
        # The document's examples caption; the served name reaches V2's handlers too.
        assert seen[("POST", "/v1/captions", 200)] > 0
        assert any(path.endswith("/infer") and status != 404 for _, path, status in seen)
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    assert metric_value(text, "captioner_requests_total", status="500") == 0
