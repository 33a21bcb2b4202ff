"""Precision variants of a package's graphs: FP16 for GPU serving, INT8 for CPU serving.

Both keep float32 inputs and outputs and the fp32 graphs' tensor names, so the
runtime and the manifest's tensor contract are unchanged; only the files differ.
onnxruntime's own tools convert: ``onnxruntime.transformers.float16`` and
``onnxruntime.quantization.quantize_dynamic``.

- ``fp16`` targets the CUDA execution provider. It also loads and runs on the
  CPU provider (``verify`` and the tests run there, and export checks it), but
  there it is slower than fp32: the CPU provider computes most float16 ops by
  casting to float32 and back.
- ``int8`` targets the CPU provider: MatMul/Gemm weights are int8 with a 7-bit
  range (per output channel; see ``_int8``), activations are quantised per batch
  at run time. Convolutions stay float: onnxruntime's dynamic ``ConvInteger`` ran
  the demo encoder several times slower than fp32 on CPU, for no gain in agreement.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from captioner.package import DECODER_FILE, ENCODER_FILE, Package, VariantFiles, open_package
from captioner.package import VARIANTS as PACKAGE_VARIANTS
from captioner.runtime import OnnxCaptioner
from export.parity import compare_steps, probe_images

VARIANTS = tuple(v for v in PACKAGE_VARIANTS if v != "fp32")
DESCRIPTIONS = {
    "fp16": "float16 weights and compute, float32 inputs/outputs; for CUDAExecutionProvider",
    "int8": "dynamic int8 quantisation of MatMul/Gemm weights (7-bit range), per channel; "
    "for CPUExecutionProvider",
}
# Op types left float32 in the fp16 graphs, beyond onnxruntime's default block
# list (ML-domain ops, TopK, Range, CumSum, Min/Max, ...). None are needed for
# these graphs: CUDA has float16 kernels for all their ops, and on CPU
# onnxruntime itself wraps an op that lacks a float16 kernel in casts.
FP16_KEEP_FLOAT32: tuple[str, ...] = ()
INT8_OPS = ("MatMul", "Gemm")


def _cpu_session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(
        convert_float_to_float16(
            onnx.load(str(source)),
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT32],
        )
    )
    # The converter appends its input casts after the nodes that read them;
    # onnx.checker requires topological order, so restore it.
    converted.topological_sort()
    _cpu_session(converted.model)
    onnx.save(converted.model, str(target))


@contextlib.contextmanager
def _root_logger_at(level: int) -> Iterator[None]:
    """The quantiser logs a line per tensor, and a pre-processing hint, on the root logger."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(before, level))
    try:
        yield
    finally:
        root.setLevel(before)


def _int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # No quant_pre_process: dynamic quantisation needs no calibration shapes, and
    # its symbolic shape inference would need sympy, which nothing else does.
    with _root_logger_at(logging.ERROR):
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OPS),
            per_channel=True,
            # 7-bit weights. Without VNNI (AVX2, or AVX-512 without it) onnxruntime's
            # u8s8 kernel sums pairs of products in int16, which saturates with 8-bit
            # per-channel weights: on such a CPU the trained test model's int8 greedy
            # captions matched fp32 on 42% of images, with 7 bits on 96% (the same as
            # on a VNNI machine). onnxruntime's quantize_dynamic docstring recommends it.
            reduce_range=True,
        )
    _cpu_session(onnx.load(str(target)))


def add_variants(
    package_dir: Path, variants: tuple[str, ...]
) -> tuple[dict[str, VariantFiles], dict[str, Any]]:
    """Write the variant graphs beside the fp32 ones and measure them against fp32.

    Args:
        package_dir: a package directory whose manifest already describes the
            fp32 graphs (the variants are checked against its tensor contract).
        variants: any of :data:`VARIANTS`.

    Returns:
        The manifest's ``variants`` entry (``{variant: {"encoder", "decoder",
        "description", ...}}``) and each variant's parity with fp32 on
        deterministic probe images (see :func:`parity_with_fp32`).

    Raises:
        ValueError: a variant name that is not one of :data:`VARIANTS`.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(
            f"unknown precision variant(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(VARIANTS)}"
        )
    convert = {"fp16": _fp16, "int8": _int8}
    entries: dict[str, VariantFiles] = {}
    for variant in dict.fromkeys(variants):
        files = {}
        for graph, fp32 in (("encoder", ENCODER_FILE), ("decoder", DECODER_FILE)):
            target = package_dir / f"{graph}.{variant}.onnx"  # recorded in the manifest
            convert[variant](package_dir / fp32, target)
            files[graph] = target.name
        entries[variant] = VariantFiles(**files, description=DESCRIPTIONS[variant])
    package = open_package(package_dir)
    manifest = package.manifest.model_copy(update={"variants": entries})
    package = Package(package.root, manifest, package.vocab)
    return entries, {v: parity_with_fp32(package, v) for v in entries}


def parity_with_fp32(package: Package, variant: str, steps: int = 5) -> dict[str, float]:
    """How far a variant's outputs are from fp32's, on the CPU provider (see compare_steps)."""
    reference = OnnxCaptioner(package, "fp32", providers=["CPUExecutionProvider"])
    candidate = OnnxCaptioner(package, variant, providers=["CPUExecutionProvider"])
    images = probe_images(package.preprocessing(), count=8)
    return compare_steps(
        reference,
        reference.encode(images),
        candidate,
        candidate.encode(images),
        package.vocab.start_id,
        steps,
    )
