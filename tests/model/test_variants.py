"""Precision variants (fp16, int8): listed and hashed, verified, same tensors, close to fp32.

Speed is the benchmark's business (``benchmarks/variants.py``); nothing here is timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from captioner.decoding import DecodeOptions
from captioner.images import preprocess
from captioner.package import open_package, sha256
from captioner.runtime import OnnxCaptioner
from captioner.verify import verify
from export.variants import add_variants
from training.datasets.shapes import load_shapes

AGREEMENT_IMAGES = 100
MIN_AGREEMENT = 0.9  # share of identical greedy captions; int8 measured about 0.96 on the demo


@pytest.fixture(scope="module")
def package_dir(variants_package) -> Path:
    return variants_package


@pytest.fixture(scope="module")
def greedy_captions(package_dir) -> dict[str, list[list[int]]]:
    package = open_package(package_dir)
    dataset = load_shapes("test", AGREEMENT_IMAGES)
    pre = package.preprocessing()
    images = np.stack([preprocess(dataset.image(e), pre) for e in dataset.examples])
    options = DecodeOptions(beam_size=1, max_length=package.vocab.max_length)
    captions = {}
    for variant in package.variants():
        runtime = OnnxCaptioner(package, variant, providers=["CPUExecutionProvider"])
        captions[variant] = [c[0].tokens for c in runtime.caption(images, options)]
    return captions


def _io(path: Path) -> list[tuple[str, int]]:
    graph = onnx.load(str(path)).graph
    return [(v.name, v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output]]


def test_variants_are_listed_with_hashed_files(package_dir):
    manifest = open_package(package_dir).manifest
    assert set(manifest.variants) == {"fp16", "int8"}
    for variant, entry in manifest.variants.items():
        assert entry.description
        for name, graph in ((entry.encoder, "encoder"), (entry.decoder, "decoder")):
            assert name == f"{graph}.{variant}.onnx"
            assert manifest.files[name] == sha256(package_dir / name)
    assert set(manifest.parity["variants"]) == {"fp16", "int8"}


def test_every_variant_verifies(package_dir):
    result = verify(package_dir)
    assert set(result.probe_captions) == {"fp32", "fp16", "int8"}
    assert all(caption for caption in result.probe_captions.values())


def test_variants_keep_tensor_names_and_float32_io(package_dir):
    package = open_package(package_dir)
    for variant in ("fp16", "int8"):
        for fp32, other in zip(
            package.graph_files("fp32"), package.graph_files(variant), strict=True
        ):
            assert _io(other) == _io(fp32), (variant, other.name)


def test_int8_files_are_smaller_than_fp32(package_dir):
    package = open_package(package_dir)
    for fp32, int8 in zip(package.graph_files("fp32"), package.graph_files("int8"), strict=True):
        assert int8.stat().st_size < fp32.stat().st_size, int8.name


def test_recorded_parity_is_close_to_fp32(package_dir):
    parity = open_package(package_dir).manifest.parity["variants"]
    assert parity["fp16"]["probs"] < 0.01
    assert parity["int8"]["probs"] < 0.1
    assert min(p["tokens_agree"] for p in parity.values()) >= 0.75


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variant_captions_agree_with_fp32(greedy_captions, variant):
    pairs = zip(greedy_captions[variant], greedy_captions["fp32"], strict=True)
    agreement = float(np.mean([a == b for a, b in pairs]))
    print(f"{variant}: {agreement:.1%} of {AGREEMENT_IMAGES} greedy captions identical to fp32")
    assert agreement >= MIN_AGREEMENT


def test_unknown_variant_is_refused_before_anything_is_written(package_dir):
    before = sorted(p.name for p in package_dir.iterdir())
    with pytest.raises(ValueError, match="choose from fp16, int8") as refused:
        add_variants(package_dir, ("int8", "int4"))
    assert "'int4'" in str(refused.value)
    assert sorted(p.name for p in package_dir.iterdir()) == before
