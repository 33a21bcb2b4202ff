"""``captioner serve`` against peer model servers serving the same package, and the physical limit.

Every peer (``benchmarks/peers/<stem>.py``; see README.md there) serves the same model
package with this project's runtime; what differs is the server around the model. For
each peer, in its own virtual environment, the driver:

1. starts the server and times its start-up to readiness, then checks the seven real
   photos' captions at each beam size against :class:`PeerModel` run here;
2. measures closed-loop cells (N clients, each sending the next photo as soon as its
   answer came) for each client count and beam size, and one open-loop cell per beam
   size (Poisson arrivals at ``--open-rate`` times that beam's physical limit, at most
   256 outstanding): requests/s, latency percentiles, errors by kind, the server's
   process tree peak RSS and CPU cores busy, and the client's own CPU;
3. stops the server (SIGTERM to its process group, SIGKILL after 15 s) and checks that
   none of its processes is left.

The peer order rotates from one repeat to the next, so that drift on a shared host
falls on every peer alike. The physical limit is measured in this process before the
servers and again after them: the bare encoder's best images/s over batch sizes, the
decoder's best captions/s per beam size over batch sizes, and from these the most
captions/s the model's graphs allow per beam size; also one photo's encode plus greedy
decode, which ``captioner serve``'s one-client latency is compared with. The limit
counts the graphs only: no JPEG decoding, no re-ranking, no HTTP.

Prints markdown tables and writes them to ``--out``/table.md, with every number in
``--out``/results.json. A peer that cannot be installed or started is reported as such.

The parts: ``limit.py`` measures the physical limit, ``servers.py`` makes a peer's
environment and runs its server, ``results.py`` holds what the cells measured, and
``tables.py`` and ``report.py`` write the report; this module runs the cells and repeats.

    python benchmarks/peers/run.py [--peers captioner_peer,mlserver_peer] [--duration 20]
        [--warmup 5] [--repeats 2] [--clients 1,16,64] [--beams 1,3] [--open-rate 0.5]
        [--package runs/demo/package] [--out runs/peers] [--json] [--skip-install]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.peers.common import ENV_PACKAGE, ENV_THREADS, PeerModel  # noqa: E402
from benchmarks.peers.limit import CPU, ENV_PROVIDER, Limit, physical_limit  # noqa: E402
from benchmarks.peers.load import closed_loop, open_loop  # noqa: E402
from benchmarks.peers.report import Report, machine  # noqa: E402
from benchmarks.peers.results import MAX_OUTSTANDING, Cell, CellResult, PeerRun  # noqa: E402
from benchmarks.peers.servers import (  # noqa: E402
    ROOT,
    Peer,
    PeerFailure,
    Server,
    log_tail,
    prepare,
)
from tests.helpers import REAL_PHOTOS  # noqa: E402

PEERS = "captioner_peer,mlserver_peer,ray_peer,bentoml_peer,litserve_peer,pytriton_peer"
VENVS = ROOT / "runs" / "peers" / "venvs"  # whatever --out is, so that a new --out installs nothing


# --- the cells on one peer's server -----------------------------------------------------


def check_captions(
    server: Server, photos: Sequence[bytes], expected: dict[int, list[str]]
) -> dict[int, str]:
    """Each photo's caption from the server against PeerModel's, per beam size."""
    module, agreement = server.module, {}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for beam, wanted in expected.items():
            differ = []
            for i, (photo, want) in enumerate(zip(photos, wanted, strict=True)):
                path, headers, body = module.request(photo, beam)
                answer = client.post(path, headers=headers, content=body)
                got = module.caption(answer.content) if answer.status_code == 200 else None
                if got != want:
                    differ.append(f"photo {i + 1}: {got!r} ({answer.status_code}) != {want!r}")
            agreement[beam] = f"{len(wanted) - len(differ)}/{len(wanted)}"
            if differ:
                agreement[beam] += " MISMATCH: " + "; ".join(differ)
    return agreement


def run_cell(
    server: Server, photos: Sequence[bytes], cell: Cell, repeat: int, warmup: float, duration: float
) -> CellResult:
    """One cell's load on a started server, its process tree metered meanwhile."""
    assert server.meter is not None
    module, meter = server.module, server.meter
    sent = (server.url, [module.request(photo, cell.beam) for photo in photos], module.caption)
    meter.new_cell()
    if cell.clients:
        load = closed_loop(*sent, cell.clients, warmup, duration, meter)
    else:
        load = open_loop(*sent, cell.rate, warmup, duration, meter, MAX_OUTSTANDING, seed=repeat)
    seen = asyncio.run(load)
    return CellResult(
        peer=server.peer.stem, repeat=repeat, load=cell.load, beam=cell.beam, rate=seen.rate,
        p50_ms=seen.percentile(50), p90_ms=seen.percentile(90), p99_ms=seen.percentile(99),
        errors=dict(seen.errors), peak_rss_mb=meter.peak_rss / 1e6,
        server_cpu_cores=meter.cpu_seconds / seen.window_s, client_cpu_cores=seen.client_cpu_cores,
    )  # fmt: skip


def run_peer(
    peer: Peer, record: PeerRun, args: argparse.Namespace, photos: Sequence[bytes],
    expected: dict[int, list[str]], cells: Sequence[Cell],
) -> None:  # fmt: skip
    """Start the peer, check it, run every cell, stop it, into ``record``.

    A failure is recorded, not raised; an interrupt is recorded and raised, after the
    server is stopped.
    """
    repeat = record.repeat
    log = args.out / "logs" / f"{peer.stem}-{repeat + 1}.log"
    server = Server(peer, args.package, log)
    try:
        with server:
            record.startup_s = server.startup_s
            print(f"  {peer.stem}: ready in {server.startup_s:.1f} s on {server.url}", flush=True)
            record.agreement = check_captions(server, photos, expected)
            for cell in cells:
                server.check_alive(f"before the cell {cell.load}, beam {cell.beam}")
                done = run_cell(server, photos, cell, repeat, args.warmup, args.duration)
                record.cells.append(done)
                print(f"  {peer.stem}: {cell.load}, beam {cell.beam}: {done.rate:.1f} req/s, p99 "
                      f"{done.p99_ms:.0f} ms, errors {done.errors or 0}", flush=True)  # fmt: skip
    except PeerFailure as exc:
        record.failure = str(exc)
    except Exception as exc:  # a peer module's own bug must not stop the other peers
        record.failure = f"{type(exc).__name__}: {exc}; log {log}:\n{log_tail(log)}"
    except KeyboardInterrupt:
        record.failure = "interrupted"
        raise
    finally:
        record.survivors = server.survivors
    if record.failure:
        print(f"  {peer.stem}: could not run: {record.failure}", flush=True)


# --- the run ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "runs" / "demo" / "package")
    parser.add_argument("--peers", default=PEERS, help="comma list of module stems")
    parser.add_argument("--duration", type=float, default=20, help="measured s per cell")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured s before each cell")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", default="1,16,64", help="closed-loop client counts")
    parser.add_argument("--beams", default="1,3")
    parser.add_argument(
        "--open-rate",
        type=float,
        default=0.5,
        help="open-loop arrivals, × the physical limit with the JPEG decode",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "peers")
    parser.add_argument("--json", action="store_true", help="also print results.json")
    parser.add_argument(
        "--provider",
        default=CPU,
        help="execution provider of the limit and of captioner serve (the peers run on the CPU)",
    )
    parser.add_argument("--skip-install", action="store_true", help="use the venvs as they are")
    args = parser.parse_args(argv)
    args.package = args.package.resolve()
    if not (args.package / "manifest.json").exists():
        parser.error(
            f"no model package at {args.package}: `bash scripts/demo.sh` or `captioner demo` "
            "makes runs/demo/package"
        )
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    args.clients = [int(c) for c in args.clients.split(",")]
    args.beams = [int(b) for b in args.beams.split(",")]
    args.out = args.out.resolve()
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that every `with Server` stops its server on SIGTERM too


def expected_captions(
    package: Path, photos: Sequence[bytes], beams: Sequence[int]
) -> dict[int, list[str]]:
    """Each photo's caption per beam size from :class:`PeerModel` run here."""
    model = PeerModel(package, threads=0)
    return {b: model.captions(photos, [b] * len(photos)) for b in beams}


def plan_cells(args: argparse.Namespace, limit: Limit) -> list[Cell]:
    """A closed loop per beam size and client count, then an open loop per beam size."""
    cells = [Cell(b, clients=n) for b in args.beams for n in args.clients]
    before = limit.with_preprocess_per_s
    cells += [Cell(b, rate=args.open_rate * before[b]) for b in args.beams]
    return cells


def run_repeat(
    repeat: int, ready: Sequence[Peer], runs: list[PeerRun], args: argparse.Namespace,
    photos: Sequence[bytes], expected: dict[int, list[str]], cells: Sequence[Cell],
) -> None:  # fmt: skip
    """Every ready peer once, in an order rotated by one each repeat, into ``runs``."""
    turn = repeat % len(ready) if ready else 0
    order = [*ready[turn:], *ready[:turn]]  # rotated: drift falls on every peer alike
    print(f"repeat {repeat + 1}/{args.repeats}: {', '.join(p.stem for p in order)}", flush=True)
    for peer in order:
        runs.append(PeerRun(peer.stem, repeat))
        run_peer(peer, runs[-1], args, photos, expected, cells)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # A peer's command() may read these here, as its server does (captioner_peer does).
    os.environ.update(
        {ENV_PACKAGE: str(args.package), ENV_THREADS: "0", ENV_PROVIDER: args.provider}
    )
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    host = machine()
    photos = [p.read_bytes() for p in sorted(REAL_PHOTOS.glob("*.jpg"))]
    peers = [prepare(stem, VENVS, args.out / "logs", args.skip_install) for stem in args.peers]

    print("physical limit, before the servers ...", flush=True)
    limits = {"before": physical_limit(args.package, photos, args.beams)}
    expected = expected_captions(args.package, photos, args.beams)
    cells = plan_cells(args, limits["before"])

    runs: list[PeerRun] = []
    ready = [p for p in peers if p.failure is None]
    try:
        for repeat in range(args.repeats):
            run_repeat(repeat, ready, runs, args, photos, expected, cells)
        print("physical limit, after the servers ...", flush=True)
        limits["after"] = physical_limit(args.package, photos, args.beams)
    except KeyboardInterrupt:
        host["interrupted"] = True
        print("interrupted: the report covers what ran", file=sys.stderr, flush=True)
    host["load_average_end"] = os.getloadavg()[0]
    Report(args, host, peers, runs, cells, limits).write()


if __name__ == "__main__":
    main()
