"""The real ImageNet weights in ../shared/data load into the project's MobileNetV2 encoder.

Proof that they loaded (and that preprocessing matches them): the ImageNet head shipped
beside the weights, on the project's own pooled features, names the dog of
``real_photos/img7.jpg`` a Border collie with about the probability the README gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from captioner.images import preprocess
from tests.helpers import IMAGENET_LABELS, MOBILENET_HEAD, MOBILENET_WEIGHTS, REAL_PHOTOS
from training.backbones import EncoderError, preprocessing_for
from training.encoders import build_encoder

pytestmark = pytest.mark.skipif(
    not MOBILENET_WEIGHTS.is_file(), reason=f"no MobileNetV2 weights at {MOBILENET_WEIGHTS}"
)


@pytest.fixture(scope="module")
def pooled():
    return build_encoder("mobilenet_v2", "pooled", weights=MOBILENET_WEIGHTS)


def classify(encoder, path) -> list[tuple[str, float]]:
    with Image.open(path) as image:
        pixels = preprocess(image, preprocessing_for("mobilenet_v2"))
    features = encoder.predict_on_batch(pixels[None])
    head = np.load(MOBILENET_HEAD)
    logits = features @ head["kernel"] + head["bias"]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    labels = IMAGENET_LABELS.read_text().splitlines()
    order = np.argsort(-probs[0])[:3]
    return [(labels[i], float(probs[0, i])) for i in order]


def test_the_imagenet_head_names_the_border_collie(pooled):
    (label, probability), *_ = classify(pooled, REAL_PHOTOS / "img7.jpg")
    assert label == "Border collie"
    assert probability == pytest.approx(0.76, abs=0.05)


def test_random_weights_do_not_know_the_dog():
    random = build_encoder("mobilenet_v2", "pooled", weights=None)
    assert classify(random, REAL_PHOTOS / "img7.jpg")[0][0] != "Border collie"


def test_the_grid_for_attention_is_seven_by_seven_positions(pooled):
    grid = build_encoder("mobilenet_v2", "grid", weights=MOBILENET_WEIGHTS)
    pixels = np.zeros((2, 224, 224, 3), np.float32)
    assert grid.predict_on_batch(pixels).shape == (2, 49, 1280)
    assert pooled.predict_on_batch(pixels).shape == (2, 1280)


def test_weights_for_another_backbone_are_refused():
    with pytest.raises(EncoderError, match="do not fit"):
        build_encoder("resnet50", "pooled", weights=MOBILENET_WEIGHTS)


def test_imagenet_from_the_keras_cache_is_the_real_encoder(tmp_path, monkeypatch):
    """The shared weights, saved as Keras's own notop file into a Keras cache, load with
    ``weights="imagenet"`` and know the dog: the stand-in for Keras's download."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from training.backbones import build_backbone
    from training.encoder_weights import load_backbone_weights

    backbone = build_backbone("mobilenet_v2")
    load_backbone_weights(backbone, "mobilenet_v2", MOBILENET_WEIGHTS)
    cache = tmp_path / "models"
    cache.mkdir()
    keras_file = cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    with h5py.File(keras_file, "w") as f:  # the layout of Keras's downloadable files
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    encoder = build_encoder("mobilenet_v2", "pooled", weights="imagenet")
    (label, probability), *_ = classify(encoder, REAL_PHOTOS / "img7.jpg")
    assert label == "Border collie"
    assert probability == pytest.approx(0.76, abs=0.05)
