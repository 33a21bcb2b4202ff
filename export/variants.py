"""Precision variants of a package's graphs: FP16 for GPU serving, INT8 for CPU serving.

Both keep float32 inputs and outputs and the same tensor names, so the runtime
and the manifest's tensor contract are unchanged; only the file differs.
onnxruntime's own tools do the conversion (``onnxruntime.transformers.float16``
and ``onnxruntime.quantization.quantize_dynamic``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

VARIANTS = ("fp16", "int8")
DESCRIPTIONS = {
    "fp16": "float16 weights and compute, float32 inputs/outputs; for CUDA serving",
    "int8": "dynamically quantised int8 weights (MatMul/Gemm/Conv); for CPU serving",
}


def _fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True))
    # The converter appends its input casts after the nodes that read them;
    # onnx.checker requires topological order, so restore it.
    converted.topological_sort()
    onnx.save(converted.model, str(target))


def _int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def add_variants(root: Path, variants: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the variant graphs beside the fp32 ones.

    Returns:
        The manifest's ``variants`` entry and the variants' parity with fp32
        (largest probability difference over a few greedy steps on probe images).
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(
            f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}"
        )
    convert = {"fp16": _fp16, "int8": _int8}
    entries: dict[str, Any] = {}
    for variant in variants:
        files = {}
        for graph in ("encoder", "decoder"):
            target = root / f"{graph}.{variant}.onnx"
            convert[variant](root / f"{graph}.onnx", target)
            files[graph] = target.name
        entries[variant] = {**files, "description": DESCRIPTIONS[variant]}
    return entries, {v: _parity(root, entries, v) for v in variants}


def _parity(root: Path, entries: dict[str, Any], variant: str, steps: int = 5) -> dict[str, float]:
    import onnxruntime as ort

    def sessions(encoder: str, decoder: str):
        make = lambda name: ort.InferenceSession(
            str(root / name), providers=["CPUExecutionProvider"]
        )  # noqa: E731
        return make(encoder), make(decoder)

    reference = sessions("encoder.onnx", "decoder.onnx")
    candidate = sessions(entries[variant]["encoder"], entries[variant]["decoder"])
    shape = reference[0].get_inputs()[0].shape
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (4, *shape[1:])).astype(np.float32)
    runs = []
    for encoder, decoder in (reference, candidate):
        features, h, c = encoder.run(["features", "init_h", "init_c"], {"images": images})
        runs.append((decoder, features, h, c))
    tokens = np.ones(len(images), np.int32)
    worst = 0.0
    for _ in range(steps):
        outputs = []
        for i, (decoder, features, h, c) in enumerate(runs):
            logp, h, c = decoder.run(
                ["log_probs", "h_out", "c_out"],
                {"features": features, "token": tokens, "h": h, "c": c},
            )
            runs[i] = (decoder, features, h, c)
            outputs.append(logp)
        worst = max(worst, float(np.abs(np.exp(outputs[0]) - np.exp(outputs[1])).max()))
        tokens = np.argmax(outputs[0], axis=-1).astype(np.int32)
    return {"probs": worst}
