"""LitServe: Lightning AI's FastAPI-based server, batched by LitServe itself.

A ``LitAPI`` whose ``decode_request`` turns one JSON body into the JPEG bytes and the
beam size, ``batch`` gathers what LitServe's batching loop collected, ``predict`` makes
the one :class:`PeerModel` call on it, and ``unbatch``/``encode_response`` give each
request its caption back. LitServe runs it in one inference worker process (spawned,
so the API object is pickled by its import path: this module hands the class out
through a module ``__getattr__`` so that the client half never imports litserve); a
uvicorn process in front speaks HTTP and passes requests over queues.

Clients send LitServe's idiomatic JSON, ``{"image": <base64 JPEG>, "beam_size": n}``, to
``/predict``. ``/health`` answers 200 only once every worker has finished ``setup()``
(LitServe marks a worker ready right after it), so it is the readiness path. Set
``CAPTIONER_PEER_DEBUG=1`` to log the size of each batch on stderr.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import sys
from pathlib import Path

NAME = "LitServe 0.2.19"
TUNING = (
    "LitAPI(max_batch_size=16, batch_timeout=0.01 s), the docs' batching idiom; "
    "accelerator=cpu, workers_per_device=1 (one model replica for 2 cores), one uvicorn "
    "API server (LitServe's default of one per worker); access log off (log_level=warning)"
)
READY_PATH = "/health"
REQUIREMENTS = "litserve.txt"
ENV_DEBUG = "CAPTIONER_PEER_DEBUG"


def command(python: str, port: int, workdir: Path) -> list[str]:
    return [python, "-c", f"from benchmarks.peers.litserve_peer import serve; serve({port})"]


def request(image: bytes, beam: int) -> tuple[str, dict[str, str], bytes]:
    body = {"image": base64.b64encode(image).decode("ascii"), "beam_size": beam}
    return "/predict", {"content-type": "application/json"}, json.dumps(body).encode()


def caption(body: bytes) -> str:
    return json.loads(body)["caption"]


@functools.cache
def _api_class() -> type:
    import litserve as ls

    from benchmarks.peers.common import PeerModel

    debug = os.environ.get(ENV_DEBUG, "") not in ("", "0")

    class CaptionAPI(ls.LitAPI):
        """PeerModel behind LitServe: one call per batch LitServe's loop collected."""

        def setup(self, device: str) -> None:
            self.model = PeerModel()

        def decode_request(self, request: dict) -> tuple[bytes, int]:
            return base64.b64decode(request["image"]), int(request.get("beam_size", 1))

        def batch(self, inputs: list[tuple[bytes, int]]) -> tuple[list[bytes], list[int]]:
            images, beams = zip(*inputs, strict=True)
            return list(images), list(beams)

        def predict(self, x: tuple[list[bytes], list[int]]) -> list[str]:
            images, beams = x
            if debug:
                print(f"litserve batch size {len(images)}", file=sys.stderr, flush=True)
            return self.model.captions(images, beams)

        def unbatch(self, output: list[str]) -> list[str]:
            return output

        def encode_response(self, output: str) -> dict[str, str]:
            return {"caption": output}

    CaptionAPI.__qualname__ = "CaptionAPI"  # pickled by name into the spawned worker
    return CaptionAPI


def __getattr__(name: str) -> type:
    if name == "CaptionAPI":
        return _api_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(port: int) -> None:
    """Serve the package with LitServe on loopback ``port`` until stopped."""
    import litserve as ls

    from benchmarks.peers.common import MAX_BATCH, MAX_WAIT_MS

    api = _api_class()(max_batch_size=MAX_BATCH, batch_timeout=MAX_WAIT_MS / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)
