"""BentoML: a new-style service with one worker and an adaptive-batching API.

The client half needs no BentoML. The server half is the service ``Captioner``, built
on first access by the module's ``__getattr__`` (so that importing the module imports
no BentoML) and served by ``bentoml serve benchmarks.peers.bentoml_peer:Captioner``.

A batchable API takes exactly one argument (besides ``bentoml.Context``), so each item
of the batch is a Pydantic model with its own beam size, the composite input BentoML's
docs advise for several parameters (without their wrapper service for single requests,
which would add a process and a hop per request on two cores). A client POSTs
``{"requests": [{"image": <base64 JPEG>, "beam_size": N}]}`` as JSON to ``/caption`` and
reads a list with one caption. ``/readyz`` answers 200 once the worker has loaded the
model (the service is built in the server's start-up, before it accepts requests).
"""

# No `from __future__ import annotations`: BentoML reads the API's signature, whose
# types are defined in a function and could not be resolved from strings.

import json
import os
from base64 import b64encode
from pathlib import Path

NAME = "BentoML 1.4.40"
TUNING = (
    "1 worker, resources cpu=2; @bentoml.api(batchable=True, max_batch_size=16, "
    "max_latency_ms=60000): no fixed window to set, BentoML's adaptive batching learns "
    "batch cost and waits only while that pays; max_latency_ms is the latency budget past "
    "which queued requests get 503, so it is set to the 60 s traffic timeout; access log off"
)
READY_PATH = "/readyz"
REQUIREMENTS = "bentoml.txt"
ENV_LOG_BATCHES = "CAPTIONER_PEER_LOG_BATCHES"  # "1": the worker prints each batch's size
MAX_LATENCY_MS = 60_000  # BentoML's default, and the service's request timeout below


def command(python: str, port: int, workdir: Path) -> list[str]:
    bentoml = str(Path(python).parent / "bentoml")
    # `env` execs in place: the server keeps the process (and group) the driver started.
    return ["env", f"BENTOML_HOME={workdir / 'bentoml'}", bentoml, "serve",
            "benchmarks.peers.bentoml_peer:Captioner",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def environment() -> dict[str, str]:
    return {"BENTOML_DO_NOT_TRACK": "true"}  # no usage report (and no network here)


def request(image: bytes, beam: int) -> tuple[str, dict[str, str], bytes]:
    body = {"requests": [{"image": b64encode(image).decode("ascii"), "beam_size": beam}]}
    return "/caption", {"content-type": "application/json"}, json.dumps(body).encode()


def caption(body: bytes) -> str:
    return json.loads(body)[0]


def exit_with_server() -> None:
    """Stop this worker when the ``bentoml serve`` process that started it is gone.

    Circus starts each worker in a session of its own, out of the driver's process
    group: a SIGKILL of that group (the driver's last resort) would leave the worker
    serving on the port. SIGTERM needs no help: the server stops its workers itself.
    """
    import signal
    import threading
    import time

    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-server", daemon=True).start()


def build_service():
    """The BentoML service class, which imports BentoML."""
    import sys

    import bentoml
    from pydantic import BaseModel, ConfigDict, Field

    from benchmarks.peers.common import MAX_BATCH, PeerModel

    log_batches = os.environ.get(ENV_LOG_BATCHES) == "1"

    class CaptionRequest(BaseModel):
        """One image of a batch, with its own beam size."""

        model_config = ConfigDict(val_json_bytes="base64")
        image: bytes  # the JPEG file, base64 in JSON
        beam_size: int = Field(1, ge=1)

    @bentoml.service(
        name="captioner",
        workers=1,
        resources={"cpu": "2"},
        traffic={"timeout": MAX_LATENCY_MS / 1000},
        logging={"access": {"enabled": False}},
    )
    class Captioner:
        def __init__(self) -> None:
            exit_with_server()
            self.model = PeerModel()

        @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
        def caption(self, requests: list[CaptionRequest]) -> list[str]:
            if log_batches:
                print(f"bentoml batch size {len(requests)}", file=sys.stderr, flush=True)
            return self.model.captions([r.image for r in requests], [r.beam_size for r in requests])

    return Captioner


def __getattr__(name: str):
    if name == "Captioner":
        service = build_service()
        globals()["Captioner"] = service
        return service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
