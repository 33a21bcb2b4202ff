"""Build the model package from a trained model directory, parity-checked.

The package is described in docs/architecture.md, "The model package".
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from captioner.package import (
    DECODER_FILE,
    ENCODER_FILE,
    FORMAT_VERSION,
    VOCAB_FILE,
    Decoder,
    Decoding,
    Encoder,
    Lineage,
    Manifest,
    ModelId,
    Onnx,
    VocabularyInfo,
    open_package,
    sha256,
)
from captioner.runtime import OnnxCaptioner
from captioner.text import SPECIALS, Vocabulary
from export.convert import OPSET, export_decoder, export_encoder
from export.parity import compare_steps, probe_images
from training.models.captioner import CaptionModel
from training.reference_decoder import step_decoder
from training.run_dir import RunDir, TrainedModel

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported graphs disagree with the Keras model, or the input is unusable."""


def _run_metadata(model_dir: Path) -> tuple[str | None, dict[str, Any]]:
    """The dataset spec and evaluation scores recorded beside a training run's model."""
    run_dir = RunDir.of_model(model_dir)
    dataset = None
    settings = run_dir.settings_path
    if settings.is_file():
        dataset = json.loads(settings.read_text()).get("dataset")
    scores: dict[str, Any] = {}
    scores_file = run_dir.scores_path
    if scores_file.is_file():
        recorded = json.loads(scores_file.read_text())
        scores = {"dataset": recorded.get("dataset"), **recorded.get("corpus", {})}
    return dataset, scores


def _lineage(model_dir: Path) -> Lineage:
    """Where the model came from: its directory, and what a fine-tuning recorded."""
    recorded: dict[str, Any] = {}
    path = RunDir.of_model(model_dir).lineage_path
    if path.is_file():
        recorded = json.loads(path.read_text())
    return Lineage(
        model_dir=str(Path(model_dir).resolve()),
        parent=recorded.get("parent"),
        extra_dataset=recorded.get("extra_dataset"),
        extra_weight=recorded.get("extra_weight"),
    )


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
    trained = TrainedModel.load(model_dir)
    model, vocab = trained.model, trained.vocab
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
    encoder = export_encoder(model, tmp / ENCODER_FILE, opset)
    decoder = export_decoder(model, tmp / DECODER_FILE, opset)
    vocab.save(tmp / VOCAB_FILE)
    decoding = _decoding(model_dir, tmp)
    created = datetime.now(UTC)
    weights_hash = sha256(model_dir / RunDir.WEIGHTS_FILE)[:8]
    config = model.config
    pre = config.preprocessing()
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model=ModelId(
            name=name or f"{(dataset or 'captioner').split('[')[0]}-{config.architecture}",
            version=version or f"{created:%Y%m%d.%H%M%S}-{weights_hash}",
        ),
        architecture=config.architecture,
        encoder=Encoder(
            name=config.encoder,
            input_size=[pre.height, pre.width],
            preprocessing=pre.to_dict(),
            inputs=encoder.inputs,
            outputs=encoder.outputs,
        ),
        decoder=Decoder(config=config.decoder, inputs=decoder.inputs, outputs=decoder.outputs),
        vocabulary=VocabularyInfo(
            size=len(vocab),
            max_length=vocab.max_length,
            special_tokens={t: i for i, t in enumerate(SPECIALS)},
        ),
        onnx=Onnx(opset=opset, producer="tf2onnx"),
        decoding=decoding,
        dataset=dataset,
        lineage=_lineage(model_dir),
        scores=scores,
        created=created.isoformat(timespec="seconds"),
        files={},
    )
    manifest.write(tmp)
    runtime = OnnxCaptioner(open_package(tmp), providers=["CPUExecutionProvider"])
    diffs = parity(model, runtime)
    if diffs["probs"] > PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX step probabilities differ from Keras by {diffs['probs']:.2e} "
            f"(> {PARITY_TOLERANCE})"
        )
    manifest.parity = {"fp32": diffs}
    if variants:
        from export.variants import add_variants

        manifest.variants, manifest.parity["variants"] = add_variants(tmp, variants)
    manifest.write(tmp)
    log.info(
        "package %s %s exported (max |dp| %.1e)",
        manifest.model.name,
        manifest.model.version,
        diffs["probs"],
    )


def _decoding(model_dir: Path, tmp: Path) -> Decoding:
    """The decoding chosen on validation (training/tune.py), its consensus files copied.

    A model without a choice is served greedy, as before.
    """
    from training.tune import load_decoding

    chosen = load_decoding(model_dir)
    if chosen is None:
        return Decoding()
    if chosen.rerank:
        for name in RunDir.CONSENSUS_FILES:
            if not (model_dir / name).is_file():
                raise ExportError(f"{model_dir} chose re-ranking but has no {name}")
            shutil.copyfile(model_dir / name, tmp / name)
    return chosen
