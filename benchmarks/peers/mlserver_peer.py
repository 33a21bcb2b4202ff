"""MLServer: Seldon's Open Inference Protocol V2 server, with a custom runtime.

The runtime is an ``MLModel`` subclass whose ``load()`` opens :class:`PeerModel` and
whose ``predict()`` gets the requests that MLServer's adaptive batcher merged into one
``InferenceRequest``. MLServer imports it by the dotted path in ``model-settings.json``;
this module hands it out through a module ``__getattr__`` so that the client half never
imports mlserver.

Clients speak the V2 REST protocol in JSON: the JPEG is a BYTES tensor whose one element
is the photo in base64 (``"content_type": "base64"``, which MLServer's Base64 codec
decodes), the beam size an INT32 tensor beside it. The beam size is an input rather than
a request parameter because the batcher concatenates inputs per request but keeps only
one request's parameters.

``command()`` writes ``settings.json`` and ``captioner/model-settings.json`` into the run's
scratch directory and starts the venv's ``mlserver start`` on it. Set
``CAPTIONER_PEER_DEBUG=1`` to log the size of each batch on stderr.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import sys
from pathlib import Path

NAME = "MLServer 1.7.1"
TUNING = (
    "adaptive batching max_batch_size=16, max_batch_time=0.01 s (the docs: off by default, "
    "sized by experiment); parallel_workers=1 (the default: one inference process holds the "
    "one model replica while the main process keeps parsing and batching requests; 0 would "
    "run ONNX Runtime on the event loop and stall HTTP, 2 would split the 2 cores); "
    "access log off (debug=false), gRPC and metrics servers on port+1 and port+2"
)
MODEL = "captioner"
READY_PATH = f"/v2/models/{MODEL}/ready"
REQUIREMENTS = "mlserver.txt"
ENV_DEBUG = "CAPTIONER_PEER_DEBUG"


def _settings(port: int, workdir: Path) -> dict:
    return {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": port + 1,
        "metrics_port": port + 2,
        "parallel_workers": 1,
        "debug": False,
        # Both default to folders under the working directory, which is the repository.
        "metrics_dir": str(workdir / "metrics"),
        "environments_dir": str(workdir / "envs"),
    }


def _model_settings() -> dict:
    from benchmarks.peers.common import MAX_BATCH, MAX_WAIT_MS

    return {
        "name": MODEL,
        "implementation": "benchmarks.peers.mlserver_peer.CaptionRuntime",
        "max_batch_size": MAX_BATCH,
        "max_batch_time": MAX_WAIT_MS / 1000,
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "beam_size", "datatype": "INT32", "shape": [-1]},
        ],
        "outputs": [{"name": "caption", "datatype": "BYTES", "shape": [-1, 1]}],
    }


def command(python: str, port: int, workdir: Path) -> list[str]:
    (workdir / MODEL).mkdir(parents=True, exist_ok=True)
    (workdir / "settings.json").write_text(json.dumps(_settings(port, workdir), indent=2))
    (workdir / MODEL / "model-settings.json").write_text(json.dumps(_model_settings(), indent=2))
    return [str(Path(python).with_name("mlserver")), "start", str(workdir)]


def request(image: bytes, beam: int) -> tuple[str, dict[str, str], bytes]:
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"content_type": "base64"},
                "data": [base64.b64encode(image).decode("ascii")],
            },
            {"name": "beam_size", "datatype": "INT32", "shape": [1], "data": [beam]},
        ]
    }
    return (
        f"/v2/models/{MODEL}/infer",
        {"content-type": "application/json"},
        json.dumps(body).encode(),
    )


def caption(body: bytes) -> str:
    (output,) = json.loads(body)["outputs"]
    return output["data"][0]


@functools.cache
def _runtime_class() -> type:
    from mlserver import MLModel
    from mlserver.codecs import Base64Codec, NumpyCodec, StringCodec
    from mlserver.types import InferenceRequest, InferenceResponse

    from benchmarks.peers.common import PeerModel

    debug = os.environ.get(ENV_DEBUG, "") not in ("", "0")

    class CaptionRuntime(MLModel):
        """PeerModel behind MLServer: one call per batch the adaptive batcher made."""

        async def load(self) -> bool:
            self._model = PeerModel()
            if debug:
                print(f"mlserver model loaded in pid {os.getpid()}", file=sys.stderr, flush=True)
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            inputs = {i.name: i for i in payload.inputs}
            images = self.decode(inputs["image"], default_codec=Base64Codec)
            beams = NumpyCodec.decode_input(inputs["beam_size"]).reshape(-1).tolist()
            if debug:
                print(f"mlserver batch size {len(images)}", file=sys.stderr, flush=True)
            captions = self._model.captions(images, beams)
            return InferenceResponse(
                model_name=self.name,
                model_version=self.version,
                outputs=[StringCodec.encode_output("caption", captions, use_bytes=False)],
            )

    return CaptionRuntime


def __getattr__(name: str) -> type:
    # MLServer imports the runtime by its dotted path, in the server and in its worker.
    if name == "CaptionRuntime":
        return _runtime_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
