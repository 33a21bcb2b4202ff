"""Evaluation: coco-caption scores of the model and of two baselines, with bootstrap intervals.

Beside the model's captions (greedy, beam, and the decoding it is served with), on
the same images: the best constant caption and the nearest-neighbour caption (the
consensus caption of the k most similar training photos), both chosen on the
validation split, never on the split being scored. Per-image CIDEr gives percentile
bootstrap intervals for every row and paired intervals for the model against each
baseline.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from captioner.consensus import ConsensusReranker
from captioner.decoding import UNTUNED_BEAM_SIZE, DecodeOptions
from captioner.package import Decoding
from captioner.text import Vocabulary
from training.bootstrap import bootstrap
from training.constant_caption import best_constant_caption
from training.datasets.base import CaptionDataset
from training.datasets.registry import load_dataset
from training.datasets.spec import DatasetSpec
from training.models.captioner import CaptionModel
from training.reference_decoder import caption_dataset
from training.report import write_report
from training.run_dir import RunDir, TrainedModel
from training.scoring import score_captions
from training.settings import EvalSettings
from training.tune import build_reranker, features_of, load_decoding

log = logging.getLogger(__name__)

NEIGHBOUR_CHOICES = (5, 10, 20, 40)
CONSTANT = "constant"
NEAREST = "nearest-neighbour"


@dataclass
class Evaluation:
    corpus: dict[str, dict[str, float]]
    report: Path
    served: str = "greedy"  # the row decoded as the package is served by default


def load_model(model_dir: Path) -> tuple[CaptionModel, Vocabulary]:
    """The model saved in MODEL_DIR and its vocabulary (:class:`training.run_dir.TrainedModel`)."""
    trained = TrainedModel.load(model_dir)
    return trained.model, trained.vocab


def _shapes_correct(hypotheses: dict[str, str], dataset: CaptionDataset) -> float | None:
    if dataset.name != "shapes":
        return None
    from training.datasets.shapes import correct_share

    return correct_share(hypotheses, dataset)


def load_reranker(model_dir: Path) -> ConsensusReranker | None:
    """The reranker chosen on validation and saved beside the model, if any."""
    chosen = load_decoding(model_dir)
    return ConsensusReranker.load(model_dir) if chosen and chosen.rerank else None


def evaluate(
    model_dir: Path,
    spec: DatasetSpec,
    out_dir: Path,
    settings: EvalSettings | None = None,
    examples: int = 8,
) -> Evaluation:
    """Score the model's captions and the baselines on one split; write a report.

    Args:
        settings: the data root, and the decoding when not the one chosen on validation
            (``decoding.json`` beside the model); default: ``EvalSettings()``.

    Writes ``scores.json`` (corpus scores and intervals), ``per_image.json``,
    ``captions.json`` and ``report.md`` with the photos and their captions.
    """
    settings = settings or EvalSettings()
    data_root = settings.data_root
    model, vocab = load_model(model_dir)
    chosen = load_decoding(model_dir) or Decoding(beam_size=UNTUNED_BEAM_SIZE)
    beam = settings.beam_size or chosen.beam_size
    penalty = chosen.length_penalty if settings.length_penalty is None else settings.length_penalty
    reranker = load_reranker(model_dir)
    dataset = load_dataset(spec, data_root)
    references = dataset.references()
    out_dir.mkdir(parents=True, exist_ok=True)

    captions: dict[str, dict[str, str]] = {}
    seconds: dict[str, float] = {}
    searches: dict[str, tuple[int, ConsensusReranker | None]] = {"greedy": (1, None)}
    if beam > 1:
        searches[f"beam{beam}"] = (beam, None)
        if reranker is not None:
            searches[f"beam{beam}+rerank"] = (beam, reranker)
    for label, (size, rerank) in searches.items():
        options = DecodeOptions(beam_size=size, max_length=vocab.max_length, length_penalty=penalty)
        started = time.monotonic()
        captions[label] = caption_dataset(model, vocab, dataset, options, reranker=rerank)
        seconds[label] = time.monotonic() - started
    served = list(searches)[-1]
    if settings.baseline:
        captions.update(_baselines(model, spec, dataset, data_root, reranker))

    corpus: dict[str, dict[str, float]] = {}
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    for label, hypotheses in captions.items():
        scores = score_captions(references, hypotheses)
        corpus[label] = dict(scores.corpus)
        if label in seconds:
            corpus[label]["seconds"] = seconds[label]
        correct = _shapes_correct(hypotheses, dataset)
        if correct is not None:
            corpus[label]["correct"] = correct
        per_image[label] = scores.per_image
    intervals = _intervals(per_image, served, dataset)
    (out_dir / RunDir.SCORES_FILE).write_text(
        json.dumps(
            {
                "dataset": str(spec),
                "model": str(model_dir),
                "served": served,
                "corpus": corpus,
                "intervals": intervals,
            },
            indent=2,
        )
        + "\n"
    )
    (out_dir / RunDir.PER_IMAGE_FILE).write_text(json.dumps(per_image) + "\n")
    (out_dir / RunDir.CAPTIONS_FILE).write_text(json.dumps(captions, indent=1) + "\n")
    report = write_report(out_dir, spec, dataset, corpus, intervals, captions, served, examples)
    return Evaluation(corpus, report, served)


def _baselines(
    model: CaptionModel,
    spec: DatasetSpec,
    dataset: CaptionDataset,
    data_root: Path,
    reranker: ConsensusReranker | None,
) -> dict[str, dict[str, str]]:
    """The constant and nearest-neighbour captions, each chosen on the val split."""
    val = load_dataset(spec.with_split("val"), data_root)
    train = load_dataset(spec.with_split("train"), data_root)
    constant, _ = best_constant_caption(train.all_captions(), val.references())
    out = {CONSTANT: dict.fromkeys(dataset.references(), constant)}
    neighbours = reranker or build_reranker(model, train)
    val_features = features_of(model, val)

    def nearest(ds: CaptionDataset, features: np.ndarray, k: int) -> dict[str, str]:
        return {
            ex.image_id: neighbours.consensus_caption(features[n], k)
            for n, ex in enumerate(ds.examples)
        }

    choices = [k for k in NEIGHBOUR_CHOICES if k <= len(train)] or [len(train)]
    fast = {
        k: score_captions(
            val.references(), nearest(val, val_features, k), ("CIDEr",), tokenize=False
        ).corpus["CIDEr"]
        for k in choices
    }
    k = max(choices, key=lambda c: (fast[c], -c))
    log.info("nearest-neighbour baseline: k %d chosen on val (CIDEr %s)", k, fast)
    out[NEAREST] = nearest(dataset, features_of(model, dataset), k)
    return out


def _intervals(
    per_image: dict[str, dict[str, dict[str, float]]], served: str, dataset: CaptionDataset
) -> dict[str, dict[str, float]]:
    """95% bootstrap intervals of CIDEr per row, and paired ones of the model vs baselines."""
    ids = [ex.image_id for ex in dataset.examples]

    def cider(label: str) -> list[float]:
        return [per_image[label][i]["CIDEr"] for i in ids]

    out = {label: asdict(bootstrap(cider(label))) for label in per_image}
    for base in (CONSTANT, NEAREST):
        if base in per_image:
            out[f"{served} - {base}"] = asdict(bootstrap(cider(served), cider(base)))
    return out
