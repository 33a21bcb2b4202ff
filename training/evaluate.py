"""Evaluation: coco-caption scores, the constant-caption baseline, greedy vs beam, a report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from captioner.decoding import DecodeOptions
from captioner.text import Vocabulary
from training.datasets.base import CaptionDataset
from training.datasets.registry import load_dataset
from training.datasets.spec import DatasetSpec
from training.decode import caption_dataset
from training.metrics import best_constant_caption, score_captions
from training.models.captioner import CaptionModel


@dataclass
class Evaluation:
    corpus: dict[str, dict[str, float]]
    report: Path


def load_model(model_dir: Path) -> tuple[CaptionModel, Vocabulary]:
    return CaptionModel.load_dir(model_dir), Vocabulary.load(model_dir / "vocab.json")


def _shapes_correct(hypotheses: dict[str, str], dataset: CaptionDataset) -> float | None:
    if dataset.name != "shapes":
        return None
    from training.datasets.shapes import correct_share

    return correct_share(hypotheses, dataset)


def evaluate(
    model_dir: Path,
    spec: DatasetSpec,
    out_dir: Path,
    data_root: Path = Path("data"),
    beam_size: int = 3,
    length_penalty: float = 0.7,
    baseline: bool = True,
    examples: int = 8,
) -> Evaluation:
    """Score greedy and beam captions (and the best constant caption) on one split.

    Writes ``scores.json`` (corpus), ``per_image.json``, ``captions.json`` and
    ``report.md`` with example images into ``out_dir``.
    """
    model, vocab = load_model(model_dir)
    dataset = load_dataset(spec, data_root)
    references = dataset.references()
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, dict[str, float]] = {}
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    captions: dict[str, dict[str, str]] = {}
    searches = {"greedy": 1, f"beam{beam_size}": beam_size} if beam_size > 1 else {"greedy": 1}
    for label, size in searches.items():
        options = DecodeOptions(
            beam_size=size, max_length=vocab.max_length, length_penalty=length_penalty
        )
        started = time.monotonic()
        hypotheses = caption_dataset(model, vocab, dataset, options)
        seconds = time.monotonic() - started
        scores = score_captions(references, hypotheses)
        corpus[label] = dict(scores.corpus)
        corpus[label]["seconds"] = seconds
        correct = _shapes_correct(hypotheses, dataset)
        if correct is not None:
            corpus[label]["correct"] = correct
        per_image[label] = scores.per_image
        captions[label] = hypotheses
    if baseline:
        train = load_dataset(spec.with_split("train"), data_root, check_images=False)
        constant, _ = best_constant_caption(train.all_captions(), references)
        hypotheses = dict.fromkeys(references, constant)
        corpus["constant"] = dict(score_captions(references, hypotheses).corpus)
        correct = _shapes_correct(hypotheses, dataset)
        if correct is not None:
            corpus["constant"]["correct"] = correct
        captions["constant"] = {"*": constant}
    (out_dir / "scores.json").write_text(
        json.dumps({"dataset": str(spec), "model": str(model_dir), "corpus": corpus}, indent=2)
        + "\n"
    )
    (out_dir / "per_image.json").write_text(json.dumps(per_image) + "\n")
    (out_dir / "captions.json").write_text(json.dumps(captions, indent=1) + "\n")
    report = _write_report(out_dir, spec, dataset, corpus, captions, examples)
    return Evaluation(corpus, report)


def _write_report(
    out_dir: Path, spec: DatasetSpec, dataset: CaptionDataset, corpus, captions, examples: int
) -> Path:
    keys = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "correct"]
    keys = [k for k in keys if any(k in row for row in corpus.values())]
    lines = [
        f"# Evaluation on `{spec}`",
        "",
        "| decoding | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for label, row in corpus.items():
        lines.append(
            f"| {label} | " + " | ".join(f"{row[k]:.3f}" if k in row else "" for k in keys) + " |"
        )
    if "constant" in captions:
        lines += ["", f"Best constant caption: *{captions['constant']['*']}*"]
    lines += ["", "## Examples", ""]
    folder = out_dir / "examples"
    folder.mkdir(exist_ok=True)
    beam_label = next((k for k in captions if k.startswith("beam")), "greedy")
    for example in dataset.examples[:examples]:
        pixels = dataset.image(example)
        image = Image.fromarray(np.asarray(pixels))
        if max(image.size) < 128:
            image = image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST)
        name = f"{Path(example.image_id).stem}.png"
        image.save(folder / name)
        lines += [
            f"![{example.image_id}](examples/{name})",
            "",
            f"- greedy: {captions['greedy'][example.image_id]}",
            f"- {beam_label}: {captions[beam_label][example.image_id]}",
            f"- reference: {example.captions[0]}",
            "",
        ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
