import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from captioner.images import Preprocessing
from training.backbones import EncoderError, SmallCNN, build_backbone
from training.encoder_weights import weights_id
from training.encoders import build_encoder, encoder_info

MOBILENET_96 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"


def images(size, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)


def test_small_cnn_layer_shape():
    layer = SmallCNN(filters=(8, 16, 24))
    assert tuple(layer(images(32)).shape) == (2, 4, 4, 24)
    assert layer.compute_output_shape((None, 32, 32, 3)) == (None, 4, 4, 24)


def test_small_cnn_encoder_shapes_and_info():
    info = encoder_info("small_cnn")
    assert info.preprocessing == Preprocessing(64, 64, "unit")
    assert info.grid_shape == (4, 4, 128)
    assert info.pooled_dim == 4 * 4 * 128
    pooled = build_encoder("small_cnn", "pooled")
    grid = build_encoder("small_cnn", "grid")
    assert tuple(pooled(images(64)).shape) == (2, 2048)
    assert tuple(grid(images(64)).shape) == (2, 16, 128)


def test_small_cnn_pooled_keeps_positions():
    # Flattening, not averaging: the same content in another place must give other features.
    encoder = build_encoder("small_cnn", "pooled", trainable=True)
    left = np.zeros((1, 64, 64, 3), np.float32)
    left[0, 20:40, 4:24] = 1.0
    right = left[:, :, ::-1].copy()
    outputs = encoder.predict_on_batch(np.concatenate([left, right]))
    assert not np.allclose(outputs[0], outputs[1])


def test_small_cnn_config_round_trip():
    layer = SmallCNN(filters=(8, 16), kernel_size=5, batch_norm=False, name="cnn")
    x = images(16)
    expected = layer(x)
    clone = SmallCNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), expected, rtol=1e-6, atol=1e-6)
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "captioner>SmallCNN"
    assert keras.saving.deserialize_keras_object(serialized).get_config() == layer.get_config()


def test_trainable_flag():
    assert build_encoder("small_cnn", "grid", trainable=True).trainable_weights
    assert not build_encoder("small_cnn", "grid", trainable=False).trainable_weights


def test_xception_shapes_at_small_size():
    encoder = build_encoder("xception", "grid", input_size=71)
    pooled = build_encoder("xception", "pooled", input_size=71)
    info = encoder_info("xception", 71)
    assert info.preprocessing == Preprocessing(71, 71, "tf")
    h, w, c = info.grid_shape
    assert c == 2048 and info.pooled_dim == 2048
    assert tuple(encoder(images(71, batch=1)).shape) == (1, h * w, 2048)
    assert tuple(pooled(images(71, batch=1)).shape) == (1, 2048)


def test_xception_default_info_matches_the_seed():
    info = encoder_info("xception")
    assert info.preprocessing == Preprocessing(299, 299, "tf")
    assert info.grid_shape == (10, 10, 2048) and info.pooled_dim == 2048


def test_mobilenet_v2_shapes():
    info = encoder_info("mobilenet_v2", 96)
    assert info.grid_shape == (3, 3, 1280) and info.preprocessing.scaling == "tf"
    encoder = build_encoder("mobilenet_v2", "grid", input_size=96)
    assert tuple(encoder(images(96, batch=1)).shape) == (1, 9, 1280)


def test_efficientnet_takes_torch_scaled_input_without_its_own_rescaling():
    assert encoder_info("efficientnet_b0", 32).preprocessing.scaling == "torch"
    encoder = build_encoder("efficientnet_b0", "pooled", input_size=32)
    kinds = {type(layer).__name__ for layer in encoder.layers[1].layers}
    assert "Rescaling" not in kinds and "Normalization" not in kinds


def test_unknown_name_and_output():
    with pytest.raises(EncoderError, match="known: small_cnn, xception"):
        build_encoder("alexnet", "pooled")
    with pytest.raises(EncoderError, match="output"):
        build_encoder("small_cnn", "mean")
    with pytest.raises(EncoderError, match="at least 71"):
        encoder_info("xception", 64)
    with pytest.raises(EncoderError, match="at least 16"):
        build_encoder("small_cnn", "grid", input_size=8)


@pytest.fixture
def silent_network(monkeypatch):
    """Keras's download host replaced by a loopback port whose listen backlog is full, so
    the kernel drops new connections' SYNs: the worst offline case (a network that
    swallows packets, so only a timeout ends the wait), without leaving loopback."""
    import socket

    from training import encoder_weights

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    queued = []
    for _ in range(4):  # fill the backlog; nothing ever accepts
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        queued.append(sock)
    monkeypatch.setattr(encoder_weights, "KERAS_ORIGIN", f"http://127.0.0.1:{address[1]}/")
    yield
    for sock in queued:
        sock.close()
    listener.close()


def test_imagenet_offline_fails_at_once_naming_the_file_and_folder(
    tmp_path, monkeypatch, silent_network
):
    import time

    from training.encoder_weights import resolve_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(EncoderError) as error:
        resolve_weights("mobilenet_v2", "imagenet", 96)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    message = str(error.value)
    assert f"Keras wants {MOBILENET_96} in {tmp_path / 'models'}/" in message
    assert "unreachable" in message and "keras.applications.MobileNetV2" in message
    with pytest.raises(EncoderError, match="no pretrained weights"):
        build_encoder("small_cnn", "pooled", weights="imagenet")


def save_legacy_h5(model, path):
    """Weights in the legacy .h5 layout of Keras's downloadable *_notop.h5 files."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def assert_close(actual, expected):
    # Random-init backbones give tiny activations (MobileNetV2: ~1e-11): compare relatively.
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


def test_imagenet_loads_from_the_cache_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    source = build_backbone("mobilenet_v2", 96)
    save_legacy_h5(source, tmp_path / "models" / MOBILENET_96)
    encoder = build_encoder("mobilenet_v2", "grid", input_size=96, weights="imagenet")
    x = images(96)
    expected = np.asarray(source(x, training=False)).reshape(2, 9, 1280)
    assert_close(encoder.predict_on_batch(x), expected)
    assert weights_id("mobilenet_v2", "imagenet", 96).startswith(MOBILENET_96 + ":")


def test_weights_file_round_trip(tmp_path):
    source = build_backbone("mobilenet_v2", 96)
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    x = images(96)
    expected = np.asarray(source(x, training=False)).mean(axis=(1, 2))
    loaded = build_encoder("mobilenet_v2", "pooled", input_size=96, weights=str(path))
    assert_close(loaded.predict_on_batch(x), expected)
    random = build_encoder("mobilenet_v2", "pooled", input_size=96)
    with pytest.raises(AssertionError):
        assert_close(random.predict_on_batch(x), expected)
    assert weights_id("mobilenet_v2", path).startswith("backbone.weights.h5:")
    assert weights_id("mobilenet_v2", None) == "random"


def test_bad_weights_files(tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        build_encoder("small_cnn", "grid", weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(EncoderError, match=r"\.h5"):
        build_encoder("small_cnn", "grid", weights=str(tmp_path / "weights.ckpt"))
    other = tmp_path / "vgg.weights.h5"
    build_backbone("vgg16", 32).save_weights(other)
    with pytest.raises(EncoderError, match="do not fit"):
        build_encoder("mobilenet_v2", "grid", input_size=96, weights=str(other))
