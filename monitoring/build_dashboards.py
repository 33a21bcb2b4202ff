"""The Grafana dashboards, built with grafana-foundation-sdk.

Four dashboards, each with a Prometheus data-source variable and stable uids:
overview (traffic, errors, latency, queue, batching, saturation), model (provider,
version, caption statistics, fallback), feedback (ratings per model version,
corrections, outbox), and GPU (NVIDIA DCGM exporter series next to the service's).
Every panel states its unit. Queries use ``$job`` and ``$__rate_interval``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import prometheus as prometheus_model
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

from monitoring.slo import (
    AVAILABILITY_OBJECTIVE,
    BAD_STATUS,
    BURN_WINDOWS,
    CAPTION_ROUTES,
    LATENCY_OBJECTIVE,
)

# The burn-rate panels divide by the budgets of monitoring/slo.py, as the alerts do.
ERROR_BUDGET = 1 - AVAILABILITY_OBJECTIVE
LATENCY_BUDGET = 1 - LATENCY_OBJECTIVE
PAGE = BURN_WINDOWS[0]  # the fastest window: it pages

PER_GPU = "{{Hostname}} gpu{{gpu}}"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job=~"$job"'
CAPTIONS = f'{JOB}, route=~"{CAPTION_ROUTES}"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .expr(query.expr)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .legend_format(query.legend or "__auto")
    )
    if query.instant:
        target = target.instant().format(prometheus_model.PromQueryFormat.TABLE)
    return target


Panel = TypeVar("Panel", timeseries.Panel, stat.Panel, table.Panel)


def _targets(panel: Panel, queries: list[Query]) -> Panel:
    for i, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + i)))
    return panel


def graph(
    title: str, unit: str, queries: list[Query], description: str = "", w: int = 12, h: int = 8
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .fill_opacity(10)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    return _targets(panel, queries)


def number(
    title: str, unit: str, query: Query, description: str = "", w: int = 6, h: int = 4
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(h)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        .graph_mode(common.BigValueGraphMode.AREA)
    )
    return _targets(panel, [query])


def grid(title: str, unit: str, query: Query, description: str = "", w: int = 24) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(w)
        .height(6)
    )
    return _targets(panel, [query])


def quantiles(metric: str, selector: str, by: str = "") -> list[Query]:
    grouping = f"{by}, le" if by else "le"
    return [
        Query(
            f"histogram_quantile({q}, sum by ({grouping}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in (0.5, 0.9, 0.99)
    ]


def _variables(board: dash.Dashboard, job_metric: str) -> dash.Dashboard:
    return board.with_variable(
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    ).with_variable(
        dash.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        .query(f"label_values({job_metric}, job)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
    )


def _board(uid: str, title: str, description: str, job_metric: str) -> dash.Dashboard:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["captioner"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(0)  # type: ignore[arg-type]
        .readonly()
    )
    return _variables(board, job_metric)


def overview() -> dash.Dashboard:
    board = _board(
        "captioner-overview",
        "Captioner / Service overview",
        "Traffic, errors, latency end to end and per stage, queue, batching and saturation.",
        "captioner_model_ready",
    )
    board = (
        board.with_row(dash.Row("Golden signals"))
        .with_panel(
            number(
                "Caption requests",
                "reqps",
                Query(f"sum(rate(captioner_requests_total{{{CAPTIONS}}}[{RATE}]))"),
            )
        )
        .with_panel(
            number(
                "Error ratio (5m)",
                "percentunit",
                Query(f"max(captioner:request_errors:ratio_rate5m{{{JOB}}})"),
                f"Caption requests answered {BAD_STATUS} (server errors and load shed).",
            )
        )
        .with_panel(
            number(
                "p99 latency",
                "s",
                Query(
                    "histogram_quantile(0.99, sum by (le) (rate("
                    f"captioner_request_duration_seconds_bucket{{{CAPTIONS}}}[{RATE}])))"
                ),
            )
        )
        .with_panel(
            number(
                "Queue saturation",
                "percentunit",
                Query(f"max(captioner:queue_saturation:ratio{{{JOB}}})"),
                "Images admitted / max_queue. At 100% new requests get 429.",
            )
        )
        .with_panel(
            graph(
                "Requests by status",
                "reqps",
                [
                    Query(
                        f"sum by (status) (rate(captioner_requests_total{{{CAPTIONS}}}[{RATE}]))",
                        "{{status}}",
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Errors by code",
                "reqps",
                [
                    Query(
                        "sum by (status, route) (rate(captioner_requests_total"
                        f'{{{JOB}, status=~"4..|5.."}}[{RATE}]))',
                        "{{status}} {{route}}",
                    )
                ],
                "Every route; 4xx are the clients' errors, 5xx and 429 spend the error budget.",
            )
        )
        .with_panel(
            graph(
                "Latency end to end",
                "s",
                quantiles("captioner_request_duration_seconds", CAPTIONS),
                "From request received to response ready, caption routes.",
            )
        )
        .with_panel(
            graph(
                "Latency per stage (p90)",
                "s",
                [
                    Query(
                        "histogram_quantile(0.9, sum by (stage, le) (rate("
                        f"captioner_stage_duration_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "{{stage}}",
                    )
                ],
                "Per image: decode_image, preprocess, encoder, decoder.",
            )
        )
        .with_row(dash.Row("Queue and batching"))
        .with_panel(
            graph(
                "Queue wait",
                "s",
                quantiles("captioner_queue_wait_seconds", JOB),
                "Time an image waited before its encoder batch started.",
                w=8,
            )
        )
        .with_panel(
            graph(
                "Batch size (mean)",
                "short",
                [
                    Query(
                        f"sum by (stage) (rate(captioner_batch_size_sum{{{JOB}}}[{RATE}]))\n/\n"
                        f"sum by (stage) (rate(captioner_batch_size_count{{{JOB}}}[{RATE}]))",
                        "{{stage}}",
                    )
                ],
                "Images per encoder call, hypotheses per decoder step.",
                w=8,
            )
        )
        .with_panel(
            graph(
                "In flight",
                "short",
                [
                    Query(f"sum(captioner_requests_in_flight{{{JOB}}})", "HTTP requests"),
                    Query(f"sum(captioner_queue_depth{{{JOB}}})", "images queued or decoding"),
                    Query(f"sum(captioner_queue_capacity{{{JOB}}})", "capacity"),
                ],
                w=8,
            )
        )
        .with_panel(
            graph(
                "Saturation",
                "percentunit",
                [Query(f"captioner:queue_saturation:ratio{{{JOB}}}", "{{job}}")],
                "Images admitted / max_queue per job.",
            )
        )
        .with_panel(
            graph(
                "Rejected images",
                "reqps",
                [
                    Query(
                        f"sum by (reason) (rate(captioner_rejected_total{{{JOB}}}[{RATE}]))",
                        "{{reason}}",
                    )
                ],
                "queue_full: refused with 429; deadline: timed out with 504.",
            )
        )
        .with_row(dash.Row("Service level objectives"))
        .with_panel(
            graph(
                "Error budget burn rate",
                "short",
                [
                    Query(
                        f"captioner:request_errors:ratio_rate1h{{{JOB}}} / {ERROR_BUDGET:g}", "1h"
                    ),
                    Query(
                        f"captioner:request_errors:ratio_rate6h{{{JOB}}} / {ERROR_BUDGET:g}", "6h"
                    ),
                ],
                f"Multiples of the availability budget ({AVAILABILITY_OBJECTIVE:.1%}); "
                f"{PAGE.factor:g} over {PAGE.long} pages.",
            )
        )
        .with_panel(
            graph(
                "Latency budget burn rate",
                "short",
                [
                    Query(
                        f"captioner:request_slow:ratio_rate1h{{{JOB}}} / {LATENCY_BUDGET:g}", "1h"
                    ),
                    Query(
                        f"captioner:request_slow:ratio_rate6h{{{JOB}}} / {LATENCY_BUDGET:g}", "6h"
                    ),
                ],
                f"Multiples of the latency budget ({LATENCY_BUDGET:.0%} over the threshold).",
            )
        )
    )
    return board


def model() -> dash.Dashboard:
    board = _board(
        "captioner-model",
        "Captioner / Model",
        "Which model runs where, how its captions look, and whether it fell back to CPU.",
        "captioner_model_info",
    )
    return (
        board.with_panel(
            grid(
                "Loaded models",
                "none",
                Query(
                    "max by (instance, model, version, variant, architecture, provider,"
                    f" requested_provider) (captioner_model_info{{{JOB}}})",
                    instant=True,
                ),
                "One row per replica: model, version, variant and the active execution provider.",
            )
        )
        .with_panel(
            number(
                "Replicas on a fallback provider",
                "short",
                Query(f"sum(captioner_provider_fallback{{{JOB}}})"),
                "Replicas whose preferred execution provider (CUDA) is not the active one.",
            )
        )
        .with_panel(
            number(
                "Replicas ready",
                "short",
                Query(f"sum(captioner_model_ready{{{JOB}}})"),
            )
        )
        .with_panel(
            graph(
                "Replicas by version and provider",
                "short",
                [
                    Query(
                        f"count by (version, provider) (captioner_model_info{{{JOB}}})",
                        "{{version}} on {{provider}}",
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Caption length",
                "short",
                quantiles("captioner_caption_length_words", JOB),
                "Words in the best caption.",
            )
        )
        .with_panel(
            graph(
                "Caption log-probability (beam score)",
                "none",
                quantiles("captioner_caption_log_probability", JOB),
                "A falling score hints at images unlike the training data.",
            )
        )
        .with_panel(
            graph(
                "Image size",
                "bytes",
                quantiles("captioner_image_size_bytes", JOB),
                "Encoded bytes received.",
            )
        )
        .with_panel(
            graph(
                "Image pixels",
                "short",
                quantiles("captioner_image_pixels", JOB),
                "Width times height after decoding.",
            )
        )
    )


def feedback() -> dash.Dashboard:
    board = _board(
        "captioner-feedback",
        "Captioner / Feedback",
        "Ratings from the page per model version, corrections, and the outbox to MongoDB.",
        "captioner_feedback_outbox_depth",
    )
    return (
        board.with_panel(
            graph(
                "Thumbs-up rate per model version (1h)",
                "percentunit",
                [Query("captioner:feedback_up:ratio_rate1h", "{{model_version}}")],
            )
        )
        .with_panel(
            graph(
                "Ratings",
                "reqps",
                [
                    Query(
                        "sum by (rating, model_version) (rate(captioner_feedback_total"
                        f"{{{JOB}}}[{RATE}]))",
                        "{{rating}} {{model_version}}",
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Corrections per model version (1h)",
                "percentunit",
                [Query("captioner:feedback_corrected:ratio_rate1h", "{{model_version}}")],
                "Share of ratings that came with a corrected caption.",
            )
        )
        .with_panel(
            graph(
                "Thumbs-down rate: last hour vs 7 days",
                "percentunit",
                [
                    Query("captioner:feedback_down:ratio_rate1h", "{{model_version}} (1h)"),
                    Query("captioner:feedback_down:ratio_rate7d", "all versions (7d)"),
                ],
                "The spike alert fires when a version's hour is over twice the 7-day rate.",
            )
        )
        .with_panel(
            graph(
                "Outbox depth",
                "short",
                [Query(f"captioner_feedback_outbox_depth{{{JOB}}}", "{{instance}}")],
                "Feedback stored locally while the database is unreachable.",
                w=8,
            )
        )
        .with_panel(
            graph(
                "Delivered from the outbox",
                "reqps",
                [
                    Query(
                        f"sum(rate(captioner_feedback_delivered_total{{{JOB}}}[{RATE}]))",
                        "delivered",
                    )
                ],
                w=8,
            )
        )
        .with_panel(
            graph(
                "Database errors",
                "reqps",
                [
                    Query(
                        f"sum(rate(captioner_feedback_store_errors_total{{{JOB}}}[{RATE}]))",
                        "store errors",
                    ),
                    Query(
                        "sum by (outcome) (rate(captioner_feedback_total"
                        f'{{{JOB}, outcome="queued"}}[{RATE}]))',
                        "queued instead of stored",
                    ),
                ],
                w=8,
            )
        )
    )


def gpu() -> dash.Dashboard:
    board = _board(
        "captioner-gpu",
        "Captioner / GPU",
        "NVIDIA DCGM exporter series for the GPUs the service runs on, next to its encoder time.",
        "captioner_model_info",
    )
    dcgm = 'Hostname=~".+"'
    return (
        board.with_panel(
            graph(
                "GPU utilisation",
                "percent",
                [
                    Query(
                        f"avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL{{{dcgm}}})",
                        PER_GPU,
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Tensor core activity",
                "percentunit",
                [
                    Query(
                        f"avg by (Hostname, gpu) (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{dcgm}}})",
                        PER_GPU,
                    )
                ],
                "Needs DCGM profiling metrics enabled in the exporter.",
            )
        )
        .with_panel(
            graph(
                "GPU memory used",
                "decmbytes",
                [
                    Query(
                        f"max by (Hostname, gpu) (DCGM_FI_DEV_FB_USED{{{dcgm}}})",
                        PER_GPU,
                    )
                ],
            )
        )
        .with_panel(
            graph(
                "Power",
                "watt",
                [
                    Query(
                        f"max by (Hostname, gpu) (DCGM_FI_DEV_POWER_USAGE{{{dcgm}}})",
                        PER_GPU,
                    )
                ],
                w=8,
            )
        )
        .with_panel(
            graph(
                "Temperature",
                "celsius",
                [
                    Query(
                        f"max by (Hostname, gpu) (DCGM_FI_DEV_GPU_TEMP{{{dcgm}}})",
                        PER_GPU,
                    )
                ],
                w=8,
            )
        )
        .with_panel(
            graph(
                "Encoder time per image (p90)",
                "s",
                [
                    Query(
                        "histogram_quantile(0.9, sum by (job, le) (rate("
                        "captioner_stage_duration_seconds_bucket"
                        f'{{{JOB}, stage="encoder"}}[{RATE}])))',
                        "{{job}}",
                    )
                ],
                "The service's side of the same GPUs.",
                w=8,
            )
        )
    )


DASHBOARDS = {
    "captioner-overview": overview,
    "captioner-model": model,
    "captioner-feedback": feedback,
    "captioner-gpu": gpu,
}


def render(build: dash.Dashboard) -> str:
    """A dashboard as the JSON Grafana provisions, stable byte for byte.

    Panels get ids in layout order, so links to ``viewPanel=N`` survive regeneration.
    """
    board = build.build()
    for number_, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number_
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
