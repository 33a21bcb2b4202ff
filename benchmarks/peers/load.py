"""The load generator and the meter on the server's processes, shared by every peer.

One asyncio client (httpx, HTTP/1.1, keep-alive, one connection per client) sends
prepared requests, so the client's own work per request is the same whatever the
server: the request bodies are built once before a cell, and only the caption is
read back out of each answer.

- :func:`closed_loop`: N clients, each sending the next photo as soon as its last
  answer came.
- :func:`open_loop`: Poisson arrivals at a fixed rate whatever the answers, with a
  cap on outstanding requests (an arrival beyond it is dropped and counted as an
  error). Latency runs from the arrival's scheduled time, so a client that falls
  behind does not hide the wait (no coordinated omission).

Both run ``warmup`` seconds, then measure ``duration`` seconds: throughput, latency
and errors count the answers that came inside that window only. :class:`TreeMeter`
samples the server's process tree (the process, its descendants and anything left in
its session) for peak RSS and the CPU seconds it used inside the window.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
import psutil

Request = tuple[str, dict[str, str], bytes]  # path, headers, body (what a peer's request() makes)
Parse = Callable[[bytes], str]  # a peer's caption(body)

TIMEOUT_S = 120.0  # one request's limit: far beyond any answer a working server gives
# The requests still out when the window closes are all waited for (up to their timeout):
# a server keeps a cancelled request in its queue, and that backlog would fall on the next cell.
DRAIN_S = TIMEOUT_S


@dataclass
class LoadResult:
    """What the client saw inside the measured window."""

    completed: int  # answers with status 200 and a non-empty caption
    window_s: float
    latencies_ms: list[float] = field(repr=False)
    errors: Counter[str]
    client_cpu_cores: float  # this process's CPU seconds per second of window

    @property
    def rate(self) -> float:
        return self.completed / self.window_s

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass
class _Window:
    """The measured window's bounds and what happened inside it."""

    start: float = float("inf")
    end: float = float("inf")
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0

    def inside(self, t: float) -> bool:
        return self.start <= t <= self.end

    def record(self, begun: float, done: float, error: str | None) -> None:
        if not self.inside(done):
            return
        if error is None:
            self.latencies.append((done - begun) * 1000)
        else:
            self.errors[error] += 1


def _client(connections: int, base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base_url, http1=True, http2=False, limits=limits, timeout=TIMEOUT_S
    )


async def _send(client: httpx.AsyncClient, request: Request, parse: Parse) -> str | None:
    """None for a good answer, else the kind of error."""
    path, headers, body = request
    try:
        answer = await client.post(path, headers=headers, content=body)
    except Exception as exc:  # a connection refused or reset, a timeout: all count as errors
        return type(exc).__name__
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    try:
        text = parse(answer.content)
    except Exception as exc:  # an answer this peer's caption() cannot read
        return f"unreadable answer ({type(exc).__name__})"
    return None if text and text.strip() else "empty caption"


async def _clock(window: _Window, warmup: float, duration: float, marks: Marks) -> None:
    """Opens the window after ``warmup``, closes it ``duration`` later, calling the marks."""
    own = psutil.Process()
    await asyncio.sleep(warmup)
    marks.start()
    cpu = sum(own.cpu_times()[:2])
    window.start = time.perf_counter()
    await asyncio.sleep(duration)
    window.end = time.perf_counter()
    window.cpu = sum(own.cpu_times()[:2]) - cpu
    marks.end()


async def _drain(tasks: set[asyncio.Task]) -> None:
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=DRAIN_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _result(window: _Window) -> LoadResult:
    span = window.end - window.start
    return LoadResult(
        len(window.latencies), span, window.latencies, window.errors, window.cpu / span
    )


class Marks:
    """Called when the measured window opens and closes (the server meter hooks in here)."""

    def start(self) -> None:
        pass

    def end(self) -> None:
        pass


async def closed_loop(
    base_url: str,
    requests: Sequence[Request],
    parse: Parse,
    clients: int,
    warmup: float,
    duration: float,
    marks: Marks | None = None,
) -> LoadResult:
    """``clients`` concurrent clients, each sending the next request when its answer came."""
    window = _Window()
    async with _client(clients, base_url) as client:

        async def one_client(k: int) -> None:
            i = k  # the clients start on different photos
            while time.perf_counter() < window.end:
                begun = time.perf_counter()
                error = await _send(client, requests[i % len(requests)], parse)
                window.record(begun, time.perf_counter(), error)
                i += 1

        clock = asyncio.create_task(_clock(window, warmup, duration, marks or Marks()))
        tasks = {asyncio.create_task(one_client(k)) for k in range(clients)}
        await clock
        await _drain(tasks)
    return _result(window)


async def open_loop(
    base_url: str,
    requests: Sequence[Request],
    parse: Parse,
    rate: float,
    warmup: float,
    duration: float,
    marks: Marks | None = None,
    max_outstanding: int = 256,
    seed: int = 0,
) -> LoadResult:
    """Poisson arrivals at ``rate`` per second; beyond ``max_outstanding`` an arrival is dropped."""
    window = _Window()
    arrivals = random.Random(seed)
    out: set[asyncio.Task] = set()
    async with _client(max_outstanding, base_url) as client:

        async def one_request(request: Request, due: float) -> None:
            error = await _send(client, request, parse)
            window.record(due, time.perf_counter(), error)

        clock = asyncio.create_task(_clock(window, warmup, duration, marks or Marks()))
        due, stop, i = time.perf_counter(), time.perf_counter() + warmup + duration, 0
        while True:
            due += arrivals.expovariate(rate)
            if due >= min(stop, window.end):
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if len(out) >= max_outstanding:
                window.record(due, due, f"dropped (>{max_outstanding} outstanding)")
                continue
            task = asyncio.create_task(one_request(requests[i % len(requests)], due))
            out.add(task)
            task.add_done_callback(out.discard)
            i += 1
        await clock
        await _drain(set(out))
    return _result(window)


class TreeMeter(Marks):
    """Samples a server's process tree every ``interval`` s: peak RSS and CPU in the window.

    The tree is the process, its descendants and every process of its session (a
    daemon that re-parented itself to init is still in the session). RSS is summed
    over the tree, so pages the processes share count once per process.
    """

    def __init__(self, pid: int, interval: float = 0.2):
        self.root = psutil.Process(pid)
        self.session = os.getsid(pid)
        self.interval = interval
        self.seen: dict[int, psutil.Process] = {}  # every process of the server seen, by pid
        self.peak_rss = 0
        self._cpu: dict[int, float] = {}  # last CPU seconds seen, by pid
        self._base: dict[int, float] | None = None
        self._used = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def processes(self) -> list[psutil.Process]:
        """The server's processes alive now."""
        tree = {self.root.pid: self.root} if self.root.is_running() else {}
        try:
            tree.update((p.pid, p) for p in self.root.children(recursive=True))
        except psutil.Error:
            pass
        for proc in psutil.process_iter():
            try:
                if proc.pid not in tree and os.getsid(proc.pid) == self.session:
                    tree[proc.pid] = proc
            except (OSError, psutil.Error):
                continue
        return list(tree.values())

    def sample(self) -> None:
        rss = 0
        with self._lock:
            for proc in self.processes():
                try:
                    with proc.oneshot():
                        rss += proc.memory_info().rss
                        self._cpu[proc.pid] = sum(proc.cpu_times()[:2])
                except psutil.Error:
                    continue
                self.seen.setdefault(proc.pid, proc)
            self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeMeter:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def new_cell(self) -> None:
        """Peak RSS from now on (a cell's warm-up and window)."""
        with self._lock:
            self.peak_rss = 0

    def start(self) -> None:
        self.sample()
        with self._lock:
            self._base = dict(self._cpu)

    def end(self) -> None:
        self.sample()
        with self._lock:
            base = self._base or {}
            self._used = sum(cpu - base.get(pid, 0.0) for pid, cpu in self._cpu.items())

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds the tree used between :meth:`start` and :meth:`end`."""
        return self._used
