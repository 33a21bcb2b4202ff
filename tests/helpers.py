"""Factories shared by the tests."""

from __future__ import annotations

import io
import itertools
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from captioner.decoding import Candidate


class MarkovStep:
    """A toy step decoder: log-probabilities depend on the previous token and the image.

    ``table[image, prev]`` is a row of log-probabilities over the vocabulary; the
    state carries the image index through the search, like a real model's state.
    """

    def __init__(self, vocab_size: int = 6, images: int = 3, seed: int = 0, end_id: int = 2):
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(images, vocab_size, vocab_size)) * 2.0
        logits[..., 0] = -1e9  # never <pad>
        logits[..., 1] = -1e9  # never <start>
        self.table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        self.end_id = end_id
        self.calls = 0

    def initial_state(self, features: np.ndarray) -> list[np.ndarray]:
        return [features[:, 0].astype(np.int64)]

    def step(self, features, tokens, state):
        self.calls += 1
        image = state[0]
        return self.table[image, tokens].astype(np.float32), [image], None

    def brute_force(self, image: int, max_length: int, penalty: float) -> tuple[list[int], float]:
        """The best finished caption by exhaustive search (words then <end>)."""
        words = [w for w in range(self.table.shape[1]) if w not in (0, 1, self.end_id)]
        best: tuple[list[int], float] = ([], -np.inf)
        for length in range(max_length + 1):
            for seq in itertools.product(words, repeat=length):
                prev, total = 1, 0.0
                for w in (*seq, self.end_id):
                    total += float(self.table[image, prev, w].astype(np.float32))
                    prev = w
                score = total / (max(length + 1, 1) ** penalty)
                if score > best[1]:
                    best = (list(seq), score)
        return best


def top(candidates: list[list[Candidate]]) -> list[list[int]]:
    return [c[0].tokens for c in candidates]


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLICKR8K_TEXT = SHARED_DATA / "flickr8k_text"
FLICKR8K_PHOTOS = SHARED_DATA / "flickr8k_images"
MOBILENET_WEIGHTS = SHARED_DATA / "encoders" / "mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
MOBILENET_HEAD = SHARED_DATA / "encoders" / "mobilenet_v2_1.0_224_imagenet_head1001.npz"
IMAGENET_LABELS = SHARED_DATA / "encoders" / "imagenet_labels.txt"


def write_stand_in_images(folder: Path, names, size: int = 8, seed: int = 0) -> Path:
    """Small JPEGs standing in for real photos, one colour per name (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), colour).save(buffer, "JPEG")
        (folder / name).write_bytes(buffer.getvalue())
    return folder


def coco_scores(references, hypotheses, tokenize=True):
    """The numbers by calling pycocoevalcap directly, as coco-caption's COCOEvalCap does."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from captioner.text import normalize

    ids = list(references)
    if tokenize:
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
        res = tokenizer.tokenize({i: [{"caption": hypotheses[i]}] for i in ids})
    else:
        gts = {i: [" ".join(normalize(c)) for c in references[i]] for i in ids}
        res = {i: [" ".join(normalize(hypotheses[i]))] for i in ids}
    corpus, per_image = {}, {}
    bleu, bleus = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"BLEU-{n + 1}"], per_image[f"BLEU-{n + 1}"] = bleu[n], bleus[n]
    if tokenize:
        corpus["METEOR"], per_image["METEOR"] = Meteor().compute_score(gts, res)
    corpus["ROUGE-L"], per_image["ROUGE-L"] = Rouge().compute_score(gts, res)
    corpus["CIDEr"], per_image["CIDEr"] = Cider().compute_score(gts, res)
    return corpus, {k: dict(zip(ids, v, strict=True)) for k, v in per_image.items()}


REAL_PHOTOS = SHARED_DATA / "real_photos"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, httpx.TransportError):  # not listening yet
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class ThreadServer:
    """A real uvicorn server on loopback, in a thread of the test process.

    Tests reach into the app they built (a gated model, an in-memory span
    exporter) while clients talk real HTTP to it.
    """

    def __init__(self, app, port: int | None = None):
        import threading

        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, what="uvicorn to start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class ProcessServer:
    """``captioner serve`` in a subprocess, as a user starts it; settings from the environment."""

    # Every process started, for the end-of-session check that none was left running.
    started: ClassVar[list[subprocess.Popen]] = []

    def __init__(self, package: Path, log_path: Path, **settings):
        import os

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "CAPTIONER_PROVIDERS": '["CUDAExecutionProvider", "CPUExecutionProvider"]',
            **{f"CAPTIONER_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.args = ["--model", str(package), "--port", str(self.port)]
        self.process = None

    def start(self) -> ProcessServer:
        import sys

        # A second start would leave the first process running, unseen (``with`` starts).
        assert self.process is None, f"the server on {self.url} is already started"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from cli.main import main; main()", "serve", *self.args],
            env=self.env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        ProcessServer.started.append(self.process)
        wait_until(self._live, 60, what=f"the server on {self.url} to answer")
        return self

    def _live(self) -> bool:
        import httpx

        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the server exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        wait_until(
            lambda: httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200,
            timeout,
            what="readiness",
        )

    def metric(self, name: str, **labels: str) -> float:
        """One metric's value from the server's ``/metrics``."""
        import httpx

        return metric_value(httpx.get(f"{self.url}/metrics").text, name, **labels)

    def caption(self, image: bytes, **options: str):
        """``POST /v1/captions`` with one image as a multipart file."""
        import httpx

        return httpx.post(
            f"{self.url}/v1/captions", files={"image": ("a", image)}, data=options, timeout=30
        )

    def wait_not_ready(self, reason: str) -> str:
        """Until readiness answers 503 with ``reason`` in its message; returns the message."""
        import httpx

        def refused() -> str | None:
            answer = httpx.get(f"{self.url}/v2/health/ready")
            message = answer.json()["error"]["message"] if answer.status_code == 503 else ""
            return message if reason in message else None

        return wait_until(refused, what=f"a not-ready answer saying {reason!r}")

    def wait_in_flight(self, images: int) -> None:
        """Until exactly ``images`` images are admitted and unanswered."""
        wait_until(
            lambda: self.metric("captioner_queue_depth") == images,
            what=f"{images} images in flight",
        )

    def logs(self) -> list[dict]:
        import json

        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, timeout: float = 30.0) -> int:
        import signal

        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.log.close()
        return code

    def __enter__(self) -> ProcessServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGTERM first: a SIGKILLed uvicorn supervisor leaves its workers listening
            # (seen after test_metrics_add_up_across_workers in a clean-clone run).
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self.log.closed:
            self.log.close()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples in exposition ``text`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class ArchiveServer:
    """A real HTTP server on loopback that serves files with ``Range`` support, like a mirror.

    Every request is logged (path, ``Range`` header, status, body bytes sent). Faults a
    test can turn on: ``rate`` (bytes/s, to catch a download halfway), ``drop_after``
    (close the connection after that many body bytes), ``status`` (answer every request
    with it), ``ranges=False`` (ignore ``Range``, as some servers do).
    """

    def __init__(self, files: dict[str, bytes]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files = files
        self.log: list[dict] = []
        self.rate: float | None = None
        self.drop_after: int | None = None
        self.status: int | None = None
        self.ranges = True
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                entry = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
                try:
                    owner._answer(self, entry)
                except (BrokenPipeError, ConnectionResetError):
                    entry["broken"] = True
                finally:
                    owner.log.append(entry)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, handler, entry: dict) -> None:
        import re
        import time

        body = self.files.get(handler.path.lstrip("/"))
        if self.status is not None or body is None:
            entry["status"] = self.status or 404
            handler.send_error(entry["status"])
            return
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", entry["range"] or "")
        if wanted and self.ranges:
            start = int(wanted.group(1))
            if start >= len(body):
                entry["status"] = 416
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(body)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            entry["status"] = 206
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            entry["status"] = 200
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(body) - start))
        handler.send_header("Accept-Ranges", "bytes" if self.ranges else "none")
        handler.end_headers()
        chunk = 32 * 1024
        for offset in range(start, len(body), chunk):
            piece = body[offset : offset + chunk]
            if self.drop_after is not None and entry["sent"] + len(piece) > self.drop_after:
                piece = piece[: self.drop_after - entry["sent"]]
                handler.wfile.write(piece)
                entry["sent"] += len(piece)
                handler.close_connection = True
                entry["dropped"] = True
                return
            handler.wfile.write(piece)
            handler.wfile.flush()
            entry["sent"] += len(piece)
            if self.rate:
                time.sleep(len(piece) / self.rate)

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def offline_env(**extra: str) -> dict[str, str]:
    """The environment with every proxy variable on a closed loopback port, loopback exempt.

    A subprocess started with it (httpx, urllib, requests all read these) can reach
    loopback and nothing else: a download from the internet fails at once.
    """
    import os

    dead = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"no_proxy"}}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = dead
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return {**env, **extra}


class LoopbackOnly:
    """Refuses, and records, every connection and name lookup of this process that would
    leave loopback: the suite downloads nothing and talks to no outside host.

    Installed for the whole session by ``tests/conftest.py``; subprocesses that could
    download run with :func:`offline_env`. ``allowed`` names hosts that are part of the
    test set-up itself (the host of an external ``MONGODB_URI``).
    """

    def __init__(self, allowed: tuple[str, ...] = ()):
        import socket

        self.allowed = {"localhost", "", None, socket.gethostname(), *allowed}
        self.attempts: list[str] = []
        self._originals = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def _loopback(self, host) -> bool:
        import ipaddress

        if host in self.allowed:
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _check_address(self, sock, address) -> None:
        import socket

        if sock.family in (socket.AF_INET, socket.AF_INET6) and not self._loopback(address[0]):
            self.attempts.append(f"connect {address[0]}:{address[1]}")
            raise OSError(f"the test suite stays on loopback: connect to {address} refused")

    def install(self) -> LoopbackOnly:
        import socket

        connect, connect_ex, getaddrinfo = self._originals
        guard = self

        def guarded_connect(sock, address):
            guard._check_address(sock, address)
            return connect(sock, address)

        def guarded_connect_ex(sock, address):
            guard._check_address(sock, address)
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else host
            if not guard._loopback(name):
                try:  # an IP literal is checked when it connects
                    import ipaddress

                    ipaddress.ip_address(str(name))
                except ValueError:
                    guard.attempts.append(f"resolve {name}")
                    raise socket.gaierror(
                        socket.EAI_NONAME, f"the test suite stays on loopback: {name} not resolved"
                    ) from None
            return getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = guarded_getaddrinfo
        return self

    def uninstall(self) -> None:
        import socket

        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = self._originals
