"""Soak: the service at about 70% of its measured capacity for ten minutes, memory sampled.

In one run, against ``captioner serve`` started here on loopback with the real photos:

1. capacity: ``--clients`` closed-loop clients (each sends its next request when the
   last is answered) for ``--probe`` seconds; capacity is the answered requests per
   second;
2. soak: an open-loop schedule at ``--load`` times that rate (a request every
   1 / rate seconds whether or not earlier ones are answered, so a slowing service
   would pile up and show) for ``--duration`` seconds, sampling the server's RSS
   every ``--sample`` seconds;
3. a PNG of RSS (and requests per second) over time, and one JSON object of figures:
   requests, errors (anything but 200), latency percentiles, RSS start/peak/end and
   growth, in all and after the first minute (arenas and thread stacks settle in it),
   and the RSS trend over the second half (MB per minute: a leak keeps climbing).
   Exit status 1 on any error, or when RSS grew past ``--max-growth-mb`` after the
   first minute.

Ctrl-C ends the soak early and still writes the figures for the part that ran (a soak
is a measurement, so "resume" means running it again).

    python benchmarks/soak.py [--package runs/demo/package] [--duration 600] [--load 0.7]
        [--out docs/images/soak-rss.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import REAL_PHOTOS, ProcessServer  # noqa: E402

PHOTOS = [p.read_bytes() for p in sorted(REAL_PHOTOS.glob("*.jpg"))]


class Recorder:
    """Statuses and latencies of every request, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, int] = {}
        self.latencies: list[float] = []
        self.finished: list[float] = []  # monotonic end times, for the rate curve

    def send(self, client: httpx.Client, index: int) -> None:
        started = time.monotonic()
        try:
            answer = client.post("/v1/captions", files={"image": ("p.jpg", photo(index))})
            status = str(answer.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        ended = time.monotonic()
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == "200":
                self.latencies.append(ended - started)
            self.finished.append(ended)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return self.count - self.statuses.get("200", 0)


def photo(index: int) -> bytes:
    return PHOTOS[index % len(PHOTOS)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_capacity(url: str, clients: int, seconds: float) -> float:
    """Answered requests per second with ``clients`` closed-loop clients."""
    recorder = Recorder()
    stop = time.monotonic() + seconds

    def loop(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            i = worker
            while time.monotonic() < stop:
                recorder.send(client, i)
                i += clients

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    elapsed = time.monotonic() - started
    if recorder.errors:
        print(f"capacity probe: non-200 answers {recorder.statuses}", flush=True)
    return recorder.statuses.get("200", 0) / elapsed


def soak(
    url: str, pid: int, rate: float, seconds: float, sample: float
) -> tuple[Recorder, list[tuple[float, float]]]:
    """Open-loop load at ``rate`` requests/s for ``seconds``; RSS samples (t, MB)."""
    recorder = Recorder()
    server = psutil.Process(pid)
    samples: list[tuple[float, float]] = []
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=30)
            clients.append(local.client)
        return local.client

    started = time.monotonic()
    next_sample = started
    next_report = started + 30
    interval = 1.0 / rate
    sent = 0
    try:
        with ThreadPoolExecutor(32) as pool:
            while (now := time.monotonic()) < started + seconds:
                if now >= next_sample:
                    samples.append((now - started, server.memory_info().rss / 2**20))
                    next_sample += sample
                if now >= next_report:
                    print(
                        f"  {now - started:5.0f} s: {recorder.count} answered, "
                        f"{recorder.errors} errors, RSS {samples[-1][1]:.1f} MB",
                        flush=True,
                    )
                    next_report += 30
                due = started + sent * interval
                if now >= due:
                    pool.submit(lambda i=sent: recorder.send(client(), i))
                    sent += 1
                else:
                    time.sleep(min(due - now, 0.01))
    except KeyboardInterrupt:
        print("interrupted: writing the figures for the part that ran", flush=True)
    samples.append((time.monotonic() - started, server.memory_info().rss / 2**20))
    for c in clients:
        c.close()
    return recorder, samples


def plot(samples: list[tuple[float, float]], recorder: Recorder, started: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [t / 60 for t, _ in samples]
    rss = [m for _, m in samples]
    figure, axis = plt.subplots(figsize=(8, 4), dpi=100)
    axis.plot(times, rss, color="tab:blue", label="server RSS (MB)")
    axis.set_xlabel("minutes")
    axis.set_ylabel("RSS (MB)", color="tab:blue")
    axis.set_ylim(0, max(rss) * 1.25)
    rate = axis.twinx()
    buckets: dict[int, int] = {}
    for end in recorder.finished:
        buckets[int(end - started) // 10] = buckets.get(int(end - started) // 10, 0) + 1
    keys = sorted(buckets)[:-1]  # the last ten seconds are cut short by the stop
    rate.plot([k * 10 / 60 for k in keys], [buckets[k] / 10 for k in keys], color="tab:gray",
              alpha=0.6, label="answered requests/s")  # fmt: skip
    rate.set_ylabel("requests/s", color="tab:gray")
    rate.set_ylim(0, max(buckets.values(), default=1) / 10 * 1.5)
    axis.set_title("captioner serve: RSS during the soak")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "runs/demo/package")
    parser.add_argument("--duration", type=float, default=600.0, help="soak seconds")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of capacity")
    parser.add_argument("--clients", type=int, default=8, help="capacity probe clients")
    parser.add_argument("--probe", type=float, default=30.0, help="capacity probe seconds")
    parser.add_argument("--sample", type=float, default=2.0, help="RSS sample interval")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/soak-rss.png")
    parser.add_argument("--log", type=Path, default=ROOT / "runs/soak/server.log")
    args = parser.parse_args()

    args.log.parent.mkdir(parents=True, exist_ok=True)
    # The queue holds everything the probe's clients send: capacity, not refusals.
    with ProcessServer(args.package, args.log, log_level="warning") as server:
        server.wait_ready()
        assert server.process is not None
        print(f"capacity probe: {args.clients} clients for {args.probe:.0f} s", flush=True)
        capacity = measure_capacity(server.url, args.clients, args.probe)
        rate = capacity * args.load
        print(f"capacity {capacity:.1f} req/s; soak at {rate:.1f} req/s", flush=True)
        started = time.monotonic()
        recorder, samples = soak(server.url, server.process.pid, rate, args.duration, args.sample)
        elapsed = time.monotonic() - started
        ready = httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        server.stop()
    plot(samples, recorder, started, args.out)
    rss = [m for _, m in samples]
    warm = next((m for t, m in samples if t >= min(60.0, elapsed / 2)), rss[-1])
    # A leak is a trend: the least-squares slope of RSS over the second half of the soak.
    half = [(t, m) for t, m in samples if t >= elapsed / 2]
    slope = float(np.polyfit([t / 60 for t, _ in half], [m for _, m in half], 1)[0])
    figures = {
        "capacity_rps": round(capacity, 2),
        "target_rps": round(rate, 2),
        "achieved_rps": round(recorder.count / elapsed, 2),
        "seconds": round(elapsed, 1),
        "requests": recorder.count,
        "errors": recorder.errors,
        "statuses": recorder.statuses,
        "latency_p50_s": round(percentile(recorder.latencies, 0.50), 4),
        "latency_p99_s": round(percentile(recorder.latencies, 0.99), 4),
        "latency_max_s": round(max(recorder.latencies, default=float("nan")), 4),
        "rss_start_mb": round(rss[0], 1),
        "rss_peak_mb": round(max(rss), 1),
        "rss_end_mb": round(rss[-1], 1),
        "rss_growth_mb": round(rss[-1] - rss[0], 1),
        # Arenas and thread stacks settle in the first minute; a leak keeps growing after.
        "rss_after_first_minute_mb": round(warm, 1),
        "rss_growth_after_first_minute_mb": round(rss[-1] - warm, 1),
        "rss_slope_second_half_mb_per_min": round(slope, 2),
        "ready_after": ready,
        "plot": str(args.out),
    }
    print(json.dumps(figures, indent=2))
    grew = figures["rss_growth_after_first_minute_mb"] > args.max_growth_mb
    failed = recorder.errors or not ready or grew
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
