"""Prometheus recording and alerting rules, derived from the SLOs in ``monitoring.slo``.

Every alert keeps its *signals*: the sub-expressions whose values it compares. The
integration test asks a real Prometheus for each signal (they must return data while
the alert's own expression, a comparison, may rightly return nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitoring.slo import (
    AVAILABILITY_OBJECTIVE,
    BAD_STATUS,
    BURN_WINDOWS,
    CAPTION_ROUTES,
    GPU_PROVIDERS,
    LATENCY,
    LATENCY_OBJECTIVE,
    RATE_WINDOWS,
    BurnWindow,
)

RUNBOOK_BASE = "https://github.com/captioner/captioner/blob/main/docs/runbooks"
# Scrape jobs of the stack: the chart's Services are named <release>-captioner-*.
JOBS = ".*captioner.*"

CAPTIONS = f'route=~"{CAPTION_ROUTES}"'
ON_GPU = f'max by (job) (captioner_model_info{{provider=~"{GPU_PROVIDERS}"}})'


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``signals`` are the expressions it compares (see module doc)."""

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    runbook: str
    signals: tuple[str, ...]
    for_: str = "0m"
    labels: dict[str, str] = field(default_factory=dict)


def _ratio(numerator: str, denominator: str) -> str:
    return f"{numerator}\n/\n{denominator}"


def _slow_ratio(window: str) -> str:
    """Share of caption requests slower than their deployment's latency threshold."""

    def slow(threshold: str) -> str:
        within = (
            "sum by (job) (rate(captioner_request_duration_seconds_bucket"
            f'{{{CAPTIONS}, le="{threshold}"}}[{window}]))'
        )
        total = (
            f"sum by (job) (rate(captioner_request_duration_seconds_count{{{CAPTIONS}}}[{window}]))"
        )
        return f"(1 - {within} / {total})"

    return (
        f"{slow(LATENCY['gpu'].le)}\n  and on (job) {ON_GPU}\n"
        f"or\n{slow(LATENCY['cpu'].le)}\n  unless on (job) {ON_GPU}"
    )


def recording_rules() -> list[Recording]:
    rules = []
    for w in RATE_WINDOWS:
        requests = f"sum by (job) (rate(captioner_requests_total{{{CAPTIONS}}}[{w}]))"
        bad = (
            "sum by (job) (rate(captioner_requests_total"
            f'{{{CAPTIONS}, status=~"{BAD_STATUS}"}}[{w}]))'
        )
        rules.append(Recording(f"captioner:requests:rate{w}", requests))
        rules.append(Recording(f"captioner:request_errors:ratio_rate{w}", _ratio(bad, requests)))
        rules.append(Recording(f"captioner:request_slow:ratio_rate{w}", _slow_ratio(w)))
    rules.append(
        Recording(
            "captioner:queue_saturation:ratio",
            _ratio(
                "sum by (job) (captioner_queue_depth)", "sum by (job) (captioner_queue_capacity)"
            ),
        )
    )

    def feedback(selector: str, window: str, by: str = "model_version") -> str:
        grouping = f"sum by ({by}) " if by else "sum "
        return f"{grouping}(rate(captioner_feedback_total{selector}[{window}]))"

    for rating in ("up", "down"):
        rules.append(
            Recording(
                f"captioner:feedback_{rating}:ratio_rate1h",
                _ratio(feedback(f'{{rating="{rating}"}}', "1h"), feedback("", "1h")),
            )
        )
    rules.append(
        Recording(
            "captioner:feedback_corrected:ratio_rate1h",
            _ratio(feedback('{corrected="true"}', "1h"), feedback("", "1h")),
        )
    )
    rules.append(
        Recording(
            "captioner:feedback_down:ratio_rate7d",
            _ratio(feedback('{rating="down"}', "7d", by=""), feedback("", "7d", by="")),
        )
    )
    return rules


def _budget(threshold: float) -> str:
    return f"{threshold:.6g}"


def _burn(series: str, windows: tuple[BurnWindow, ...], budget: float) -> tuple[str, list[str]]:
    parts, signals = [], []
    for w in windows:
        limit = _budget(w.factor * budget)
        long, short = f"{series}{w.long}", f"{series}{w.short}"
        parts.append(f"(\n  {long} > {limit}\nand\n  {short} > {limit}\n)")
        signals += [long, short]
    return "\nor\n".join(parts), signals


def _burn_alerts(slo: str, series: str, budget: float, what: str, runbook: str) -> list[Alert]:
    alerts = []
    for speed, severity in (("Fast", "critical"), ("Slow", "warning")):
        windows = tuple(w for w in BURN_WINDOWS if w.severity == severity)
        expr, signals = _burn(series, windows, budget)
        spent = " or ".join(f"{w.budget_share} in {w.long}" for w in windows)
        alerts.append(
            Alert(
                name=f"Captioner{slo}BudgetBurn{speed}",
                expr=expr,
                severity=severity,
                for_="2m" if speed == "Fast" else "15m",
                summary=f"{what} error budget of {{{{ $labels.job }}}} is burning {speed.lower()}",
                description=(
                    f"At this rate the 30-day {what.lower()} budget would lose {spent}. "
                    f"Long-window ratio is {{{{ $value | humanizePercentage }}}}."
                ),
                runbook=runbook,
                signals=tuple(signals),
                labels={"slo": slo.lower()},
            )
        )
    return alerts


def alerts() -> list[Alert]:
    result = _burn_alerts(
        "Availability",
        "captioner:request_errors:ratio_rate",
        1 - AVAILABILITY_OBJECTIVE,
        "Availability",
        "availability-budget-burn",
    )
    result += _burn_alerts(
        "Latency",
        "captioner:request_slow:ratio_rate",
        1 - LATENCY_OBJECTIVE,
        "Latency",
        "latency-budget-burn",
    )
    saturation = "captioner:queue_saturation:ratio"
    fallback = (
        f'captioner_model_info{{requested_provider=~"{GPU_PROVIDERS}", '
        'provider="CPUExecutionProvider"}'
    )
    # A job that never answered a caption request has no rate series at all: count it as 0.
    traffic = "(captioner:requests:rate30m or on (job) 0 * max by (job) (captioner_model_ready))"
    ready = "min by (job, instance) (captioner_model_ready)"
    up = f'up{{job=~"{JOBS}"}}'
    down_1h = "captioner:feedback_down:ratio_rate1h"
    down_7d = "captioner:feedback_down:ratio_rate7d"
    votes = "sum by (model_version) (increase(captioner_feedback_total[1h]))"
    depth = "min_over_time(captioner_feedback_outbox_depth[15m])"
    delivered = "increase(captioner_feedback_delivered_total[15m])"
    result += [
        Alert(
            name="CaptionerQueueSaturated",
            expr=f"{saturation} > 0.8",
            for_="10m",
            severity="warning",
            summary="{{ $labels.job }} queue is over 80% full",
            description=(
                "Images admitted are {{ $value | humanizePercentage }} of max_queue for 10 minutes;"
                " new requests will soon get 429. Add replicas or capacity."
            ),
            runbook="queue-saturated",
            signals=(saturation,),
        ),
        Alert(
            name="CaptionerGPUFallbackToCPU",
            expr=fallback,
            for_="5m",
            severity="critical",
            summary=(
                "{{ $labels.instance }} asked for {{ $labels.requested_provider }} but runs on CPU"
            ),
            description=(
                "Model {{ $labels.model }} {{ $labels.version }} fell back to"
                " CPUExecutionProvider: captions are an order of magnitude slower."
            ),
            runbook="gpu-fallback-to-cpu",
            signals=("captioner_model_info",),
        ),
        Alert(
            name="CaptionerNoTraffic",
            expr=f"{traffic} == 0\nand on (job)\nmax by (job) (captioner_model_ready) == 1",
            for_="30m",
            severity="warning",
            summary="{{ $labels.job }} has answered no caption request for 30 minutes",
            description=(
                "The service is ready but receives no caption requests: check the route to it."
            ),
            runbook="no-traffic",
            signals=(traffic, "max by (job) (captioner_model_ready)"),
        ),
        Alert(
            name="CaptionerModelNotReady",
            expr=f"{ready} == 0",
            for_="5m",
            severity="critical",
            summary="{{ $labels.instance }} of {{ $labels.job }} is not ready",
            description="The model did not load or warm up; /v2/health/ready says why.",
            runbook="model-not-ready",
            signals=(ready,),
        ),
        Alert(
            name="CaptionerTargetDown",
            expr=f"{up} == 0",
            for_="5m",
            severity="critical",
            summary="Prometheus cannot scrape {{ $labels.instance }} of {{ $labels.job }}",
            description="The process is down or its /metrics port is unreachable.",
            runbook="target-down",
            signals=(up,),
        ),
        Alert(
            name="CaptionerThumbsDownSpike",
            expr=(
                f"{down_1h}\n  > on () group_left () clamp_min(2 * {down_7d}, 0.2)\n"
                f"and on (model_version)\n{votes} >= 20"
            ),
            for_="15m",
            severity="warning",
            summary="Thumbs-down rate of model version {{ $labels.model_version }} has spiked",
            description=(
                "{{ $value | humanizePercentage }} of the last hour's ratings are thumbs-down,"
                " over twice the 7-day rate. A new model version is the usual cause."
            ),
            runbook="thumbs-down-spike",
            signals=(down_1h, down_7d, votes),
        ),
        Alert(
            name="CaptionerFeedbackOutboxNotDraining",
            expr=f"{depth} > 0\nand on (job, instance)\n{delivered} == 0",
            for_="5m",
            severity="warning",
            summary="Feedback is waiting in the outbox of {{ $labels.instance }}",
            description=(
                "The outbox has held feedback for 15 minutes and delivered none: the database is"
                " unreachable from the UI. Nothing is lost while the outbox's disk lasts."
            ),
            runbook="feedback-outbox-not-draining",
            signals=(depth, delivered),
        ),
    ]
    return result


def recording_file() -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": "captioner.recording",
                "rules": [{"record": r.record, "expr": r.expr} for r in recording_rules()],
            }
        ]
    }


def alerting_file() -> dict[str, Any]:
    rules = []
    for a in alerts():
        rule: dict[str, Any] = {"alert": a.name, "expr": a.expr}
        if a.for_ != "0m":
            rule["for"] = a.for_
        rule["labels"] = {"severity": a.severity, **a.labels}
        rule["annotations"] = {
            "summary": a.summary,
            "description": a.description,
            "runbook_url": f"{RUNBOOK_BASE}/{a.runbook}.md",
        }
        rules.append(rule)
    return {"groups": [{"name": "captioner.alerts", "rules": rules}]}
