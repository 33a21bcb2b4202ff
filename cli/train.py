"""``captioner train``: train a model, or resume the run in ``--run-dir``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.common import build_settings, fail

_train_options = [
    click.option("--dataset", help="training spec, e.g. shapes[train] or flickr8k[train]-2000s1"),
    click.option("--val-dataset", help="validation spec (default: the dataset's val split)"),
    click.option("--data-root", type=click.Path(path_type=Path), help="where real datasets live"),
    click.option("--extra-dataset", help="a second training spec mixed in, e.g. feedback[train]"),
    click.option(
        "--extra-weight",
        type=float,
        help="times an extra image is shown per epoch against once for the dataset's",
    ),
    click.option(
        "--extra-data-root",
        type=click.Path(path_type=Path),
        help="where the extra dataset lives (default: --data-root)",
    ),
    click.option(
        "--init-from",
        help="fine-tune from a run, model directory, package or models:/ URI",
    ),
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


def train_settings(options: dict[str, object]):
    """The training settings: ``CAPTIONER_*`` variables with the given options on top."""
    from training.settings import TrainSettings

    return build_settings(TrainSettings, **options)


@click.command()
@train_options
def train(**options: object) -> None:
    """Train a model (or resume the run in --run-dir)."""
    from training.backbones import EncoderError
    from training.checkpoints import CheckpointError
    from training.datasets.base import DatasetError
    from training.ensemble import train_model as run_training

    if options.get("init_from"):
        from cli.registry import resolve_model_arg

        options["init_from"] = resolve_model_arg(str(options["init_from"]))
    settings = train_settings(options)
    try:
        result = run_training(settings, progress=sys.stderr.isatty())
    except (CheckpointError, DatasetError, EncoderError) as exc:
        fail(exc)
    click.echo(
        f"model: {result.model_dir} ({result.state.stopped}; best val CIDEr "
        f"{result.state.best_score:.3f} at epoch {result.state.best_epoch})"
    )
