"""The demo: synthetic data, train the default model, evaluate it, export its package."""

from __future__ import annotations

import logging
from pathlib import Path

from training.datasets.spec import parse_spec
from training.evaluate import evaluate
from training.settings import TrainSettings
from training.trainer import train

log = logging.getLogger(__name__)

DEMO_TRAIN_SECONDS = 600.0
DEMO_VARIANTS: tuple[str, ...] = ("fp16", "int8")


def run_demo(settings: TrainSettings, progress: bool = True) -> dict[str, dict[str, float]]:
    """Train on ``shapes`` (or whatever the settings say) and score the held-out test split."""
    if settings.max_train_seconds is None:
        settings = settings.model_copy(update={"max_train_seconds": DEMO_TRAIN_SECONDS})
    result = train(settings, progress=progress)
    test_spec = parse_spec(settings.dataset).with_split("test")
    out = Path(settings.run_dir) / "eval"
    evaluation = evaluate(
        result.model_dir,
        test_spec,
        out,
        settings.data_root,
        settings.beam_size,
        settings.length_penalty,
    )
    log.info("report: %s", evaluation.report)
    from export.package import build_package

    package = build_package(
        result.model_dir, Path(settings.run_dir) / "package", variants=DEMO_VARIANTS
    )
    log.info("model package: %s", package)
    return evaluation.corpus
