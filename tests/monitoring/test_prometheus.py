"""A real Prometheus (Debian's package) scrapes a running service and the UI's metrics
under a short load; then every dashboard query, every recording rule and every alert
runs through its HTTP API (docs/architecture.md, telemetry)."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from feedback.metrics import FeedbackMetrics, serve_metrics
from feedback.outbox import Outbox
from feedback.record import make_feedback
from feedback.store import FeedbackStore
from feedback.submit import submit
from monitoring import contract
from monitoring.build_rules import alerts
from monitoring.render import render
from tests.helpers import REAL_PHOTOS, REPO, ProcessServer, free_port, wait_until

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="the server comes with Debian's prometheus (scripts/setup.sh)"
    ),
]
LOAD_SECONDS = 24
CLIENTS = 10
ARTIFACT = REPO / "test-artifacts" / "monitoring" / "overview-dashboard.png"


@dataclass
class Scraped:
    url: str
    start: float
    end: float
    statuses: Counter[int] = field(default_factory=Counter)
    feedback: Counter[str] = field(default_factory=Counter)

    def query(self, expr: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expr, "time": self.end}, timeout=30
        )
        body: dict[str, Any] = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        return body

    def series(self, expr: str) -> list[dict[str, Any]]:
        return list(self.query(expr)["data"]["result"])

    def api(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        answer.raise_for_status()
        return answer.json()["data"]


def _load(
    service: str, begin: float, stop: float, statuses: Counter[int], captions: list[dict]
) -> None:
    """One client: real photos back to back from ``begin`` to ``stop``; now and then a
    broken upload."""
    time.sleep(max(0.0, begin - time.time()))
    photos = [p.read_bytes() for p in sorted(REAL_PHOTOS.glob("*.jpg"))]
    with httpx.Client(timeout=30) as client:
        for n in itertools.count():
            if time.time() >= stop:
                return
            image = b"not an image at all" if n % 9 == 8 else photos[n % len(photos)]
            answer = client.post(f"{service}/v1/captions", files={"image": ("p.jpg", image)})
            statuses[answer.status_code] += 1
            if answer.status_code == 200:
                captions.append({**answer.json(), "sha": hashlib.sha256(image).hexdigest()})
            elif answer.status_code == 429:
                time.sleep(0.05)


def _rate(captions: list[dict], stop: float, uri: str, metrics: FeedbackMetrics, tmp: Path, tally):
    """Feedback on the captions as they come, as the page gives it: mostly stored, some
    queued while a database is unreachable and delivered from the outbox later."""
    database = f"monitoring_{uuid.uuid4().hex[:8]}"
    store = FeedbackStore(uri, database)
    store.ensure_indexes()
    unreachable = FeedbackStore(f"mongodb://127.0.0.1:{free_port()}", database, timeout_ms=200)
    outbox = Outbox(tmp / "outbox.sqlite3", metrics=metrics)
    done = 0
    try:
        while time.time() < stop or done < len(captions) and done < 40:
            if done >= len(captions) or done >= 40:
                time.sleep(0.1)
                continue
            body = captions[done]
            feedback = make_feedback(
                request_id=body["request_id"],
                model_name=body["model"]["name"],
                model_version=body["model"]["version"],
                caption=body["caption"],
                rating="down" if done % 3 == 0 else "up",
                correction="a shape on a plain background" if done % 4 == 0 else None,
                image_sha256=body["sha"],
                ui_version="monitoring-test",
            )
            tally[submit(feedback, unreachable if done % 5 == 4 else store, outbox, metrics)] += 1
            if done % 10 == 9:
                tally["delivered"] += outbox.deliver(store)
            done += 1
            time.sleep(0.25)
        tally["delivered"] += outbox.deliver(store)
    finally:
        outbox.close()
        store.close()
        unreachable.close()


@pytest.fixture(scope="module")
def scraped(served_package, mongo_uri, tmp_path_factory) -> Iterator[Scraped]:
    tmp = tmp_path_factory.mktemp("prometheus")
    service = ProcessServer(served_package, tmp / "service.log", max_queue=4)
    ui_metrics = FeedbackMetrics()
    ui_port, prometheus_port = free_port(), free_port()
    http_server, _ = serve_metrics(ui_metrics, ui_port)  # type: ignore[misc]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted(contract.RULES.glob("*.yaml"))],
        "scrape_configs": [
            {
                "job_name": "captioner-inference",
                "static_configs": [{"targets": [f"127.0.0.1:{service.port}"]}],
            },
            {"job_name": "captioner-ui", "static_configs": [{"targets": [f"127.0.0.1:{ui_port}"]}]},
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        with service:
            service.wait_ready()

            def ready() -> bool:
                assert prometheus.poll() is None, (tmp / "prometheus.log").read_text()
                try:
                    return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, 60, what="Prometheus to be ready")
            time.sleep(2)  # a few scrapes of the idle service first
            result = Scraped(url, start=time.time(), end=0.0)
            captions: list[dict] = []
            stop = time.time() + LOAD_SECONDS
            with ThreadPoolExecutor(CLIENTS + 1) as pool:
                rater = pool.submit(
                    _rate, captions, stop, mongo_uri, ui_metrics, tmp, result.feedback
                )
                # Clients join one a second: the load ramps up, then the queue overflows.
                clients = [
                    pool.submit(
                        _load, service.url, result.start + i, stop, result.statuses, captions
                    )
                    for i in range(CLIENTS)
                ]
                for future in [*clients, rater]:
                    future.result()
            time.sleep(3)  # the last scrapes and rule evaluations
            result.end = time.time()
            yield result
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        log.close()
        http_server.shutdown()


def test_the_load_produced_captions_rejections_errors_and_feedback(scraped):
    assert scraped.statuses[200] > 0
    assert scraped.statuses[429] > 0, scraped.statuses  # max_queue 4 under 10 clients
    assert set(scraped.statuses) <= {200, 415, 422, 429}, scraped.statuses
    assert scraped.feedback["stored"] > 0 and scraped.feedback["queued"] > 0, scraped.feedback
    assert scraped.feedback["delivered"] == scraped.feedback["queued"]


def test_prometheus_scraped_both_targets_and_counts_what_the_clients_saw(scraped):
    targets = scraped.api("targets")["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {
        "captioner-inference": "up",
        "captioner-ui": "up",
    }
    [answered] = scraped.series(
        'sum(captioner_requests_total{job="captioner-inference", route="/v1/captions"})'
    )
    assert float(answered["value"][1]) == sum(scraped.statuses.values())


def test_every_dashboard_query_parses_and_returns_data(scraped):
    empty, gpu_only = [], []
    for query in contract.dashboard_queries():
        expr = contract.substitute(query.expr)
        if expr.startswith("label_values("):
            metric, label = expr.removeprefix("label_values(").rstrip(")").split(", ")
            values = scraped.api(f"label/{label}/values", **{"match[]": metric})
            if not values:
                empty.append(query.where)
            continue
        result = scraped.series(expr)
        if contract.gpu_only(expr):
            gpu_only.append(query.where)
            assert result == [], f"{query.where}: DCGM data on a machine without a GPU?"
        elif not result:
            empty.append(query.where)
    assert empty == [], f"queries without data: {empty}"
    # The documented exception: the GPU dashboard's DCGM panels (see docs/observability.md).
    assert gpu_only and all(w.startswith("captioner-gpu / ") for w in gpu_only)


def test_every_recording_rule_evaluates_on_the_server_and_returns_data(scraped):
    groups = scraped.api("rules")["groups"]
    rules = {r.get("name"): r for g in groups for r in g["rules"]}
    assert len(rules) == len(contract.rule_queries())
    for name, rule in rules.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
    missing = [name for name in sorted(contract.recorded_names()) if not scraped.series(name)]
    assert missing == [], f"recorded series without data: {missing}"
    for query in contract.rule_queries():
        scraped.query(query.expr)  # every expression parses and evaluates


def test_every_alert_parses_and_every_signal_it_compares_returns_data(scraped):
    without = [
        f"{alert.name}: {signal}"
        for alert in alerts()
        for signal in alert.signals
        if not scraped.series(signal)
    ]
    assert without == [], f"alert signals without data: {without}"


def test_the_cpu_fallback_alert_is_pending_or_firing_on_this_cpu_machine(scraped):
    # The test service asks for CUDA first, as the default does; here only the CPU is there.
    alerts_now = scraped.api("alerts")["alerts"]
    states = {a["labels"]["alertname"]: a["state"] for a in alerts_now}
    assert states.get("CaptionerGPUFallbackToCPU") in {"pending", "firing"}, states


def test_the_overview_dashboard_renders_from_the_scraped_data(scraped):
    # Scraped every second, so a 5 s rate window shows the ramp as it happened.
    titles = render(scraped.url, ARTIFACT, scraped.start - 5, scraped.end, rate_interval="5s")
    assert "Requests by status" in titles and "Latency end to end" in titles
    assert ARTIFACT.stat().st_size > 20_000
