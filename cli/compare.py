"""``captioner compare``: the offline gate between a champion and a challenger package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.common import build_settings, fail
from cli.data import data_root_option

# Exit statuses a pipeline branches on (1 is an error, 2 click's usage error).
EXIT_PROMOTE = 0
EXIT_KEEP = 3


@click.command()
@click.option("--champion", required=True, help="package directory or models:/ URI")
@click.option("--challenger", required=True, help="package directory or models:/ URI")
@click.option(
    "--dataset", required=True, help="the held-out split both are scored on, e.g. flickr8k[test]"
)
@click.option("--feedback", "feedback_spec", help="held-out feedback too, e.g. feedback[test]")
@click.option(
    "--feedback-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="where the exported feedback lives (default: --data-root)",
)
@data_root_option
@click.option("--out", type=click.Path(path_type=Path), help="write comparison.json here")
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON")
def compare(
    champion: str,
    challenger: str,
    dataset: str,
    feedback_spec: str | None,
    feedback_root: Path | None,
    data_root: Path | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Score two packages on the same held-out images; exit 0 to promote, 3 to keep.

    Thresholds are settings (CAPTIONER_GATE_*, docs/training.md).
    """
    from captioner.package import PackageError
    from cli.registry import resolve_model_arg
    from training.compare import PROMOTE, GateSettings
    from training.compare import compare as run_compare
    from training.datasets.base import DatasetError
    from training.datasets.registry import DATASETS
    from training.datasets.spec import SpecError, parse_spec
    from training.settings import DataSettings

    gate = build_settings(GateSettings)
    root = build_settings(DataSettings, data_root=data_root).data_root
    try:
        verdict = run_compare(
            resolve_model_arg(champion),
            resolve_model_arg(challenger),
            parse_spec(dataset, DATASETS),
            root,
            parse_spec(feedback_spec, DATASETS) if feedback_spec else None,
            feedback_root,
            gate,
            out,
        )
    except (SpecError, DatasetError, PackageError) as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        click.echo(f"champion {verdict.champion}  challenger {verdict.challenger}")
        for split in verdict.splits:
            d = split.difference
            click.echo(
                f"  {split.dataset:18} {split.images:4} images  CIDEr {split.champion:.3f} -> "
                f"{split.challenger:.3f}  difference {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
            )
        click.echo(f"{verdict.decision}: " + "; ".join(verdict.reasons))
    sys.exit(EXIT_PROMOTE if verdict.decision == PROMOTE else EXIT_KEEP)
