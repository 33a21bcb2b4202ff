"""PyTriton: NVIDIA Triton Inference Server before the model, batched by Triton itself.

PyTriton starts the ``tritonserver`` binary its wheel carries and binds a Python
callable as a Triton model: Triton's Python backend runs a stub process that hands each
batch over to the callable in this process (ZeroMQ sockets in the workspace, tensors in
POSIX shared memory under /dev/shm). Batches are formed by Triton's dynamic batcher and
the callable receives them through PyTriton's ``@batch`` decorator.

Clients speak Triton's HTTP/REST KServe V2 protocol; the JPEG travels as a BYTES
tensor in the binary tensor data extension, as ``tritonclient.http`` sends it.

The environment is made from Debian's ``/usr/bin/python3.11`` (3.11.2), not the
machine's default 3.11.7: Triton's Python stub links the system libpython, and with
another interpreter's standard library it fails at load
(``'_thread.RLock' object has no attribute '_recursion_count'``). Besides the wheel's
own libraries, Triton needs from Debian: libpython3.11 and python3.11-venv (the stub
and the venv), zlib1g and libexpat1, and glibc >= 2.35 (a manylinux_2_35 wheel); all
are already on this Debian 12 host.

Files: PyTriton's workspace (the copy of tritonserver, the model store, the sockets)
is ``<workdir>/pytriton``. Triton itself always uses ``/tmp/folderXXXXXX`` (the model's
configuration) and ``/tmp/python_env_XXXXXX`` (Python backend), with no setting to move
them; it removes both, and its shared memory, when it shuts down.

Stopping: SIGTERM to the process group is turned into PyTriton's own Ctrl+C path, so
``Triton.serve()`` stops tritonserver (SIGINT, then waits) and removes the workspace,
instead of the Python process dying at once and leaving it behind. Set
``CAPTIONER_PEER_DEBUG=1`` to log the size of each batch on stderr.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

NAME = "PyTriton 0.7.0 (Triton Inference Server 2.51.0)"
TUNING = (
    "Triton's dynamic batcher: max_batch_size=16, max_queue_delay_microseconds=10000, "
    "no preferred sizes, one model instance (Triton's tuning guide: fix the largest "
    "batch, start from the defaults, then raise the queue delay within the latency "
    "budget); gRPC and metrics endpoints off"
)
MODEL = "captioner"
READY_PATH = f"/v2/models/{MODEL}/ready"
REQUIREMENTS = "pytriton.txt"
BASE_PYTHON = "/usr/bin/python3.11"
ENV_DEBUG = "CAPTIONER_PEER_DEBUG"


def command(python: str, port: int, workdir: Path) -> list[str]:
    return [python, "-m", "benchmarks.peers.pytriton_peer", str(port), str(workdir)]


def request(image: bytes, beam: int) -> tuple[str, dict[str, str], bytes]:
    # Binary tensor data extension: a BYTES element is its 4-byte little-endian length,
    # then its bytes; the JSON header says how long it is and the body follows it.
    payload = struct.pack("<I", len(image)) + image
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1, 1],
                    "parameters": {"binary_data_size": len(payload)},
                },
                {"name": "beam_size", "datatype": "INT32", "shape": [1, 1], "data": [beam]},
            ],
            "outputs": [{"name": "caption", "parameters": {"binary_data": False}}],
        }
    ).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return f"/v2/models/{MODEL}/infer", headers, header + payload


def caption(body: bytes) -> str:
    (output,) = json.loads(body)["outputs"]
    return output["data"][0]


def serve(port: int, workdir: Path) -> None:
    """Bind PeerModel as a Triton model on loopback ``port`` and serve until stopped."""
    import signal

    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from benchmarks.peers.common import MAX_BATCH, MAX_WAIT_MS, PeerModel

    model = PeerModel()
    debug = os.environ.get(ENV_DEBUG, "") not in ("", "0")

    @batch
    def infer(image: np.ndarray, beam_size: np.ndarray) -> dict[str, np.ndarray]:
        if debug:
            print(f"pytriton batch size {len(image)}", file=sys.stderr, flush=True)
        captions = model.captions(list(image[:, 0]), [int(b) for b in beam_size[:, 0]])
        return {"caption": np.array([[c.encode()] for c in captions], dtype=np.object_)}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=port,
        allow_grpc=False,
        allow_metrics=False,
    )
    # PyTriton's serve() stops everything in order on KeyboardInterrupt (Ctrl+C).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with Triton(config=config, workspace=workdir / "pytriton") as triton:
        triton.bind(
            model_name=MODEL,
            infer_func=infer,
            inputs=[
                Tensor(name="image", dtype=bytes, shape=(1,)),
                Tensor(name="beam_size", dtype=np.int32, shape=(1,)),
            ],
            outputs=[Tensor(name="caption", dtype=bytes, shape=(1,))],
            config=ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(MAX_WAIT_MS * 1000)),
            ),
        )
        triton.serve()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
