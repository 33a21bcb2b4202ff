"""The images built and run for real, with Podman: the service container captions a
real photo, the page's container reaches it and stores feedback, both as compose.yaml
and the chart run them (non-root, read-only root, no capabilities); SIGTERM drains;
SIGKILL under load costs only the gap. Nothing is pulled: the base is made from
Debian's packages (docker/local-base.sh). Numbers go to test-artifacts/containers.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.delivery.containers import (
    BUILD_ARGS,
    SESSION,
    Container,
    build,
    compose,
    ensure_local_base,
    leftovers,
    network,
    podman,
    podman_path,
    run_flags,
    running,
    service_flags,
)
from tests.delivery.dockerfiles import DOCKER
from tests.helpers import REAL_PHOTOS, REPO, free_port, metric_value, wait_until
from tests.ui.browser import open_page, require_chromium, send_feedback, upload

pytestmark = [pytest.mark.containers, pytest.mark.server]

TAG = "test"
INFERENCE = f"captioner-inference-cpu:{TAG}"
UI = f"captioner-ui:{TAG}"
ARTIFACTS = REPO / "test-artifacts" / "containers.json"
# The chart's startupProbe allows far more; a restarted container is ready well inside it.
READY_WITHIN = 30.0
PHOTO = REAL_PHOTOS / "img3.jpg"  # two dogs running on a beach
PHOTOS = [p.read_bytes() for p in sorted(REAL_PHOTOS.glob("*.jpg"))]
FORBIDDEN = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "tf2onnx", "torch", "jax"}
# Not in compose.yaml's environment: the test has no MongoDB container (nothing can be
# pulled here), so the page uses its embedded database, as `captioner ui` does alone.
NO_MONGO = ("MONGODB_URI",)
UNAVAILABLE = "The captioning service cannot be reached. Please try again later."
NOT_READY = "The captioning model is not ready yet. Please try again shortly."
DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version "
    "for d in m.distributions()}))"
)

numbers: dict[str, object] = {}


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    if podman_path() is None:
        if os.environ.get("CI"):
            pytest.fail("podman is missing: scripts/setup.sh installs it with the delivery extra")
        pytest.skip("podman is not installed (scripts/setup.sh installs it with apt)")
    yield
    left = leftovers()
    for name in left:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
    ARTIFACTS.parent.mkdir(exist_ok=True)
    ARTIFACTS.write_text(json.dumps(numbers, indent=2) + "\n")
    assert not left, f"containers left behind: {left}"


@pytest.fixture(scope="module")
def images(engine, tmp_path_factory) -> dict[str, dict[str, float]]:
    started = time.monotonic()
    base = ensure_local_base()
    numbers["base_image"] = base
    numbers["base_seconds"] = round(time.monotonic() - started, 1)
    log = tmp_path_factory.mktemp("build") / "build.log"
    built = build(["inference-cpu", "ui"], base, TAG, log)
    numbers["images"] = built
    return built


@dataclass
class Stack:
    network: str
    inference: Container
    ui: Container
    start_to_ready: float
    spec: dict = field(default_factory=dict)

    def caption(self, photo: bytes, **data: str) -> httpx.Response:
        return httpx.post(
            f"{self.inference.url(8000)}/v1/captions",
            files={"image": ("p.jpg", photo)},
            data=data,
            timeout=httpx.Timeout(30, connect=2),
        )


def spec_with(package) -> dict:
    # The variable compose.yaml requires for Grafana, which this test does not run.
    env = {**os.environ, "CAPTIONER_PACKAGE": str(package), "GRAFANA_ADMIN_PASSWORD": "unused"}
    return compose(env)


def volume_flags(service: dict, suffix: str) -> list[str]:
    """compose's volumes: named ones get this run's suffix (and are removed with it)."""
    flags = []
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if "/" not in source:
            source = f"{source}-{suffix}"
        flags += ["--volume", f"{source}:{rest}"]
    return flags


def wait_ready(container: Container, timeout: float = 120) -> float:
    started = time.monotonic()

    def ready() -> bool:
        try:
            return httpx.get(f"{container.url(8000)}/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout, interval=0.1, what=f"{container.name} to be ready")
    return time.monotonic() - started


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def stack(images, real_package) -> Iterator[Stack]:
    spec = spec_with(real_package)
    suffix = uuid.uuid4().hex[:6]
    inference_service, ui_service = spec["services"]["inference"], spec["services"]["ui"]
    with network() as net:
        inference_flags = [
            *service_flags(inference_service),
            *volume_flags(inference_service, suffix),
            "--network",
            net,
            "--network-alias",
            "inference",
        ]
        ui_flags = [
            *service_flags(ui_service, drop_env=NO_MONGO),
            *volume_flags(ui_service, suffix),
            "--network",
            net,
            "--network-alias",
            "ui",
        ]
        started = time.monotonic()
        with running(
            f"inference-{suffix}", INFERENCE, inference_flags, {8000: free_port()}
        ) as inference:
            wait_ready(inference)
            start_to_ready = time.monotonic() - started
            numbers["inference_start_to_ready_seconds"] = round(start_to_ready, 2)
            ui_ports = {8501: free_port(), 9102: free_port()}
            with running(f"ui-{suffix}", UI, ui_flags, ui_ports) as ui:
                wait_until(lambda: healthy(ui.url(8501)), 90, what="the page to answer")
                yield Stack(net, inference, ui, start_to_ready, spec)
        podman("volume", "rm", "--force", f"ui-data-{suffix}", check=False)


def test_the_images_build_from_the_repository_on_a_local_base(images):
    assert set(images) == {"inference-cpu", "ui"}
    for name, built in images.items():
        assert built["size_mb"] > 100, (name, built)
    # The serving images stay small: no TensorFlow, no compilers (a regression shows here).
    assert images["inference-cpu"]["size_mb"] < 700, images
    assert images["ui"]["size_mb"] < 1000, images


def test_the_service_container_captions_a_real_photo_as_the_chart_runs_it(stack):
    inference = stack.inference
    config = inference.inspect()
    assert config["Config"]["User"] == "10001:10001"
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    assert inference.exec("id", "-u").stdout.strip() == "10001"
    refused = inference.exec("python", "-c", "open('/opt/venv/written', 'w')")
    assert "Read-only file system" in refused.stderr
    assert inference.exec("python", "-c", "open('/tmp/written', 'w')").returncode == 0
    have = json.loads(inference.exec("python", "-c", DISTRIBUTIONS, check=True).stdout)
    assert not FORBIDDEN & set(have), FORBIDDEN & set(have)
    lock = (DOCKER / "inference" / "requirements-cpu.txt").read_text().lower().replace("_", "-")
    for name, version in have.items():
        if name not in ("pip", "setuptools", "captioner"):
            assert f"\n{name}=={version} " in lock, f"{name} {version} is not the lock's"
    answer = stack.caption(PHOTO.read_bytes())
    assert answer.status_code == 200, answer.text
    assert "dog" in answer.json()["caption"].split()
    assert answer.json()["model"]["execution_provider"] == "CPUExecutionProvider"
    ready = httpx.get(f"{inference.url(8000)}/v2/health/ready")
    assert ready.status_code == 200
    metrics = httpx.get(f"{inference.url(8000)}/metrics").text
    assert metric_value(metrics, "captioner_model_ready") == 1
    assert metric_value(metrics, "captioner_requests_total", status="200") >= 1
    assert stack.start_to_ready < READY_WITHIN


def local_feedback(ui: Container) -> list[dict]:
    """The records in the page container's embedded database (its URI from its log)."""
    [uri] = re.findall(r"feedback database: nx-27017 at (\S+)", ui.logs())
    script = (
        "import json, pymongo; "
        f"c = pymongo.MongoClient({uri!r}, serverSelectionTimeoutMS=5000); "
        "print(json.dumps(list(c.captioner.feedback.find({}, {'_id': 0})), default=str))"
    )
    return json.loads(ui.exec("python", "-c", script, check=True).stdout)


def test_the_page_container_reaches_the_service_and_stores_feedback(stack):
    from playwright.sync_api import sync_playwright

    require_chromium()
    ui = stack.ui
    assert ui.inspect()["HostConfig"]["ReadonlyRootfs"] is True
    assert ui.exec("id", "-u").stdout.strip() == "10001"
    have = json.loads(ui.exec("python", "-c", DISTRIBUTIONS, check=True).stdout)
    assert not (FORBIDDEN | {"onnxruntime"}) & set(have)
    expected = stack.caption(PHOTO.read_bytes(), beam_size="3").json()["caption"]
    correction = "two dogs run along the beach by the sea"
    with sync_playwright() as playwright:
        browser, page = upload(playwright, ui.url(8501), PHOTO, expected)
        send_feedback(page, correction)
        browser.close()
    [record] = [r for r in local_feedback(ui) if r.get("correction") == correction]
    assert record["rating"] == "down"
    assert record["caption"] == expected
    metrics = httpx.get(f"{ui.url(9102)}/metrics").text
    assert metric_value(metrics, "captioner_feedback_total", rating="down", corrected="true") >= 1


class Load:
    """Clients captioning in a loop; each outcome with its start and end times."""

    def __init__(self, stack: Stack, clients: int = 4):
        self.stack, self.stop = stack, threading.Event()
        self.outcomes: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, args=(n,)) for n in range(clients)]

    def loop(self, index: int) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                outcome = str(self.stack.caption(PHOTOS[index % len(PHOTOS)]).status_code)
            except httpx.TransportError as exc:
                outcome = type(exc).__name__
                time.sleep(0.05)
            with self.lock:
                self.outcomes.append((outcome, started, time.monotonic()))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def assert_errors_only_in(load: Load, gaps: list[tuple[float, float]]) -> None:
    failed = [o for o in load.outcomes if o[0] != "200"]
    outside = [o for o in failed if not any(a <= o[2] and o[1] <= b for a, b in gaps)]
    assert not outside, f"errors outside the gaps {gaps}: {outside[:5]}"
    for a, b in gaps:
        assert any(o[0] == "200" and o[2] < a for o in load.outcomes), "no answer before a gap"
        assert any(o[0] == "200" and o[1] > b for o in load.outcomes), "no answer after a gap"


def test_sigkill_under_load_costs_only_the_gap_and_the_page_says_so(stack):
    from playwright.sync_api import expect, sync_playwright

    require_chromium()
    inference, ui = stack.inference, stack.ui
    ui_started = ui.state()["StartedAt"]
    ui_failures: list[float] = []
    watching = threading.Event()

    def watch_ui() -> None:
        while not watching.is_set():
            if not healthy(ui.url(8501)):
                ui_failures.append(time.monotonic())
            time.sleep(0.25)

    watcher = threading.Thread(target=watch_ui)
    watcher.start()
    expected = stack.caption(PHOTO.read_bytes(), beam_size="3").json()["caption"]
    try:
        with Load(stack) as load, sync_playwright() as playwright:
            time.sleep(2)
            # 1. The engine's SIGKILL (no restart: a stopped container stays stopped).
            killed = time.monotonic()
            podman("kill", "--signal", "KILL", inference.name)
            wait_until(lambda: inference.state()["Status"] == "exited", 30, what="the kill")
            assert inference.state()["ExitCode"] == 137
            browser, page = open_page(playwright, ui.url(8501))
            page.locator("input[type=file]").set_input_files(str(PHOTO))
            shown = page.get_by_text(UNAVAILABLE).or_(page.get_by_text(NOT_READY))
            expect(shown).to_be_visible(timeout=60_000)
            browser.close()
            restarted = time.monotonic()
            podman("start", inference.name)
            wait_ready(inference)
            back_at = time.monotonic()
            back = back_at - restarted
            numbers["restart_to_ready_seconds"] = round(back, 2)
            # The page recovers: a new visit captions again.
            browser, page = upload(playwright, ui.url(8501), PHOTO, expected)
            browser.close()
            ready = time.monotonic()
            # 2. SIGKILL from outside the engine (as the OOM killer sends it): compose's
            # restart policy brings the container back by itself.
            restarts = inference.inspect().get("RestartCount", 0)
            time.sleep(2)
            pid = inference.state()["Pid"]
            crashed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_until(
                lambda: inference.inspect().get("RestartCount", 0) > restarts,
                30,
                what="the restart policy to restart the container",
            )
            wait_ready(inference)
            again = time.monotonic() - crashed
            numbers["sigkill_to_ready_by_restart_policy_seconds"] = round(again, 2)
            recovered = time.monotonic()
            time.sleep(3)
    finally:
        watching.set()
        watcher.join(10)
    numbers["load_outcomes"] = {
        outcome: sum(1 for o in load.outcomes if o[0] == outcome)
        for outcome in sorted({o[0] for o in load.outcomes})
    }
    assert back < READY_WITHIN and again < READY_WITHIN, (back, again)
    # Errors only between each kill and the container being ready again.
    assert_errors_only_in(load, [(killed, back_at), (crashed, recovered)])
    assert killed < ready < crashed
    # Nothing else broke: the page answered its health check throughout, never restarted.
    assert not ui_failures, ui_failures
    assert ui.state()["StartedAt"] == ui_started
    assert ui.inspect().get("RestartCount", 0) == 0


def test_sigterm_drains_in_flight_requests_within_the_grace_period(images, real_package):
    spec = spec_with(real_package)
    service = spec["services"]["inference"]
    grace = int(service_flags(service)[service_flags(service).index("--stop-timeout") + 1])
    capacity = 4
    # Held in the queue (0.5 s for a batch) so the signal surely meets admitted work.
    held = ["--env", f"CAPTIONER_MAX_QUEUE={capacity}", "--env", "CAPTIONER_MAX_QUEUE_DELAY_MS=500"]
    flags = [*service_flags(service), *volume_flags(service, uuid.uuid4().hex[:6]), *held]
    name = f"drain-{uuid.uuid4().hex[:6]}"
    with running(name, INFERENCE, flags, {8000: free_port()}) as container:
        wait_ready(container)
        box = Stack("", container, container, 0.0)
        with Load(box, clients=10 * capacity) as load:
            wait_until(
                lambda: (
                    metric_value(
                        httpx.get(f"{container.url(8000)}/metrics").text, "captioner_queue_depth"
                    )
                    == capacity
                ),
                30,
                what="a full queue",
            )
            signalled = time.monotonic()
            stopped = podman("stop", name, timeout=grace + 30)
            elapsed = time.monotonic() - signalled
            load.stop.set()
        logs = container.logs()
        state = container.state()
    numbers["sigterm_drain_seconds"] = round(elapsed, 2)
    assert stopped.returncode == 0
    # Drained before the grace period ran out: exited on its own, not SIGKILLed (137).
    assert elapsed < grace, elapsed
    assert state["ExitCode"] in (0, 128 + signal.SIGTERM), state
    answered = [o for o in load.outcomes if o[0].isdigit()]
    assert {status for status, _, _ in answered} <= {"200", "429"}
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    served = sum(1 for status, _, _ in answered if status == "200")
    logged = sum(
        1 for e in entries if e.get("logger") == "inference.access" and e.get("status") == 200
    )
    assert served == logged > 0
    assert len([o for o in answered if o[0] == "200" and o[1] < signalled < o[2]]) >= capacity
    unanswered = {o[0] for o in load.outcomes if not o[0].isdigit()}
    assert unanswered <= {"ConnectError", "ReadError", "RemoteProtocolError"}, unanswered
    assert "Application shutdown complete." in [e.get("message") for e in entries]
    assert not [e for e in entries if e.get("level") in ("error", "critical")]


def test_the_ui_image_starts_as_a_user_runs_it(images):
    """``podman run IMAGE``, nothing mounted (the /data PermissionError of the first build),
    and the same read-only: the image's own volume holds the outbox and database."""
    for extra in ([], ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp"]):
        name = f"plain-ui-{uuid.uuid4().hex[:6]}"
        with running(name, UI, extra, {8501: free_port()}) as ui:
            wait_until(lambda c=ui: healthy(c.url(8501)), 90, what="the page to answer")
            logs = ui.logs()
            assert "PermissionError" not in logs and "Traceback" not in logs, logs[-2000:]
            assert "feedback database: nx-27017" in logs
            assert ui.exec("test", "-w", "/data").returncode == 0


def test_podman_kube_play_runs_the_cpu_profiles_inference_deployment(images, variants_package):
    """The chart's CPU-profile Deployment as rendered, in ``podman kube play``: the model
    from a claim (a Podman volume) instead of the profile's Cloud Storage copy, whose
    gcloud image cannot be pulled here; the port moved to a free one. The package is the
    one with an int8 variant, which the profile serves."""
    from tests.delivery.chart import merge, one, profile_values, render

    claim = f"captioner-test-models-{uuid.uuid4().hex[:6]}"
    port = free_port()
    values = merge(
        profile_values("cpu"),
        {
            "inference": {
                "port": port,
                "image": {"repository": "localhost/captioner-inference-cpu", "tag": TAG},
                "modelPackage": {"source": "pvc", "pvc": {"claimName": claim}},
            }
        },
    )
    deployment = one(render(values), "Deployment", "inference")
    manifest = REPO / "test-artifacts" / "kube-play-inference.yaml"
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(yaml.safe_dump(deployment))
    podman("volume", "create", "--label", f"captioner.test={SESSION}", claim)
    mountpoint = Path(
        podman("volume", "inspect", "--format", "{{.Mountpoint}}", claim).stdout.strip()
    )
    shutil.copytree(variants_package, mountpoint / "package")
    # kube play takes no --ulimit: this host's rlimits go in a containers.conf of its own.
    conf = manifest.with_suffix(".containers.conf")
    limits = ", ".join(f'"{u}"' for u in re.findall(r"--ulimit (\S+)", BUILD_ARGS))
    conf.write_text(f"[containers]\ndefault_ulimits = [{limits}]\n")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    started = time.monotonic()
    try:
        played = podman("kube", "play", str(manifest), env=env, timeout=180)
        [pod] = re.findall(r"^Pod:\n(\w+)", played.stdout, re.M)
        infra = json.loads(podman("pod", "inspect", pod).stdout)
        infra = infra[0] if isinstance(infra, list) else infra
        # Podman publishes the pod's containerPort on the host (its InfraConfig shows it).
        url = f"http://127.0.0.1:{port}"
        [name] = [c["Name"] for c in infra["Containers"] if c["Name"].endswith("-inference")]

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(ready, 120, interval=0.2, what="the kube-played pod to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{Container(name).logs()[-3000:]}") from None
        numbers["kube_play_start_to_ready_seconds"] = round(time.monotonic() - started, 2)
        answer = httpx.post(
            f"{url}/v1/captions", files={"image": ("p.jpg", PHOTO.read_bytes())}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["variant"] == "int8"  # the CPU profile's choice
        config = json.loads(podman("inspect", name).stdout)[0]
        assert config["HostConfig"]["ReadonlyRootfs"] is True
        assert config["Config"]["User"].split(":")[0] == "10001"
        workers = {e.get("process") for e in map(json.loads, _json_lines(Container(name).logs()))}
        assert len(workers - {None}) >= 2, workers  # the profile's CAPTIONER_WORKERS=2
    finally:
        podman("kube", "down", str(manifest), env=env, check=False, timeout=180)
        podman("volume", "rm", "--force", claim, check=False)


def _json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_the_trainer_image_builds_and_runs_the_command_line(engine, tmp_path):
    """Slow: TensorFlow with its CUDA wheels is a 7.5 GB image and about 15 minutes to
    build here (docs/deploy.md); ``pytest -m slow`` runs it."""
    built = build(["trainer"], ensure_local_base(), TAG, tmp_path / "build.log")
    numbers["trainer"] = built["trainer-gpu"]
    image = f"captioner-trainer-gpu:{TAG}"
    flags = ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp"]
    helped = podman("run", "--rm", *run_flags(), *flags, image, "train", "--help")
    assert "Usage: captioner train" in helped.stdout
    imports = "import tensorflow, tf2onnx, pycocoevalcap; print(tensorflow.__version__)"
    checked = podman("run", "--rm", *run_flags(), "--entrypoint", "python", image, "-c", imports)
    assert checked.stdout.strip()
    java = podman("run", "--rm", *run_flags(), "--entrypoint", "java", image, "-version")
    assert "openjdk" in java.stderr
