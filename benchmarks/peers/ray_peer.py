"""Ray Serve: one replica behind Serve's HTTP proxy, batched with ``@serve.batch``.

The client half needs no Ray. The server half (``python -m benchmarks.peers.ray_peer``)
starts a local Ray head of its own (GCS, raylet, agents, and the Serve controller, proxy
and replica as actors, each a process), with its temp dir, object store and spill files
under the run's workdir. On SIGTERM it exits through ``ray.shutdown()``, which stops the
processes ``ray.init`` started; the actors, in process groups of their own, end as soon
as their raylet is gone (within seconds, after a SIGKILL of the group too).

A client POSTs the raw JPEG bytes to ``/?beam_size=N`` and reads ``{"caption": ...}``.
``GET /ready`` answers 200 once the replica has loaded the model: until the application
is deployed Serve's proxy answers 404, and then holds requests until the replica is up.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

NAME = "Ray Serve 2.60.0"
TUNING = (
    "1 replica (num_cpus=2, the whole host); @serve.batch(max_batch_size=16, "
    "batch_wait_timeout_s=0.01), max_ongoing_requests=32 (the docs ask for at least "
    "max_batch_size x max_concurrent_batches; twice that lets the next batch queue while one "
    "runs); the batch runs off the replica's event loop; access log off"
)
READY_PATH = "/ready"
REQUIREMENTS = "ray.txt"
ENV_LOG_BATCHES = "CAPTIONER_PEER_LOG_BATCHES"  # "1": the replica prints each batch's size


def command(python: str, port: int, workdir: Path) -> list[str]:
    return [python, "-m", "benchmarks.peers.ray_peer",
            "--port", str(port), "--workdir", str(workdir)]  # fmt: skip


def environment() -> dict[str, str]:
    return {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage report (and no network here)


def request(image: bytes, beam: int) -> tuple[str, dict[str, str], bytes]:
    return f"/?beam_size={beam}", {"content-type": "image/jpeg"}, image


def caption(body: bytes) -> str:
    return json.loads(body)["caption"]


def application():
    """The Serve application: one replica of a deployment that batches the model call."""
    import asyncio
    import sys

    from ray import serve
    from starlette.requests import Request

    from benchmarks.peers.common import MAX_BATCH, MAX_WAIT_MS, PeerModel

    log_batches = os.environ.get(ENV_LOG_BATCHES) == "1"

    @serve.deployment(
        num_replicas=1,
        max_ongoing_requests=2 * MAX_BATCH,
        ray_actor_options={"num_cpus": 2},
    )
    class Captioner:
        def __init__(self) -> None:
            self.model = PeerModel()

        async def __call__(self, request: Request):
            if request.method == "GET":
                return {"ready": True}
            beam = int(request.query_params.get("beam_size", "1"))
            return {"caption": await self.caption((await request.body(), beam))}

        @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_WAIT_MS / 1000)
        async def caption(self, items: list[tuple[bytes, int]]) -> list[str]:
            if log_batches:
                print(f"ray batch size {len(items)}", file=sys.stderr, flush=True)
            images, beams = zip(*items, strict=True)
            # A thread, so that requests keep arriving in the queue while a batch runs.
            return await asyncio.to_thread(self.model.captions, images, beams)

    return Captioner.bind()


def socket_safe(ray_dir: Path) -> Path:
    """``ray_dir``, or a short link to it in the system's temp dir if it is too long.

    Ray's Unix sockets live in its temp dir, about 64 bytes below it, and a socket's
    path has at most 107: a long workdir would stop ``ray.init``.
    """
    import atexit
    import tempfile

    if len(os.fsencode(ray_dir)) <= 40:
        return ray_dir
    link = Path(tempfile.gettempdir()) / f"ray-peer-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(ray_dir, target_is_directory=True)
    atexit.register(link.unlink, missing_ok=True)
    return link


def serve_forever(port: int, workdir: Path) -> None:
    """Start a private Ray head and Serve on loopback, and block until SIGTERM."""
    import secrets
    import signal
    import sys

    import ray
    from ray import serve

    ray_dir = workdir.resolve() / "ray"
    ray_dir.mkdir(parents=True, exist_ok=True)
    temp_dir = socket_safe(ray_dir)
    # Ray's default token auth stays on, with a token of this run's alone: otherwise
    # ray.init writes one to ~/.ray/auth_token, outside the workdir.
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray.init(
        address="local",  # always a new head, never one found on the machine
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        _plasma_directory=str(ray_dir),
        object_spilling_directory=str(ray_dir / "spill"),
        log_to_driver=True,
    )

    # Ray's core replaces Python's SIGTERM handler with one that aborts the driver:
    # exit instead, so that ray.shutdown() (atexit) stops the processes ray.init started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        application(),
        route_prefix="/",
        logging_config={"log_level": "WARNING", "enable_access_log": False},
        blocking=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    serve_forever(args.port, args.workdir)


if __name__ == "__main__":
    main()
