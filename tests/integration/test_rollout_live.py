"""Canary analysis on live metrics: ``captioner rollout analyze`` against a real Prometheus.

On loopback: ``captioner serve`` for stable (two workers) and three canaries, each its
own model version; the page's feedback metrics, fed through the real submit path by
simulated users who rate a caption up when it describes the shapes scene exactly;
Debian's Prometheus scraping all of it every second; and a load split by weight, as
``HTTPRoute`` weights split it on GKE. The canaries:

- ``good``: the same model as stable under a new version;
- ``failing``: a request deadline shorter than its batching delay, so every image
  waits past its deadline and the answer is 504 (a misconfiguration, not a test hook);
- ``disliked``: captions cut at three words (``CAPTIONER_MAX_LENGTH=3``), which
  describe only the plainest scenes, so users rate most of them down.

The command runs as a subprocess and its exit status is the verdict.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from captioner.package import read_manifest
from feedback.metrics import serve_metrics
from feedback.record import make_feedback
from feedback.runtime import FeedbackRuntime, build
from feedback.settings import FeedbackSettings
from feedback.submit import submit
from tests.helpers import REPO, ProcessServer, free_port, wait_until
from training.datasets.shapes.captions import is_correct
from training.datasets.shapes.scene import Scene, make_scene, render

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="the server comes with Debian's prometheus (scripts/setup.sh)"
    ),
]

WINDOW = "1m"  # covers the whole load, which is stopped as soon as there is enough
CLIENTS = 4
LOAD_LIMIT_SECONDS = 45
WEIGHTS = {"stable": 70, "good": 10, "failing": 10, "disliked": 10}
# Small minimums, so that seconds of load decide; the rules' arithmetic is unit-tested.
THRESHOLDS = {
    "CAPTIONER_ROLLOUT_MIN_REQUESTS": "40",
    "CAPTIONER_ROLLOUT_MIN_CAPTIONS": "30",
    "CAPTIONER_ROLLOUT_MIN_FEEDBACK": "30",
    # Two cores shared by five servers, Prometheus and the clients: latency is noise here.
    "CAPTIONER_ROLLOUT_LATENCY_P99_SLACK_SECONDS": "0.5",
}
ENOUGH = 60  # requests (captions for those that caption) per canary before the load stops


def reversioned(package: Path, out: Path, version: str) -> Path:
    """PACKAGE's files under another model version, its manifest rewritten (hashes too).

    What a re-export of the same weights gives, without the conversion's seconds.
    """
    shutil.copytree(package, out)
    manifest = read_manifest(out)
    manifest.model = manifest.model.model_copy(update={"version": version})
    manifest.write(out)
    return out


def scenes(count: int = 20, seed: int = 11) -> list[tuple[Scene, bytes]]:
    """Shapes scenes and their PNGs, the kind of image the served model was trained on."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        scene = make_scene(rng)
        buffer = io.BytesIO()
        Image.fromarray(render(scene)).save(buffer, "PNG")
        out.append((scene, buffer.getvalue()))
    return out


@dataclass
class Target:
    """One version's server and what its clients saw."""

    server: ProcessServer
    version: str
    statuses: Counter[int] = field(default_factory=Counter)
    ratings: Counter[str] = field(default_factory=Counter)
    turn: Iterator[int] = field(default_factory=itertools.count)


@dataclass
class Lab:
    prometheus: str
    targets: dict[str, Target]
    feedback: FeedbackRuntime
    images: list[tuple[Scene, bytes]]
    held: tuple[int, dict[str, Any]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def version(self, name: str) -> str:
        return self.targets[name].version

    def send(self, client: httpx.Client, name: str) -> None:
        """One caption request to NAME's server and, if it captions, the user's feedback.

        Every version sees the scenes in the same order, so like models get like ratings.
        """
        target = self.targets[name]
        with self.lock:
            scene, image = self.images[next(target.turn) % len(self.images)]
        answer = client.post(f"{target.server.url}/v1/captions", files={"image": ("s.png", image)})
        with self.lock:
            target.statuses[answer.status_code] += 1
        if answer.status_code != 200:
            return
        body = answer.json()
        rating = "up" if is_correct(body["caption"], scene) else "down"
        feedback = make_feedback(
            request_id=body["request_id"],
            model_name=body["model"]["name"],
            model_version=body["model"]["version"],
            caption=body["caption"],
            rating=rating,
            image_sha256=hashlib.sha256(image).hexdigest(),
            ui_version="rollout-test",
        )
        runtime = self.feedback
        submit(feedback, runtime.store, runtime.outbox, runtime.metrics)
        with self.lock:
            target.ratings[rating] += 1

    def enough(self) -> bool:
        with self.lock:
            t = self.targets
            return (
                t["good"].statuses[200] >= ENOUGH
                and t["disliked"].statuses[200] >= ENOUGH
                and t["failing"].statuses.total() >= ENOUGH
            )

    def load(self, seed: int, stop: float) -> None:
        """One client: requests back to back, each to a version drawn by weight."""
        rng = random.Random(seed)
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop and not self.enough():
                self.send(client, rng.choices(names, weights)[0])

    def analyze(self, stable: str, canary: str, *extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cli", "rollout", "analyze"]
        args = ["--prometheus", self.prometheus, "--stable", stable, "--canary", canary]
        return subprocess.run(
            [*command, *args, "--window", WINDOW, *extra],
            cwd=REPO,
            env={**_environ(), **THRESHOLDS},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def verdict(self, canary: str) -> tuple[int, dict[str, Any]]:
        """The exit status and JSON object of analyzing CANARY against stable."""
        done = self.analyze(self.version("stable"), self.version(canary), "--json")
        assert done.returncode in (0, 3, 4), done.stdout + done.stderr
        return done.returncode, json.loads(done.stdout)


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CAPTIONER_ROLLOUT_")}


def _prometheus_config(lab_targets: dict[str, Target], ui_port: int) -> dict[str, Any]:
    pods = [f"127.0.0.1:{t.server.port}" for t in lab_targets.values()]
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "captioner-inference", "static_configs": [{"targets": pods}]},
            {"job_name": "captioner-ui", "static_configs": [{"targets": [f"127.0.0.1:{ui_port}"]}]},
        ],
    }


@pytest.fixture(scope="module")
def lab(served_package, mongo_uri, tmp_path_factory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("rollout")
    stable = read_manifest(served_package).model.version
    servers = {
        "stable": ProcessServer(served_package, tmp / "stable.log", workers=2),
        "good": ProcessServer(
            reversioned(served_package, tmp / "good", "canary-good"), tmp / "good.log"
        ),
        "failing": ProcessServer(
            reversioned(served_package, tmp / "failing", "canary-failing"),
            tmp / "failing.log",
            request_timeout_seconds=0.1,
            max_queue_delay_ms=2000,
        ),
        "disliked": ProcessServer(
            reversioned(served_package, tmp / "disliked", "canary-disliked"),
            tmp / "disliked.log",
            max_length=3,
        ),
    }
    versions = {"stable": stable, "good": "canary-good", "failing": "canary-failing",
                "disliked": "canary-disliked"}  # fmt: skip
    with ExitStack() as stack:
        for server in servers.values():
            stack.callback(lambda s=server: s.__exit__() if s.process is not None else None)
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: (s.start(), s.wait_ready()), servers.values()))
        runtime = build(
            FeedbackSettings(
                mongodb_uri=mongo_uri,
                mongodb_database=f"rollout_{uuid.uuid4().hex[:8]}",
                outbox_path=tmp / "outbox.sqlite3",
            )
        )
        stack.callback(runtime.close)
        ui_port, prometheus_port = free_port(), free_port()
        http_server, _ = serve_metrics(runtime.metrics, ui_port)  # type: ignore[misc]
        stack.callback(http_server.shutdown)
        targets = {name: Target(s, versions[name]) for name, s in servers.items()}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(_prometheus_config(targets, ui_port)))
        log = stack.enter_context((tmp / "prometheus.log").open("wb"))
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
        stack.callback(_stop, prometheus)
        url = f"http://127.0.0.1:{prometheus_port}"
        lab = Lab(url, targets, runtime, scenes())
        wait_until(lambda: _scraping(lab, prometheus, tmp), 60, what="Prometheus to scrape all")

        # A trickle first: every version's series exist before the load counts (increase()
        # has no sample before a series' first scrape), and the canary is judged too early.
        with httpx.Client(timeout=30) as client:
            for name in WEIGHTS:
                for _ in range(6):
                    lab.send(client, name)
        time.sleep(2.5)  # two scrapes
        lab.held = lab.verdict("good")

        stop = time.monotonic() + LOAD_LIMIT_SECONDS
        with ThreadPoolExecutor(CLIENTS) as pool:
            for future in [pool.submit(lab.load, seed, stop) for seed in range(CLIENTS)]:
                future.result()
        time.sleep(2.5)  # the last scrapes
        yield lab


def _scraping(lab: Lab, prometheus: subprocess.Popen[bytes], tmp: Path) -> bool:
    assert prometheus.poll() is None, (tmp / "prometheus.log").read_text()
    answer = httpx.get(f"{lab.prometheus}/api/v1/targets", timeout=2)
    targets = answer.json()["data"]["activeTargets"] if answer.status_code == 200 else []
    return len(targets) == len(lab.targets) + 1 and all(t["health"] == "up" for t in targets)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def signal(body: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in body["signals"] if s["name"] == name]
    return found


def test_a_canary_before_its_traffic_is_held(lab):
    code, body = lab.held
    assert (code, body["verdict"]) == (3, "hold"), body
    assert body["reasons"][0].startswith("too few requests to decide"), body["reasons"]


def test_a_canary_like_stable_is_promoted(lab):
    code, body = lab.verdict("good")
    assert (code, body["verdict"]) == (0, "promote"), body
    assert {s["status"] for s in body["signals"]} == {"pass"}
    # Each version's requests are its own pods' (stable: two workers, one series per pod):
    # the join on captioner_model_info attributed them, and mixed nothing in.
    seen = {"stable": body["metrics"]["stable"], "good": body["metrics"]["canary"]}
    for name, metrics in seen.items():
        sent = lab.targets[name].statuses.total()
        assert 0.6 * sent <= metrics["requests"] <= 1.2 * sent, (name, sent, metrics)
    assert (
        body["metrics"]["stable"]["feedback"] >= 30
        and body["metrics"]["canary"]["error_ratio"] == 0
    )


def test_a_canary_answering_504_is_rolled_back(lab):
    assert set(lab.targets["failing"].statuses) == {504}, lab.targets["failing"].statuses
    code, body = lab.verdict("failing")
    assert (code, body["verdict"]) == (4, "rollback"), body
    assert signal(body, "5xx ratio")["status"] == "fail"
    assert signal(body, "5xx ratio")["canary"] == pytest.approx(1.0)
    # No caption, no feedback: those signals cannot say anything, and need not.
    assert signal(body, "thumbs-up rate")["status"] == "insufficient"
    table = lab.analyze(lab.version("stable"), lab.version("failing"))
    assert table.returncode == 4 and "verdict: ROLLBACK (exit 4)" in table.stdout, table.stdout
    assert "5xx ratio" in table.stdout and "fail" in table.stdout


def test_a_canary_users_dislike_is_rolled_back(lab):
    up = {n: lab.targets[n].ratings["up"] / lab.targets[n].ratings.total() for n in WEIGHTS
          if n != "failing"}  # fmt: skip
    assert up["disliked"] < up["stable"] - 0.2 and abs(up["good"] - up["stable"]) < 0.1, up
    code, body = lab.verdict("disliked")
    assert (code, body["verdict"]) == (4, "rollback"), body
    thumbs = signal(body, "thumbs-up rate")
    assert thumbs["status"] == "fail", thumbs
    # What Prometheus counted is what the users said, per version, within a scrape or so.
    assert thumbs["canary"] == pytest.approx(up["disliked"], abs=0.05), (thumbs, up)
    assert thumbs["stable"] == pytest.approx(up["stable"], abs=0.05), (thumbs, up)
    assert any(r.startswith("thumbs-up rate of the canary is") for r in body["reasons"])
    assert signal(body, "5xx ratio")["status"] == "pass"
