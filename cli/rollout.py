"""``captioner rollout analyze``: canary against stable on live metrics, and a verdict."""

from __future__ import annotations

import json
import sys

import click

from cli.common import build_settings, fail


@click.group()
def rollout() -> None:
    """Canary rollout: decide on live Prometheus metrics (docs/deploy.md, canary analysis)."""


@rollout.command("analyze")
@click.option(
    "--prometheus",
    "prometheus_url",
    help="Prometheus base URL [env CAPTIONER_ROLLOUT_PROMETHEUS_URL]",
)
@click.option("--stable", required=True, help="the stable model version")
@click.option("--canary", required=True, help="the canary's model version")
@click.option("--window", help="range to compare over, e.g. 10m [env CAPTIONER_ROLLOUT_WINDOW]")
@click.option("--json", "as_json", is_flag=True, help="print a JSON object instead of a table")
def analyze(
    prometheus_url: str | None, stable: str, canary: str, window: str | None, as_json: bool
) -> None:
    """Compare canary and stable; exit 0 to promote, 3 to hold, 4 to roll back (1: error).

    Thresholds come from CAPTIONER_ROLLOUT_* variables; see docs/deploy.md.
    """
    from rollout.analysis import analyze as run_analysis
    from rollout.promql import PrometheusError
    from rollout.settings import RolloutSettings

    if stable == canary:
        raise click.BadParameter(
            "the canary must be another version than stable", param_hint="--canary"
        )
    settings = build_settings(RolloutSettings, prometheus_url=prometheus_url, window=window)
    try:
        analysis = run_analysis(stable, canary, settings)
    except PrometheusError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(analysis.to_dict(), indent=2))
    else:
        from rollout.report import table

        click.echo(table(analysis))
    sys.exit(analysis.verdict.exit_code)
