"""Overload scenario for locust: many clients captioning real photos, no retries.

Every client posts one of the seven real photos to ``/v1/captions`` as soon as its
last request is answered (no think time), so the number of clients is the offered
concurrency. Against a service admitting ``CAPTIONER_MAX_QUEUE`` images at once,
``-u`` ten times that is ten times its capacity. Outcomes are reported under two
names, so locust's own table gives each its latency:

- ``POST /v1/captions [admitted]``: 200 answers;
- ``POST /v1/captions [refused]``: 429 answers that carry ``Retry-After`` (counted as
  successes: refusing fast is the service doing its job);

anything else (a 5xx, a 429 without ``Retry-After``, a dropped connection, another
status) is a failure, and the run exits with status 1. When the clients stop, the time
until a request is served again is printed (over 10 s fails the run).

    captioner serve --model runs/demo/package --port 8000   # with CAPTIONER_MAX_QUEUE=4
    locust -f benchmarks/load/locustfile.py --headless -u 40 -r 40 -t 60s \\
        --host http://127.0.0.1:8000 --csv runs/load/overload --only-summary

``CAPTIONER_LOAD_PHOTOS`` names another folder of JPEGs to send.
"""

from __future__ import annotations

import os
import time
from itertools import count
from pathlib import Path

import requests
from locust import HttpUser, events, task

PHOTOS_DIR = Path(
    os.environ.get(
        "CAPTIONER_LOAD_PHOTOS",
        Path(__file__).resolve().parents[3] / "shared" / "data" / "real_photos",
    )
)
PHOTOS = [p.read_bytes() for p in sorted(PHOTOS_DIR.glob("*.jpg"))]
ADMITTED = "POST /v1/captions [admitted]"
REFUSED = "POST /v1/captions [refused]"
_turn = count()


class CaptionClient(HttpUser):
    """One client: a photo, the answer, the next photo."""

    def on_start(self) -> None:
        if not PHOTOS:
            raise RuntimeError(f"no *.jpg in {PHOTOS_DIR} (set CAPTIONER_LOAD_PHOTOS)")

    @task
    def caption(self) -> None:
        photo = PHOTOS[next(_turn) % len(PHOTOS)]
        with self.client.post(
            "/v1/captions",
            files={"image": ("photo.jpg", photo, "image/jpeg")},
            name=ADMITTED,
            catch_response=True,
            timeout=60,
        ) as response:
            if response.status_code == 200:
                response.success()
            elif response.status_code == 429 and response.headers.get("Retry-After"):
                response.request_meta["name"] = REFUSED
                response.success()
            elif response.status_code == 429:
                response.failure("429 without Retry-After")
            else:
                response.failure(f"status {response.status_code}: {response.text[:200]}")


@events.test_stop.add_listener
def _recovery(environment, **_kwargs) -> None:
    """Once the clients stop: how long until a request is served again.

    The images admitted last are still being captioned (their clients are gone, the
    service finishes them), so the first tries may still be refused; recovery is the
    time to the first 200. More than 10 s fails the run.
    """
    started = time.perf_counter()
    refused = 0
    while (took := time.perf_counter() - started) < 10:
        answer = requests.post(
            f"{environment.host}/v1/captions", files={"image": ("p.jpg", PHOTOS[0])}, timeout=60
        )
        if answer.status_code == 200:
            print(f"recovery: served {took * 1000:.0f} ms after the load stopped "
                  f"({refused} refused meanwhile)")  # fmt: skip
            return
        refused += 1
        time.sleep(0.01)
    print("recovery: nothing served within 10 s of the load stopping")
    environment.process_exit_code = 1


@events.quitting.add_listener
def _exit_status(environment, **_kwargs) -> None:
    """Any failure fails the run; print the two outcomes' figures for the record."""
    stats = environment.stats
    admitted, refused = stats.get(ADMITTED, "POST"), stats.get(REFUSED, "POST")
    total = admitted.num_requests + refused.num_requests
    if total:
        print(
            f"overload: {total} requests, {admitted.num_requests - admitted.num_failures} admitted "
            f"(p50 {admitted.get_response_time_percentile(0.5):.0f} ms, "
            f"p99 {admitted.get_response_time_percentile(0.99):.0f} ms), "
            f"{refused.num_requests} refused with 429 ({refused.num_requests / total:.1%}), "
            f"{stats.total.num_failures} failures"
        )
    if stats.total.num_failures:
        environment.process_exit_code = 1
