"""``captioner serve`` itself, as a user starts it: the row every peer is compared with.

Tuning: the service's defaults (continuous batching of decoder steps across requests,
encoder batches of up to 16, no batch window when idle, one worker); only the log level
is lowered so that the access log does not cost the benchmark.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

NAME = "captioner serve"
TUNING = (
    "defaults: 1 worker, encoder batch <= 16, no idle window, decoder steps batched across requests"
)
READY_PATH = "/v2/health/ready"
REQUIREMENTS = None  # runs in the project's own environment


def command(python: str, port: int, workdir: Path) -> list[str]:
    package = os.environ["CAPTIONER_PEER_PACKAGE"]
    return [python, "-c", "from cli.main import main; main()", "serve",
            "--model", package, "--port", str(port)]  # fmt: skip


def environment() -> dict[str, str]:
    # The driver's --provider (scripts/gpu-check.sh runs this row on CUDA).
    provider = os.environ.get("CAPTIONER_PEER_PROVIDER", "CPUExecutionProvider")
    return {
        "CAPTIONER_PROVIDERS": json.dumps(list(dict.fromkeys([provider, "CPUExecutionProvider"]))),
        "CAPTIONER_LOG_LEVEL": "warning",
    }


def multipart(fields: dict[str, str], image: bytes) -> tuple[dict[str, str], bytes]:
    """A multipart/form-data body with one file part, as a browser or curl -F sends it."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return {"content-type": f"multipart/form-data; boundary={boundary}"}, b"".join(parts)


def request(image: bytes, beam: int) -> tuple[str, dict[str, str], bytes]:
    headers, body = multipart({"beam_size": str(beam)}, image)
    return "/v1/captions", headers, body


def caption(body: bytes) -> str:
    return json.loads(body)["caption"]
