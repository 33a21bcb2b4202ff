"""Faults: slow clients, SIGTERM under overload, and the feedback database going away.

A corrupt or missing model package (not ready, the reason in the readiness body and
the log) is tested in tests/integration/test_lifecycle.py
(``test_a_bad_package_is_live_not_ready_with_the_reason``); SIGTERM with a fixed set of
requests in flight in ``test_sigterm_finishes_every_request_in_flight`` there. This file
adds the same signal under ten times the service's capacity.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pymongo import MongoClient

from feedback.localdb import LocalMongo
from feedback.outbox import Flusher, Outbox
from feedback.record import Feedback, make_feedback
from feedback.store import FeedbackStore
from feedback.submit import submit
from tests.helpers import REAL_PHOTOS, ProcessServer, free_port, wait_until

PHOTOS = [p.read_bytes() for p in sorted(REAL_PHOTOS.glob("*.jpg"))]


def trickle(port: int, stop_after: float) -> tuple[bytes, float]:
    """A slowloris: headers promising 100 kB, then one byte every 0.1 s.

    Returns what the server sent and how long until it closed the connection.
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/captions HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 100000\r\n\r\n\xff\xd8"
        )
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < stop_after:
            try:
                sock.sendall(b"\0")
            except OSError:  # closed by the server
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - started


def stalled_headers(port: int) -> socket.socket:
    """A connection that sends half a request line's headers and then nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/captions HTTP/1.1\r\nHost: x\r\nContent-Le")
    return sock


@pytest.mark.server
def test_slow_clients_time_out_without_holding_workers(served_package, tmp_path):
    deadline = 2.0
    with ProcessServer(
        served_package, tmp_path / "log", request_timeout_seconds=deadline
    ) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            baseline = statistics.median(
                _timed(lambda: client.post("/v1/captions", files={"image": ("p", PHOTOS[0])}))
                for _ in range(11)
            )
            stalled = [stalled_headers(server.port) for _ in range(30)]
            slow: list[tuple[bytes, float]] = []
            threads = [
                threading.Thread(target=lambda: slow.append(trickle(server.port, 30)))
                for _ in range(30)
            ]
            for thread in threads:
                thread.start()
            time.sleep(0.5)  # every slow client is mid-body now
            served = []
            for i in range(10):
                started = time.perf_counter()
                answer = client.post("/v1/captions", files={"image": ("p", PHOTOS[i % 7])})
                served.append((answer.status_code, time.perf_counter() - started))
            for thread in threads:
                thread.join(40)
            after = client.get("/v2/health/ready").status_code
        for sock in stalled:
            sock.close()
    assert [status for status, _ in served] == [200] * 10
    assert max(took for _, took in served) < 20 * baseline + 0.5, (served, baseline)
    assert len(slow) == 30
    for answer, took in slow:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"body_timeout" in answer and b"connection: close" in answer.lower()
        assert deadline <= took < deadline + 5  # answered and closed, not held
    assert after == 200


def _timed(call) -> float:
    started = time.perf_counter()
    assert call().status_code == 200
    return time.perf_counter() - started


@pytest.mark.server
def test_sigterm_under_overload_finishes_every_admitted_request(served_package, tmp_path):
    capacity = 4
    # Admitted images wait 0.5 s for a batch, so the queue is full when the signal comes.
    server = ProcessServer(
        served_package, tmp_path / "log", max_queue=capacity, max_queue_delay_ms=500
    )
    outcomes: list[tuple[str, float, float]] = []  # (status or error, started, ended)
    lock = threading.Lock()
    stopping = threading.Event()

    def client_loop(index: int) -> None:
        # A fresh connection per request: a reused idle one would be closed under it.
        while True:
            started = time.monotonic()
            try:
                answer = httpx.post(
                    f"{server.url}/v1/captions",
                    files={"image": ("p", PHOTOS[index % 7])},
                    timeout=60,
                )
                outcome = str(answer.status_code)
            except httpx.ConnectError:
                outcome = "refused connection"
            except httpx.TransportError as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes.append((outcome, started, time.monotonic()))
            if outcome == "refused connection" and stopping.is_set():
                return

    with server:
        server.wait_ready()
        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(10 * capacity)]
        for thread in threads:
            thread.start()
        server.wait_in_flight(capacity)
        signalled = time.monotonic()
        stopping.set()
        code = server.stop()
        for thread in threads:
            thread.join(60)
        logs = server.logs()
    answered = [o for o in outcomes if o[0].isdigit()]
    assert {status for status, _, _ in answered} <= {"200", "429"}
    # Every request the service admitted was answered: as many 200s reached the clients
    # as the service logged, and the ones in flight at the signal finished after it.
    served = sum(1 for status, _, _ in answered if status == "200")
    logged = sum(1 for e in logs if e.get("logger") == "inference.access" and e["status"] == 200)
    assert served == logged > 0
    finished_after = [o for o in answered if o[0] == "200" and o[1] < signalled < o[2]]
    assert len(finished_after) >= capacity
    # What did not get an answer never reached the application: the listener was closed.
    unanswered = {o[0] for o in outcomes if not o[0].isdigit()}
    assert unanswered <= {"refused connection", "ReadError", "RemoteProtocolError"}, unanswered
    assert code in (0, -signal.SIGTERM)
    messages = [e["message"] for e in logs]
    assert "Application shutdown complete." in messages
    assert not [e for e in logs if e["level"] in ("error", "critical")]
    assert not [m for m in messages if "still in flight" in m]


def feedback(request_id: str, rating: str, created: datetime) -> Feedback:
    return make_feedback(
        request_id=request_id,
        model_name="shapes-attention",
        model_version="v1",
        caption="a red square above a blue circle",
        rating=rating,
        correction="a red square" if rating == "down" else None,
        image_sha256=hashlib.sha256(request_id.encode()).hexdigest(),
        ui_version="0.1.0",
        created=created,
    )


def test_feedback_survives_the_database_going_away_mid_stream(tmp_path):
    """Four page sessions send 30 feedbacks each (a third of them changed a moment later)
    while the database stops a quarter of the way in and comes back at three quarters:
    every record arrives exactly once, in its latest version."""
    local = LocalMongo(tmp_path / "mongo", port=free_port())
    uri = local.start()
    store = FeedbackStore(uri, "reliability", timeout_ms=300)
    store.ensure_indexes()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    flusher = Flusher(outbox, store, interval=0.1)
    flusher.start()
    sessions, each = 4, 30
    latest: dict[str, str] = {}
    outcomes: list[str] = []
    lock = threading.Lock()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def session(n: int) -> None:
        for i in range(each):
            request_id = f"req-{n}-{i}-{uuid.uuid4().hex[:8]}"
            versions = [feedback(request_id, "up", t0 + timedelta(minutes=i))]
            if i % 3 == 0:  # changed its mind: a newer version of the same record
                versions.append(feedback(request_id, "down", t0 + timedelta(minutes=i, seconds=5)))
            for version in versions:
                outcome = submit(version, store, outbox)
                with lock:
                    outcomes.append(outcome)
                    latest[request_id] = version.rating
            time.sleep(0.02)

    try:
        threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
        for thread in threads:
            thread.start()
        total = sessions * (each + each // 3)
        wait_until(lambda: len(outcomes) >= total // 4, 60, what="a quarter submitted")
        local.stop()
        wait_until(lambda: len(outcomes) >= 3 * total // 4, 120, what="three quarters")
        local.start()  # same data directory, same port
        for thread in threads:
            thread.join(120)
        wait_until(lambda: outbox.depth() == 0, 60, what="the outbox to drain")
        flusher.stop(10)
        assert "stored" in outcomes and "queued" in outcomes  # the outage really came mid-way
        records = MongoClient(uri, tz_aware=True)["reliability"]["feedback"]
        stored = {d["request_id"]: d["rating"] for d in records.find({}, {"_id": 0})}
        assert records.count_documents({}) == len(latest) == sessions * each
        assert stored == latest
    finally:
        flusher.stop(10)
        outbox.close()
        store.close()
        local.stop()
