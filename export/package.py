"""Build the model package (contract 2) from a trained model directory, parity-checked."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from captioner.package import FORMAT_VERSION, MANIFEST, open_package, sha256
from captioner.runtime import OnnxCaptioner
from captioner.text import SPECIALS, Vocabulary
from export.convert import OPSET, export_decoder, export_encoder
from export.parity import compare_steps, probe_images
from training.decode import step_decoder
from training.models.captioner import CaptionModel

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported graphs disagree with the Keras model, or the input is unusable."""


def _run_metadata(model_dir: Path) -> tuple[str | None, dict[str, Any]]:
    """The dataset spec and evaluation scores recorded beside a training run's model."""
    run_dir = model_dir.parent
    dataset = None
    settings = run_dir / "settings.json"
    if settings.is_file():
        dataset = json.loads(settings.read_text()).get("dataset")
    scores: dict[str, Any] = {}
    scores_file = run_dir / "eval" / "scores.json"
    if scores_file.is_file():
        recorded = json.loads(scores_file.read_text())
        scores = {"dataset": recorded.get("dataset"), **recorded.get("corpus", {})}
    return dataset, scores


def parity(model: CaptionModel, runtime: OnnxCaptioner, steps: int = 5) -> dict[str, float]:
    """Keras against ONNX Runtime on probe images (see :func:`export.parity.compare_steps`)."""
    keras_step = step_decoder(model)
    images = probe_images(model.config.preprocessing())
    features = keras_step.encode(images)
    start = (features, keras_step.initial_state(features))
    return compare_steps(
        keras_step, start, runtime, runtime.encode(images), start_id=1, steps=steps
    )


def build_package(
    model_dir: Path,
    out_dir: Path,
    name: str | None = None,
    version: str | None = None,
    opset: int = OPSET,
    variants: tuple[str, ...] = (),
) -> Path:
    """Export a trained model directory into a verified package at ``out_dir``."""
    if variants:
        from export.variants import VARIANTS

        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            raise ExportError(
                f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}"
            )
    model = CaptionModel.load_dir(model_dir)
    vocab = Vocabulary.load(model_dir / "vocab.json")
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _export_into(tmp, model, vocab, model_dir, name, version, opset, variants)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written package behind
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _export_into(
    tmp: Path,
    model: CaptionModel,
    vocab: Vocabulary,
    model_dir: Path,
    name: str | None,
    version: str | None,
    opset: int,
    variants: tuple[str, ...],
) -> None:
    dataset, scores = _run_metadata(model_dir)
    encoder_io = export_encoder(model, tmp / "encoder.onnx", opset)
    decoder_io = export_decoder(model, tmp / "decoder.onnx", opset)
    vocab.save(tmp / "vocab.json")
    decoding = _decoding(model_dir, tmp)
    created = datetime.now(UTC)
    weights_hash = sha256(model_dir / "model.weights.h5")[:8]
    config = model.config
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": {
            "name": name or f"{(dataset or 'captioner').split('[')[0]}-{config.architecture}",
            "version": version or f"{created:%Y%m%d.%H%M%S}-{weights_hash}",
        },
        "architecture": config.architecture,
        "encoder": {
            "name": config.encoder,
            "input_size": [config.preprocessing().height, config.preprocessing().width],
            "preprocessing": config.preprocessing().to_dict(),
            "inputs": [t.to_dict() for t in encoder_io if t.name == "images"],
            "outputs": [t.to_dict() for t in encoder_io if t.name != "images"],
        },
        "decoder": {
            "config": config.decoder,
            "inputs": [
                t.to_dict() for t in decoder_io if t.name in ("features", "token", "h", "c")
            ],
            "outputs": [
                t.to_dict() for t in decoder_io if t.name not in ("features", "token", "h", "c")
            ],
        },
        "vocabulary": {
            "size": len(vocab),
            "max_length": vocab.max_length,
            "special_tokens": {t: i for i, t in enumerate(SPECIALS)},
        },
        "onnx": {"opset": opset, "producer": "tf2onnx"},
        "decoding": decoding,
        "dataset": dataset,
        "scores": scores,
        "created": created.isoformat(timespec="seconds"),
        "files": {},
    }
    _write_manifest(tmp, manifest)
    runtime = OnnxCaptioner(open_package(tmp), providers=["CPUExecutionProvider"])
    diffs = parity(model, runtime)
    if diffs["probs"] > PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX step probabilities differ from Keras by {diffs['probs']:.2e} "
            f"(> {PARITY_TOLERANCE})"
        )
    manifest["parity"] = {"fp32": diffs}
    if variants:
        from export.variants import add_variants

        manifest["variants"], manifest["parity"]["variants"] = add_variants(tmp, variants)
    _write_manifest(tmp, manifest)
    log.info(
        "package %s %s exported (max |dp| %.1e)",
        manifest["model"]["name"],
        manifest["model"]["version"],
        diffs["probs"],
    )


def _decoding(model_dir: Path, tmp: Path) -> dict[str, Any]:
    """The decoding chosen on validation (training/tune.py), its consensus files copied.

    A model without a choice is served greedy, as before.
    """
    from captioner.consensus import CONFIG_FILE, FEATURES_FILE
    from training.tune import Decoding

    chosen = Decoding.load(model_dir)
    if chosen is None:
        return {"beam_size": 1, "length_penalty": 0.7, "rerank": False}
    if chosen.rerank:
        for name in (FEATURES_FILE, CONFIG_FILE):
            if not (model_dir / name).is_file():
                raise ExportError(f"{model_dir} chose re-ranking but has no {name}")
            shutil.copyfile(model_dir / name, tmp / name)
    return {
        "beam_size": chosen.beam_size,
        "length_penalty": chosen.length_penalty,
        "rerank": chosen.rerank,
        "val_cider": chosen.val_cider,
    }


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    manifest["files"] = {
        p.name: sha256(p) for p in sorted(root.iterdir()) if p.is_file() and p.name != MANIFEST
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
