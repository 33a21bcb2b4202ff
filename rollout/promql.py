"""The PromQL of canary analysis, and the one call to Prometheus's HTTP API that runs it.

The service's series carry no version label: each scrape target (``job``,
``instance``) is one pod, and its ``captioner_model_info`` says which version it
serves. Every service query multiplies by that gauge on the target, which keeps only
the targets serving the version and copies the ``version`` label on (``group_left``).
Feedback counters carry ``model_version`` themselves, from the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

REQUESTS = "captioner_requests_total"
DURATION_BUCKETS = "captioner_request_duration_seconds_bucket"
LOG_PROB = "captioner_caption_log_probability"
MODEL_INFO = "captioner_model_info"
FEEDBACK = "captioner_feedback_total"
THUMBS_UP = "up"  # feedback.record.RATINGS: "up" or "down"


class PrometheusError(RuntimeError):
    """Prometheus could not be reached, or refused or failed a query; the message says which."""


def quote(value: str) -> str:
    """VALUE as a PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Queries:
    """The queries for one version over one window.

    Attributes:
        version: the model version (``captioner_model_info{version}``, feedback's
            ``model_version``).
        window: a Prometheus range such as ``10m``.
        routes: regex of the route templates that count.
    """

    version: str
    window: str
    routes: str

    def _of_version(self, expr: str) -> str:
        """EXPR (per target) restricted to the targets serving this version."""
        info = f"{MODEL_INFO}{{version={quote(self.version)}}}"
        return (
            f"{expr} * on (job, instance) group_left (version) "
            f"max by (job, instance, version) ({info})"
        )

    def _requests(self, function: str, status: str | None = None) -> str:
        matchers = f"route=~{quote(self.routes)}"
        if status is not None:
            matchers += f", status=~{quote(status)}"
        return f"sum({self._of_version(f'{function}({REQUESTS}{{{matchers}}}[{self.window}])')})"

    def requests(self) -> str:
        """Requests answered in the window."""
        return self._requests("increase")

    def ratio(self, status: str) -> str:
        """The share of requests answered with STATUS (a regex such as ``5..``)."""
        return f"({self._requests('rate', status)} or vector(0)) / {self._requests('rate')}"

    def latency_p99(self) -> str:
        """The 99th percentile of request duration, from the histogram's buckets."""
        buckets = f"rate({DURATION_BUCKETS}{{route=~{quote(self.routes)}}}[{self.window}])"
        return f"histogram_quantile(0.99, sum by (le) ({self._of_version(buckets)}))"

    def captions(self) -> str:
        """Captions produced in the window (each observes its log-probability)."""
        return f"sum({self._of_version(f'increase({LOG_PROB}_count[{self.window}])')})"

    def log_prob_median(self) -> str:
        """The median log-probability of the best caption, from the histogram's buckets.

        Not the mean from ``_sum``: the observations are negative, so prometheus_client
        leaves ``_sum`` out of a single process's exposition (OpenMetrics forbids a
        falling sum), and where it is there (multiprocess) ``rate`` would take each fall
        for a counter reset. The buckets are plain counters in both.
        """
        buckets = f"rate({LOG_PROB}_bucket[{self.window}])"
        return f"histogram_quantile(0.5, sum by (le) ({self._of_version(buckets)}))"

    def _feedback(self, function: str, rating: str | None = None) -> str:
        matchers = f"model_version={quote(self.version)}"
        if rating is not None:
            matchers += f", rating={quote(rating)}"
        return f"sum({function}({FEEDBACK}{{{matchers}}}[{self.window}]))"

    def feedback(self) -> str:
        """Feedback given on this version's captions in the window."""
        return self._feedback("increase")

    def thumbs_up_rate(self) -> str:
        """The share of that feedback that is a thumbs-up."""
        return f"({self._feedback('rate', THUMBS_UP)} or vector(0)) / {self._feedback('rate')}"


class Prometheus:
    """Instant queries against one Prometheus server, all at one evaluation time."""

    def __init__(self, url: str, timeout: float = 10.0, at: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.at = at

    def scalar(self, expr: str) -> float | None:
        """The single value EXPR evaluates to; ``None`` when it has none (no data, or NaN).

        Raises:
            PrometheusError: unreachable, an answer that is not a success, or more than
                one series where one was expected.
        """
        params: dict[str, str | float] = {"query": expr}
        if self.at is not None:
            params["time"] = self.at
        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=self.timeout)
        except httpx.TransportError as exc:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable: {exc}") from exc
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") or answer.text[:200] or answer.reason_phrase
            raise PrometheusError(
                f"Prometheus at {self.url} answered {answer.status_code} to {expr!r}: {detail}"
            )
        result = body["data"]["result"]
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr!r} returned {len(result)} series where one was expected")
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value
