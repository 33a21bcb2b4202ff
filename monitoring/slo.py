"""The service level objectives, and the multi-window burn-rate policy derived from them.

One place for the numbers: the rules are generated from these, docs/slo.md explains
them, and the promtool unit tests exercise the thresholds they produce.
"""

from __future__ import annotations

from dataclasses import dataclass

# Requests that ask for a caption; health, metadata and /metrics do not count.
CAPTION_ROUTES = "/v1/captions|/v2/models/.+/infer"
# Statuses that mean the user got no caption through no fault of their request:
# server errors, and load shed with 429 (the service chose not to serve).
BAD_STATUS = "5..|429"
# Execution providers that mean "this replica runs on a GPU".
GPU_PROVIDERS = "CUDAExecutionProvider|TensorrtExecutionProvider"


@dataclass(frozen=True)
class LatencyTarget:
    """``objective`` of caption requests answered within ``threshold_seconds``."""

    deployment: str
    threshold_seconds: float
    objective: float

    @property
    def le(self) -> str:
        """The histogram bucket label for the threshold, as prometheus_client writes it."""
        return repr(float(self.threshold_seconds))


AVAILABILITY_OBJECTIVE = 0.999
LATENCY = {
    "gpu": LatencyTarget("gpu", threshold_seconds=0.25, objective=0.99),
    "cpu": LatencyTarget("cpu", threshold_seconds=1.0, objective=0.99),
}
# Both latency objectives are 99%; the alert uses one budget for both.
LATENCY_OBJECTIVE = 0.99
assert all(t.objective == LATENCY_OBJECTIVE for t in LATENCY.values())
SLO_PERIOD = "30d"


@dataclass(frozen=True)
class BurnWindow:
    """Alert when the budget burns ``factor`` times too fast over both windows.

    The long window says the burn is significant, the short one that it is still
    happening (so the alert resets soon after a fix). Factors and windows are the
    Google SRE workbook's (chapter 5) for a 30-day period.
    """

    long: str
    short: str
    factor: float
    severity: str

    @property
    def budget_share(self) -> str:
        """The share of a 30-day budget spent when the long window burns at ``factor``."""
        hours = {"1h": 1, "6h": 6, "1d": 24, "3d": 72}[self.long]
        return f"{self.factor * hours / (30 * 24):.0%}"


BURN_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "critical"),
    BurnWindow("6h", "30m", 6.0, "critical"),
    BurnWindow("1d", "2h", 3.0, "warning"),
    BurnWindow("3d", "6h", 1.0, "warning"),
)
RATE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
