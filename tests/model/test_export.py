"""The ONNX export: parity with Keras, and a package that verifies or is refused, saying why.

Parity is measured on real inputs (``shapes[test]`` images through the one
preprocessing implementation), for both architectures: step probabilities within
1e-4, and greedy and beam captions identical on every test image.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest
from PIL import Image

from captioner.decoding import Candidate, DecodeOptions
from captioner.images import preprocess
from captioner.package import FORMAT_VERSION, MANIFEST, PackageError, open_package, sha256
from captioner.runtime import OnnxCaptioner
from captioner.text import Vocabulary
from captioner.verify import verify
from export.package import build_package
from export.parity import probe_images
from tests.helpers import SHARED_DATA
from training.datasets.base import CaptionDataset
from training.datasets.shapes import load_shapes
from training.evaluate import load_model
from training.models.captioner import CaptionModel, ModelConfig
from training.reference_decoder import caption_batches, step_decoder
from training.run_dir import RunDir, TrainedModel

TOLERANCE = 1e-4  # the bar for fp32 probabilities (and encoder features)
TRAINED = {"attention": "trained", "merge": "trained_merge"}


@dataclass
class Exported:
    architecture: str
    package_dir: Path
    model: CaptionModel
    vocab: Vocabulary
    runtime: OnnxCaptioner


@pytest.fixture(scope="module")
def test_split() -> CaptionDataset:
    return load_shapes("test")


@pytest.fixture(scope="module", params=list(TRAINED))
def exported(request, tmp_path_factory) -> Exported:
    run = request.getfixturevalue(TRAINED[request.param])
    if request.param == "attention":  # the session's package: the same build_package call
        out = request.getfixturevalue("package_dir")
    else:
        out = build_package(
            run.model_dir, tmp_path_factory.mktemp(f"package-{request.param}") / "package"
        )
    model, vocab = load_model(run.model_dir)
    runtime = OnnxCaptioner(open_package(out), providers=["CPUExecutionProvider"])
    return Exported(request.param, out, model, vocab, runtime)


def _images(dataset: CaptionDataset, model: CaptionModel) -> np.ndarray:
    spec = model.config.preprocessing()
    return np.stack([preprocess(dataset.image(ex), spec) for ex in dataset.examples])


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_step_probabilities_match_keras(exported, test_split):
    """Every decoding step of a caption, fed the same tokens, on 64 real test images."""
    images = _images(test_split, exported.model)[:64]
    keras_step = step_decoder(exported.model)
    k_features = keras_step.encode(images)
    k_state = keras_step.initial_state(k_features)
    o_features, o_state = exported.runtime.encode(images)
    assert _max_diff(k_features, o_features) <= TOLERANCE
    for k, o in zip(k_state, o_state, strict=True):
        assert _max_diff(k, o) <= TOLERANCE
    tokens = np.full(len(images), exported.vocab.start_id, np.int32)
    worst = {"probs": 0.0, "log_probs": 0.0, "state": 0.0, "attention": 0.0}
    peak = 0.0
    for _ in range(exported.vocab.max_length + 1):
        k_logp, k_state, k_alpha = keras_step.step(k_features, tokens, k_state)
        o_logp, o_state, o_alpha = exported.runtime.step(o_features, tokens, o_state)
        worst["probs"] = max(worst["probs"], _max_diff(np.exp(k_logp), np.exp(o_logp)))
        worst["log_probs"] = max(worst["log_probs"], _max_diff(k_logp, o_logp))
        for k, o in zip(k_state, o_state, strict=True):
            worst["state"] = max(worst["state"], _max_diff(k, o))
        assert (k_alpha is None) == (o_alpha is None) == (exported.architecture == "merge")
        if k_alpha is not None:
            worst["attention"] = max(worst["attention"], _max_diff(k_alpha, o_alpha))
        peak = max(peak, float(np.exp(k_logp).max()))
        tokens = np.argmax(k_logp, axis=-1).astype(np.int32)
    # A trained model is confident somewhere: the comparison is not between flat rows.
    assert peak > 0.5
    assert worst["probs"] <= TOLERANCE, worst
    assert worst["log_probs"] <= 1e-3, worst
    assert worst["state"] <= TOLERANCE, worst
    assert worst["attention"] <= TOLERANCE, worst


def _describe(vocab: Vocabulary, image_id: str, keras_c: Candidate, onnx_c: Candidate) -> str:
    return (
        f"{image_id}: keras {vocab.decode(keras_c.tokens)!r} ({keras_c.score:.5f}) "
        f"vs onnx {vocab.decode(onnx_c.tokens)!r} ({onnx_c.score:.5f})"
    )


@pytest.mark.parametrize("beam_size", [1, 3])
def test_captions_match_keras_on_every_test_image(exported, test_split, beam_size):
    vocab = exported.vocab
    options = DecodeOptions(beam_size, vocab.max_length)
    keras_best: dict[str, Candidate] = {}
    for ids, candidates in caption_batches(exported.model, vocab, test_split, options):
        keras_best.update((i, c[0]) for i, c in zip(ids, candidates, strict=True))
    images = _images(test_split, exported.model)
    onnx_best: list[Candidate] = []
    for start in range(0, len(images), 64):
        onnx_best += [c[0] for c in exported.runtime.caption(images[start : start + 64], options)]
    ids = [ex.image_id for ex in test_split.examples]
    assert len(ids) == len(onnx_best) == len(keras_best) == 500
    differ = [
        _describe(vocab, i, keras_best[i], o)
        for i, o in zip(ids, onnx_best, strict=True)
        if keras_best[i].tokens != o.tokens
    ]
    assert not differ, f"{len(differ)}/500 captions differ:\n" + "\n".join(differ[:10])
    pairs = zip(ids, onnx_best, strict=True)
    drift = max(abs(keras_best[i].log_prob - o.log_prob) for i, o in pairs)
    assert drift <= 1e-3
    # Agreement means something only if the captions depend on the image (the briefly
    # trained merge model has had 19 to 65 distinct captions on the 500 images).
    assert len({tuple(c.tokens) for c in onnx_best}) > 5


# The package: verified as trained, refused when damaged, with the reason.


@pytest.fixture(scope="module")
def package_dir(served_package) -> Path:
    """``build_package`` of the trained attention model, fp32 only: the session's served
    package, built once (the tests below damage copies of it, never it)."""
    return served_package


@pytest.fixture
def spare(package_dir, tmp_path) -> Path:
    return Path(shutil.copytree(package_dir, tmp_path / "package"))


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write_manifest(root: Path, manifest: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_trained_package_verifies(package_dir, trained):
    result = verify(package_dir)
    assert "sha256 of every file" in result.checks
    assert "fp32: probe image decoded" in result.checks
    assert isinstance(result.probe_captions["fp32"], str)
    manifest = result.package.manifest
    vocab = TrainedModel.load(trained.model_dir).vocab
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.architecture == "attention"
    assert manifest.dataset == "shapes[train]"
    assert manifest.vocabulary.size == len(vocab)
    assert manifest.vocabulary.max_length == vocab.max_length
    assert {t.name for t in manifest.decoder.outputs} == {
        "log_probs",
        "h_out",
        "c_out",
        "attention",
    }
    assert set(manifest.files) == {"encoder.onnx", "decoder.onnx", "vocab.json"}
    for name, digest in manifest.files.items():
        assert sha256(package_dir / name) == digest
    assert manifest.parity["fp32"]["probs"] <= TOLERANCE


@pytest.mark.parametrize("name", ["encoder.onnx", "decoder.onnx", "vocab.json"])
def test_a_flipped_byte_is_refused(spare, name):
    data = bytearray((spare / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (spare / name).write_bytes(bytes(data))
    with pytest.raises(PackageError, match=rf"{name}: sha256 mismatch"):
        verify(spare)


def test_a_missing_file_is_refused(spare):
    (spare / "decoder.onnx").unlink()
    with pytest.raises(PackageError, match=r"decoder\.onnx: missing"):
        verify(spare)


def test_a_renamed_tensor_is_refused(spare):
    graph = onnx.load(str(spare / "decoder.onnx"))
    for node in graph.graph.node:
        node.output[:] = ["scores" if o == "log_probs" else o for o in node.output]
    for output in graph.graph.output:
        if output.name == "log_probs":
            output.name = "scores"
    onnx.save(graph, str(spare / "decoder.onnx"))
    manifest = _manifest(spare)
    manifest["files"]["decoder.onnx"] = sha256(spare / "decoder.onnx")
    _write_manifest(spare, manifest)
    open_package(spare)  # hashes match: only the tensor names can give it away
    with pytest.raises(PackageError, match=r"decoder outputs .*'log_probs'.*'scores'"):
        verify(spare)


def test_an_unsupported_format_version_is_refused(spare):
    manifest = _manifest(spare)
    manifest["format_version"] = FORMAT_VERSION + 1
    _write_manifest(spare, manifest)
    with pytest.raises(
        PackageError, match=rf"format version {FORMAT_VERSION + 1} is not supported"
    ):
        verify(spare)


def test_a_vocabulary_size_mismatch_is_refused(spare):
    manifest = _manifest(spare)
    size = manifest["vocabulary"]["size"]
    manifest["vocabulary"]["size"] = size + 1
    _write_manifest(spare, manifest)
    with pytest.raises(PackageError, match=rf"vocab\.json has {size} tokens.* says {size + 1}"):
        verify(spare)


def _tar(root: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="package")
    return archive


def test_a_tar_gz_package_opens_and_verifies(package_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # unpack where the test cleans up
    result = verify(_tar(package_dir, tmp_path / "package.tar.gz"))
    assert result.package.root.is_relative_to(tmp_path)
    assert result.package.manifest.model_dump(mode="json") == _manifest(package_dir)
    assert "fp32: probe image decoded" in result.checks


def test_a_damaged_tar_gz_package_is_refused(spare, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (spare / "encoder.onnx").unlink()
    with pytest.raises(PackageError, match=r"encoder\.onnx: missing"):
        verify(_tar(spare, tmp_path / "package.tar.gz"))


# Xception at 299x299: the backbone export, which the shapes models never exercise.

REAL_PHOTOS = SHARED_DATA / "real_photos"


def _calibrate_batch_norm(model: CaptionModel, images: np.ndarray) -> None:
    """Set every BatchNorm's moving statistics to the batch statistics of IMAGES.

    A randomly initialised Xception shrinks its activations layer after layer (its
    pooled features come out near 1e-4), which would make an absolute tolerance of
    1e-4 meaningless; calibrated, the features are of order 1, as trained ones are.
    """
    backbone = next(layer for layer in model.encoder.layers if isinstance(layer, keras.Model))
    norms = [
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms
    for norm in norms:
        norm.momentum = 0.0  # the moving statistics become this batch's
    backbone.trainable = True  # a frozen BatchNorm ignores training=True
    backbone(images, training=True)
    backbone.trainable = False


@pytest.fixture(scope="module")
def xception(tmp_path_factory) -> tuple[CaptionModel, Path]:
    root = tmp_path_factory.mktemp("xception")
    vocab = Vocabulary.build(["a dog runs on the grass", "two people sit on a bench"])
    model = CaptionModel(
        ModelConfig("merge", vocab_size=len(vocab), encoder="xception", input_size=299)
    )
    model.build_all()
    _calibrate_batch_norm(model, probe_images(model.config.preprocessing(), count=2))
    run = RunDir(root)
    TrainedModel(model, vocab).save(run.model_dir)
    return model, build_package(run.model_dir, run.package_dir)


def test_xception_merge_model_exports_at_299(xception):
    _, package = xception
    result = verify(package)
    manifest = result.package.manifest
    assert manifest.encoder.name == "xception"
    assert manifest.encoder.input_size == [299, 299]
    assert manifest.encoder.preprocessing["scaling"] == "tf"
    assert manifest.encoder.inputs[0].shape == [None, 299, 299, 3]
    assert manifest.encoder.shape("features") == [None, 2048]
    assert "fp32: probe image decoded" in result.checks


def test_xception_encoder_matches_keras_on_real_photos(xception):
    photos = sorted(REAL_PHOTOS.glob("*.jpg"))[:2]
    if len(photos) < 2:
        pytest.skip(f"needs two real photos in {REAL_PHOTOS}")
    model, package = xception
    spec = model.config.preprocessing()
    images = np.stack([preprocess(Image.open(p), spec) for p in photos])
    keras_step = step_decoder(model)
    k_features = keras_step.encode(images)
    k_state = keras_step.initial_state(k_features)
    runtime = OnnxCaptioner(open_package(package), providers=["CPUExecutionProvider"])
    o_features, o_state = runtime.encode(images)
    assert np.abs(k_features).max() > 0.1  # features of order 1: the tolerance means something
    assert _max_diff(k_features, o_features) <= TOLERANCE
    for k, o in zip(k_state, o_state, strict=True):
        assert _max_diff(k, o) <= TOLERANCE


def test_an_encoder_batch_in_chunks_gives_the_whole_batch_s_outputs(package_dir):
    """encoder_chunk bounds one encoder run (and so ONNX Runtime's arena), not the result."""
    package = open_package(package_dir)
    spec = package.preprocessing()
    images = np.random.default_rng(0).uniform(-1, 1, (7, spec.height, spec.width, 3))
    whole = OnnxCaptioner(package, providers=["CPUExecutionProvider"])
    chunked = OnnxCaptioner(package, providers=["CPUExecutionProvider"], encoder_chunk=3)
    features, state = whole.encode(images.astype(np.float32))
    parts, part_state = chunked.encode(images.astype(np.float32))
    assert parts.shape == features.shape
    np.testing.assert_allclose(parts, features, rtol=1e-5, atol=1e-6)
    for a, b in zip(part_state, state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="encoder_chunk"):
        OnnxCaptioner(package, providers=["CPUExecutionProvider"], encoder_chunk=-1)
