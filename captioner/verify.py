"""``captioner package verify``: everything a server would trip over, checked before it does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioner.decoding import DecodeOptions
from captioner.images import scale_pixels
from captioner.package import Package, PackageError, open_package
from captioner.runtime import OnnxCaptioner


@dataclass
class Verification:
    package: Package
    checks: list[str] = field(default_factory=list)
    probe_captions: dict[str, str] = field(default_factory=dict)


def _check_graphs(package: Package, variant: str) -> None:
    import onnx

    for path in package.graph_files(variant):
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        except Exception as exc:  # onnx raises several types for invalid graphs
            raise PackageError(f"{path.name} fails onnx.checker or shape inference: {exc}") from exc


def probe_image(package: Package) -> np.ndarray:
    """A deterministic gradient image, scaled as the encoder expects."""
    pre = package.preprocessing()
    y, x = np.mgrid[0 : pre.height, 0 : pre.width]
    pixels = np.stack([x * 255.0 / pre.width, y * 255.0 / pre.height, np.full_like(x, 128.0)], -1)
    return scale_pixels(pixels.astype(np.float32), pre.scaling)[None]


def verify(path: str | Path) -> Verification:
    """Hashes, format version, graphs (checker, shape inference), tensor names, a probe decode."""
    package = open_package(path)
    result = Verification(package, ["manifest and format version", "sha256 of every file"])
    for variant in package.variants():
        _check_graphs(package, variant)
        runtime = OnnxCaptioner(package, variant, providers=["CPUExecutionProvider"])
        result.checks.append(f"{variant}: onnx.checker, shape inference, tensor names and shapes")
        vocab = package.vocab
        candidates = runtime.caption(
            probe_image(package), DecodeOptions(beam_size=2, max_length=vocab.max_length)
        )
        if not candidates[0]:
            raise PackageError(f"{variant}: the probe image decoded to no caption")
        tokens = candidates[0][0].tokens
        if any(not 0 <= t < len(vocab) for t in tokens):
            raise PackageError(f"{variant}: the probe image decoded to invalid tokens {tokens}")
        result.probe_captions[variant] = vocab.decode(tokens)
        result.checks.append(f"{variant}: probe image decoded")
    return result
