"""``captioner evaluate`` (a trained model on a split, with baselines) and ``captioner score``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import build_settings, fail
from cli.data import data_root_option


@click.command()
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
)
@click.option("--dataset", required=True, help="spec of the split to score, e.g. shapes[test]")
@click.option(
    "--out", type=click.Path(path_type=Path), help="report directory (default: MODEL/../eval)"
)
@data_root_option
@click.option("--beam-size", type=int, help="default: the beam size chosen on validation")
@click.option("--length-penalty", type=float, help="default: the one chosen on validation")
@click.option(
    "--no-baseline", is_flag=True, help="skip the constant and nearest-neighbour baselines"
)
def evaluate(
    model_dir: Path,
    dataset: str,
    out: Path | None,
    data_root: Path | None,
    beam_size: int | None,
    length_penalty: float | None,
    no_baseline: bool,
) -> None:
    """Score a trained model and the baselines on a dataset split, with intervals and a report."""
    from training.datasets.base import DatasetError
    from training.datasets.registry import DATASETS
    from training.datasets.spec import SpecError, parse_spec
    from training.evaluate import evaluate as run_evaluation
    from training.models.captioner import ModelFileError
    from training.run_dir import RunDir
    from training.settings import EvalSettings

    settings = build_settings(
        EvalSettings,
        data_root=data_root,
        beam_size=beam_size,
        length_penalty=length_penalty,
        baseline=False if no_baseline else None,
    )
    try:
        spec = parse_spec(dataset, DATASETS)
        result = run_evaluation(
            model_dir, spec, out or RunDir.of_model(model_dir).eval_dir, settings
        )
    except (SpecError, DatasetError, ModelFileError) as exc:
        fail(exc)
    click.echo(json.dumps(result.corpus, indent=2))
    click.echo(f"report: {result.report}", err=True)


@click.command()
@click.option(
    "--references",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="JSON: image id -> list of captions",
)
@click.option(
    "--hypotheses",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="JSON: image id -> caption",
)
def score(references: Path, hypotheses: Path) -> None:
    """Score any captions against references with pycocoevalcap; prints one JSON object."""
    from training.scoring import ScoringError, score_files

    try:
        scores = score_files(references, hypotheses)
    except ScoringError as exc:
        fail(exc)
    click.echo(json.dumps(scores))
