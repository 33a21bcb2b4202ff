"""The ``captioner`` command line.

Each subcommand imports its component when it runs, so ``captioner score`` or a
serving command never pays for (or needs) TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def main(verbose: bool) -> None:
    """Image captioning: data, training, evaluation, scoring."""
    _setup_logging(verbose)


def _train_overrides(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


_train_options = [
    click.option("--dataset", help="training spec, e.g. shapes[train] or flickr8k[train]-2000s1"),
    click.option("--val-dataset", help="validation spec (default: the dataset's val split)"),
    click.option("--data-root", type=click.Path(path_type=Path), help="where real datasets live"),
    click.option(
        "--run-dir", type=click.Path(path_type=Path), help="checkpoints and the trained model"
    ),
    click.option("--architecture", type=click.Choice(["merge", "attention"])),
    click.option(
        "--encoder", help="small_cnn or a keras.applications backbone (xception, resnet50, ...)"
    ),
    click.option(
        "--encoder-weights",
        help="'random', a local weights file, or 'imagenet' from the Keras cache",
    ),
    click.option("--epochs", type=int),
    click.option("--batch-size", type=int),
    click.option("--learning-rate", type=float),
    click.option(
        "--max-train-seconds", type=float, help="stop after the epoch that passes this budget"
    ),
    click.option("--seed", type=int),
    click.option("--members", type=int, help="decoders in the ensemble, one seed each"),
]


def train_options(func):
    for option in reversed(_train_options):
        func = option(func)
    return func


def _settings(options: dict[str, object]):
    from pydantic import ValidationError

    from training.settings import TrainSettings

    try:
        return TrainSettings(**_train_overrides(**options))
    except ValidationError as exc:
        _fail(exc)


_data_root_option = click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="where real datasets live [env CAPTIONER_DATA_ROOT, default ../shared/data or data]",
)


def _data_settings(**overrides: Any):
    from pydantic import ValidationError

    from training.settings import DataSettings

    try:
        return DataSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(exc)


@main.group(invoke_without_command=True)
@click.option(
    "--dataset",
    default="shapes[train]",
    show_default=True,
    help="spec of the split the vocabulary is built from",
)
@_data_root_option
@click.option("--min-count", type=int, default=1, show_default=True)
@click.pass_context
def data(ctx: click.Context, dataset: str, data_root: Path | None, min_count: int) -> None:
    """Report what of a dataset is present, build its vocabulary and run the data checks.

    `captioner data fetch NAME` downloads a dataset first.
    """
    if ctx.invoked_subcommand is not None:
        return
    from captioner.text import Vocabulary
    from training.datasets.base import DatasetError
    from training.datasets.registry import DATASETS, survey
    from training.datasets.spec import SpecError, parse_spec
    from training.datasets.validation import validate

    root = _data_settings(data_root=data_root).data_root
    try:
        spec = parse_spec(dataset, DATASETS)
        found = {s: survey(spec.with_split(s), root) for s in ("train", "val", "test")}
    except (SpecError, DatasetError) as exc:
        _fail(exc)
    click.echo(f"{spec.name} under {root}")
    for name, split in found.items():
        line = f"{name}: {len(split.present)} of {split.total} images present"
        if split.missing:
            line += f" ({len(split.missing)} missing, first: {', '.join(split.missing[:3])})"
        click.echo(f"{line}, {split.captions} captions")
    empty = [name for name, split in found.items() if not split.present]
    if empty:
        raise click.ClickException(
            f"no image of {', '.join(empty)} is present under {root}: "
            f"fetch it (captioner data fetch) or set --data-root"
        )
    splits = {name: split.present for name, split in found.items()}
    vocab = Vocabulary.build(splits["train"].all_captions(), min_count)
    click.echo(
        f"vocabulary: {len(vocab)} tokens at min count {min_count} (from the train captions "
        f"present), max length {vocab.max_length} words"
    )
    checks = validate(splits["train"], [splits["val"], splits["test"]], vocab)
    for check in checks:
        click.echo(f"[{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    if not all(c.passed for c in checks):
        raise SystemExit(1)


@data.command("fetch")
@click.argument("name", required=False)
@_data_root_option
@click.option(
    "--mirror",
    help="base URL or local folder with the archives [env CAPTIONER_DATA_MIRROR]",
)
@click.option(
    "--sources",
    type=click.Path(path_type=Path),
    help="another sources table (TOML) [env CAPTIONER_DATA_SOURCES]",
)
@click.option("--retries", type=int, help="attempts per URL after a failure [default 3]")
@click.option("--keep-archives", is_flag=True, default=None, help="keep the downloaded archives")
def data_fetch(
    name: str | None,
    data_root: Path | None,
    mirror: str | None,
    sources: Path | None,
    retries: int | None,
    keep_archives: bool | None,
) -> None:
    """Download, verify and unpack dataset NAME under the data root (no NAME: list them).

    Resumes an interrupted download, checks the archive's size and digests before
    unpacking, unpacks all or nothing, and does nothing when the dataset is present.
    """
    from training.datasets.download import FetchError, human_bytes
    from training.datasets.fetch import fetch
    from training.datasets.sources import SourceError, load_sources

    settings = _data_settings(
        data_root=data_root,
        data_mirror=mirror,
        data_sources=sources,
        fetch_retries=retries,
        keep_archives=keep_archives,
    )
    try:
        table = load_sources(settings.data_sources)
        if name is None:
            for key, entry in sorted(table.datasets.items()):
                click.echo(f"{key:18} {entry.description}")
            return
        result = fetch(
            name,
            settings.data_root,
            table,
            mirror=settings.data_mirror,
            retries=settings.fetch_retries,
            keep_archives=settings.keep_archives,
            progress=sys.stderr.isatty(),
        )
    except (SourceError, FetchError) as exc:
        _fail(exc)
    for part in result.parts:
        detail = f"sha256 {part.sha256}" if part.sha256 else "not verified: laid out by hand"
        if part.pinned:
            detail += " (pinned: the table publishes no digest)"
        click.echo(f"{part.archive}: {part.status} ({detail})")
    click.echo(f"downloaded {human_bytes(result.downloaded)} into {result.data_root}")
    if result.manual:
        for step in result.manual:
            click.echo(f"\nTo do by hand, {step.what}:\n{step.text(result.data_root)}", err=True)
        raise click.ClickException(f"{name} is not complete: {len(result.manual)} step(s) by hand")
    loader = {"flickr8k-karpathy": "flickr8k"}.get(result.dataset, result.dataset)
    click.echo(
        f"check it: captioner data --dataset '{loader}[train]' --data-root {result.data_root}"
    )


@main.command()
@train_options
def train(**options: object) -> None:
    """Train a model (or resume the run in --run-dir)."""
    from training.checkpoints import CheckpointError
    from training.datasets.base import DatasetError
    from training.encoders import EncoderError
    from training.ensemble import train_model as run_training

    settings = _settings(options)
    try:
        result = run_training(settings, progress=sys.stderr.isatty())
    except (CheckpointError, DatasetError, EncoderError) as exc:
        _fail(exc)
    click.echo(
        f"model: {result.model_dir} ({result.state.stopped}; best val CIDEr "
        f"{result.state.best_score:.3f} at epoch {result.state.best_epoch})"
    )


@main.command()
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
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="where real datasets live [env CAPTIONER_DATA_ROOT, default ../shared/data or data]",
)
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

    try:
        spec = parse_spec(dataset, DATASETS)
        result = run_evaluation(
            model_dir,
            spec,
            out or model_dir.parent / "eval",
            data_root or _settings({}).data_root,
            beam_size,
            length_penalty,
            not no_baseline,
        )
    except (SpecError, DatasetError, ModelFileError) as exc:
        _fail(exc)
    click.echo(json.dumps(result.corpus, indent=2))
    click.echo(f"report: {result.report}", err=True)


@main.command()
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
    from training.metrics import ScoringError, score_files

    try:
        scores = score_files(references, hypotheses)
    except ScoringError as exc:
        _fail(exc)
    click.echo(json.dumps(scores))


@main.command("export")
@click.option(
    "--checkpoint",
    "model_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="a trained model directory (RUN/model)",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="package directory to write"
)
@click.option("--name", help="model name (default: DATASET-ARCHITECTURE)")
@click.option(
    "--version", "version_", help="model version (default: creation time and weights hash)"
)
@click.option("--variants", default="", help="comma-separated extra precisions: fp16,int8")
def export_command(
    model_dir: Path, out: Path, name: str | None, version_: str | None, variants: str
) -> None:
    """Export a trained model to an ONNX model package, parity-checked against Keras."""
    from captioner.package import PackageError
    from export.package import ExportError, build_package
    from training.models.captioner import ModelFileError

    wanted = tuple(v for v in variants.split(",") if v)
    try:
        path = build_package(model_dir, out, name, version_, variants=wanted)
    except (ExportError, ModelFileError, PackageError, ValueError) as exc:
        _fail(exc)
    click.echo(f"package: {path}")


@main.group()
def package() -> None:
    """Model packages: verify."""


@package.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def package_verify(path: Path) -> None:
    """Check a package: hashes, format, graphs, tensor names and shapes, a probe decode."""
    from captioner.package import PackageError
    from captioner.verify import verify

    try:
        result = verify(path)
    except PackageError as exc:
        _fail(exc)
    manifest = result.package.manifest
    click.echo(
        f"{manifest['model']['name']} {manifest['model']['version']} ({manifest['architecture']})"
    )
    for check in result.checks:
        click.echo(f"[ok] {check}")
    for variant, caption in result.probe_captions.items():
        click.echo(f"probe caption ({variant}): {caption}")


@main.command()
@train_options
def demo(**options: object) -> None:
    """Synthetic data, train the default model, evaluate it on held-out data, export it."""
    from training.demo import run_demo

    settings = _settings(options)
    corpus = run_demo(settings, progress=sys.stderr.isatty())
    keys = ["BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "correct"]
    click.echo(f"{'':10}" + "".join(f"{k:>10}" for k in keys))
    for label, row in corpus.items():
        click.echo(f"{label:10}" + "".join(f"{row.get(k, float('nan')):>10.3f}" for k in keys))
    click.echo(
        f"model: {settings.run_dir / 'model'}   report: {settings.run_dir / 'eval' / 'report.md'}"
    )
    click.echo(f"package: {settings.run_dir / 'package'} (check it: captioner package verify DIR)")


@main.command()
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    help="model package directory or .tar.gz [env CAPTIONER_MODEL_DIR]",
)
@click.option("--host", help="listen address [env CAPTIONER_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="listen port [env CAPTIONER_PORT, default 8000]")
@click.option("--workers", type=int, help="uvicorn worker processes [env CAPTIONER_WORKERS]")
@click.option("--variant", type=click.Choice(["fp32", "fp16", "int8"]), help="precision variant")
def serve(**options: object) -> None:
    """Serve a model package over HTTP (REST, Open Inference Protocol V2, /metrics).

    Every other setting comes from CAPTIONER_* variables; see docs/inference.md.
    """
    from pydantic import ValidationError

    from inference.server import run
    from inference.settings import ServeSettings

    try:
        overrides: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
        settings = ServeSettings(**overrides)
    except ValidationError as exc:
        _fail(exc)
    run(settings)


@main.command("ui")
@click.option("--port", type=int, help="Streamlit port [env CAPTIONER_UI_PORT, default 8501]")
@click.option("--service-url", help="inference service [env CAPTIONER_SERVICE_URL]")
def ui_command(port: int | None, service_url: str | None) -> None:
    """The Streamlit page: caption images, give feedback (stored in MongoDB).

    Without MONGODB_URI a local nx-27017 (MongoDB wire protocol over SQLite) is started.
    """
    from pydantic import ValidationError

    from ui.launch import run
    from ui.settings import UISettings

    overrides: dict[str, Any] = {"ui_port": port, "service_url": service_url}
    try:
        settings = UISettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(exc)
    sys.exit(run(settings))


@main.group()
def feedback() -> None:
    """Feedback that users gave on the page (MongoDB, contract 5)."""


@feedback.command("export")
@click.option("--since", help="only feedback from this day on (YYYY-MM-DD)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="dataset folder")
@click.option("--mongodb-uri", envvar="MONGODB_URI", help="[env MONGODB_URI]")
@click.option("--database", default="captioner", show_default=True)
def feedback_export(since: str | None, out: Path, mongodb_uri: str | None, database: str) -> None:
    """Write corrections and thumbs-up captions as a dataset the training pipeline reads."""
    from datetime import UTC, datetime

    from ui.export import export_feedback
    from ui.store import FeedbackStore, StoreUnavailable

    if not mongodb_uri:
        raise click.ClickException("no database: pass --mongodb-uri or set MONGODB_URI")
    start = None
    if since:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise click.ClickException(f"--since must be YYYY-MM-DD, got {since!r}") from exc
    store = FeedbackStore(mongodb_uri, database)
    try:
        summary = export_feedback(store, start, out)
    except StoreUnavailable as exc:
        _fail(exc)
    finally:
        store.close()
    click.echo(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
