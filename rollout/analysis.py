"""From two versions' numbers to signals and a verdict: promote, hold or roll back.

Each signal compares the canary with stable under one rule and passes, fails, or
has too few samples to say. The verdict: HOLD while either version has fewer requests
than the minimum; else ROLLBACK if any signal fails; else HOLD if any lacks samples;
else PROMOTE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rollout.promql import Prometheus, Queries
from rollout.settings import RolloutSettings


class Verdict(StrEnum):
    """What to do with the canary; ``exit_code`` is the command's exit status."""

    PROMOTE = "promote"
    HOLD = "hold"
    ROLLBACK = "rollback"

    @property
    def exit_code(self) -> int:
        return {"promote": 0, "hold": 3, "rollback": 4}[self.value]


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT = "insufficient"  # too few samples (or none) to compare
    SKIPPED = "skipped"  # not required by the settings (min_feedback 0, no feedback)


@dataclass(frozen=True)
class VersionMetrics:
    """One version's numbers over the window; ``None`` where Prometheus had no data."""

    requests: float = 0.0
    error_ratio: float | None = None
    rejected_ratio: float | None = None
    latency_p99: float | None = None
    captions: float = 0.0
    log_prob_median: float | None = None
    feedback: float = 0.0
    thumbs_up_rate: float | None = None


@dataclass(frozen=True)
class Signal:
    """One comparison: both values, the rule in words, and how it came out."""

    name: str
    unit: str
    stable: float | None
    canary: float | None
    rule: str
    status: Status
    reason: str = ""


@dataclass(frozen=True)
class Analysis:
    """The signals and the verdict, with the reasons for it."""

    stable: str
    canary: str
    window: str
    verdict: Verdict
    reasons: list[str]
    signals: list[Signal]
    metrics: dict[str, VersionMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``--json`` prints it."""
        return {
            "stable": self.stable,
            "canary": self.canary,
            "window": self.window,
            "verdict": self.verdict.value,
            "exit_code": self.verdict.exit_code,
            "reasons": self.reasons,
            "signals": [{**asdict(s), "status": s.status.value} for s in self.signals],
            "metrics": {k: asdict(v) for k, v in self.metrics.items()},
        }


def fetch(prometheus: Prometheus, version: str, window: str, routes: str) -> VersionMetrics:
    """Every number of VERSION over WINDOW from PROMETHEUS.

    Raises:
        PrometheusError: as :meth:`Prometheus.scalar`.
    """
    q = Queries(version, window, routes)
    return VersionMetrics(
        requests=prometheus.scalar(q.requests()) or 0.0,
        error_ratio=prometheus.scalar(q.ratio("5..")),
        rejected_ratio=prometheus.scalar(q.ratio("429")),
        latency_p99=prometheus.scalar(q.latency_p99()),
        captions=prometheus.scalar(q.captions()) or 0.0,
        log_prob_median=prometheus.scalar(q.log_prob_median()),
        feedback=prometheus.scalar(q.feedback()) or 0.0,
        thumbs_up_rate=prometheus.scalar(q.thumbs_up_rate()),
    )


def _ratio_rule(name: str, s: float | None, c: float | None, margin: float, floor: float) -> Signal:
    rule = f"canary <= stable + {margin:.2%} or canary < {floor:.2%}"
    if s is None or c is None:
        return Signal(name, "ratio", s, c, rule, Status.INSUFFICIENT, f"{name}: no data")
    if c > s + margin and c >= floor:
        reason = f"{name} of the canary is {c:.2%}, stable's {s:.2%} (allowed: +{margin:.2%})"
        return Signal(name, "ratio", s, c, rule, Status.FAIL, reason)
    return Signal(name, "ratio", s, c, rule, Status.PASS)


def _latency_rule(s: float | None, c: float | None, cfg: RolloutSettings) -> Signal:
    factor, slack = cfg.latency_p99_factor, cfg.latency_p99_slack_seconds
    rule = f"canary <= stable x {factor:g} + {slack:g} s"
    if s is None or c is None:
        return Signal("p99 latency", "s", s, c, rule, Status.INSUFFICIENT, "p99 latency: no data")
    if c > s * factor + slack:
        reason = f"p99 latency of the canary is {c:.3f} s, stable's {s:.3f} s"
        return Signal("p99 latency", "s", s, c, rule, Status.FAIL, reason)
    return Signal("p99 latency", "s", s, c, rule, Status.PASS)


def _lower_is_worse(
    name: str,
    unit: str,
    values: tuple[float | None, float | None],
    samples: tuple[float, float],
    minimum: int,
    margin: float,
    show: Callable[[float], str],
) -> Signal:
    """A rule for a signal the canary may lose at most MARGIN of, given enough samples."""
    s, c = values
    rule = f"canary >= stable - {show(margin)} (each >= {minimum} samples)"
    if min(samples) < minimum or s is None or c is None:
        if minimum == 0 and (s is None or c is None):
            return Signal(name, unit, s, c, rule, Status.SKIPPED)
        have = ", ".join(f"{v} {n:.0f}" for v, n in zip(("stable", "canary"), samples, strict=True))
        reason = f"{name}: too few samples ({have}; {minimum} needed)"
        return Signal(name, unit, s, c, rule, Status.INSUFFICIENT, reason)
    if c < s - margin:
        reason = f"{name} of the canary is {show(c)}, stable's {show(s)} (allowed: -{show(margin)})"
        return Signal(name, unit, s, c, rule, Status.FAIL, reason)
    return Signal(name, unit, s, c, rule, Status.PASS)


def signals(stable: VersionMetrics, canary: VersionMetrics, cfg: RolloutSettings) -> list[Signal]:
    """Every signal of the canary against stable under the settings' rules."""
    requests_rule = f"each >= {cfg.min_requests}"
    enough = min(stable.requests, canary.requests) >= cfg.min_requests
    requests = Signal(
        "requests",
        "count",
        stable.requests,
        canary.requests,
        requests_rule,
        Status.PASS if enough else Status.INSUFFICIENT,
        "" if enough else _too_few(stable.requests, canary.requests, cfg.min_requests),
    )
    return [
        requests,
        _ratio_rule(
            "5xx ratio",
            stable.error_ratio,
            canary.error_ratio,
            cfg.error_ratio_margin,
            cfg.error_ratio_floor,
        ),
        _ratio_rule(
            "429 ratio",
            stable.rejected_ratio,
            canary.rejected_ratio,
            cfg.rejected_ratio_margin,
            cfg.rejected_ratio_floor,
        ),
        _latency_rule(stable.latency_p99, canary.latency_p99, cfg),
        _lower_is_worse(
            "median log-probability",
            "nats",
            (stable.log_prob_median, canary.log_prob_median),
            (stable.captions, canary.captions),
            cfg.min_captions,
            cfg.log_prob_margin,
            lambda v: f"{v:.2f}",
        ),
        _lower_is_worse(
            "thumbs-up rate",
            "ratio",
            (stable.thumbs_up_rate, canary.thumbs_up_rate),
            (stable.feedback, canary.feedback),
            cfg.min_feedback,
            cfg.thumbs_up_margin,
            lambda v: f"{v:.1%}",
        ),
    ]


def _too_few(stable: float, canary: float, minimum: int) -> str:
    have = f"stable {stable:.0f}, canary {canary:.0f}"
    return f"too few requests to decide ({have}; {minimum} needed)"


def decide(
    stable: VersionMetrics,
    canary: VersionMetrics,
    cfg: RolloutSettings,
    names: tuple[str, str] = ("stable", "canary"),
) -> Analysis:
    """The verdict on the canary, from both versions' numbers.

    Args:
        stable: the stable version's numbers.
        canary: the canary's.
        cfg: the thresholds.
        names: the two versions, for the report.
    """
    found = signals(stable, canary, cfg)
    requests, rest = found[0], found[1:]
    failed = [s.reason for s in rest if s.status is Status.FAIL]
    lacking = [s.reason for s in rest if s.status is Status.INSUFFICIENT]
    if requests.status is not Status.PASS:
        verdict, reasons = Verdict.HOLD, [requests.reason]
    elif failed:
        verdict, reasons = Verdict.ROLLBACK, failed
    elif lacking:
        verdict, reasons = Verdict.HOLD, lacking
    else:
        verdict, reasons = Verdict.PROMOTE, ["every signal passes with enough samples"]
    return Analysis(
        stable=names[0],
        canary=names[1],
        window=cfg.window,
        verdict=verdict,
        reasons=reasons,
        signals=found,
        metrics={"stable": stable, "canary": canary},
    )


def analyze(stable: str, canary: str, cfg: RolloutSettings, at: float | None = None) -> Analysis:
    """Ask Prometheus for both versions' numbers (at one instant) and decide.

    Args:
        stable: the stable model version.
        canary: the canary's model version.
        cfg: where Prometheus is, the window and the thresholds.
        at: the evaluation time (Unix seconds); default: now, the same for every query.

    Raises:
        PrometheusError: Prometheus unreachable or a query failed.
    """
    import time

    prometheus = Prometheus(cfg.prometheus_url, cfg.timeout_seconds, at or time.time())
    return decide(
        fetch(prometheus, stable, cfg.window, cfg.routes),
        fetch(prometheus, canary, cfg.window, cfg.routes),
        cfg,
        (stable, canary),
    )
