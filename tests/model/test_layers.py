"""Shape, config and consistency tests of the decoders and the full model."""

import re

import numpy as np
import pytest

from training.models.attention import AttentionDecoder, SoftAttention
from training.models.captioner import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CaptionModel,
    ModelConfig,
    ModelFileError,
    count_params,
)
from training.models.merge import MergeDecoder


def test_merge_has_the_seeds_parameter_count():
    decoder = MergeDecoder(vocab_size=7577)
    decoder.build((None, 2048))
    # Seed: Dense(256) on 2048-d Xception features, Embedding(7577, 256), LSTM(256),
    # concatenated, Dense(7577) softmax. Caption length (32) adds no parameters.
    assert count_params(decoder) == 6_876_569
    tokens = np.ones((2, 33), np.int32)
    assert decoder(np.zeros((2, 2048), np.float32), tokens).shape == (2, 33, 7577)


def test_soft_attention_shapes_and_normalisation():
    layer = SoftAttention(units=8)
    features = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    state = np.ones((3, 6), np.float32)
    layer.build(features.shape, state.shape)
    context, alpha = layer(features, layer.precompute(features), state)
    assert context.shape == (3, 4) and alpha.shape == (3, 5)
    np.testing.assert_allclose(np.asarray(alpha).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("cls", [MergeDecoder, AttentionDecoder])
def test_config_round_trip(cls):
    layer = cls(vocab_size=11, embed_dim=8, units=12, dropout=0.1)
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def _decoder_case(architecture):
    rng = np.random.default_rng(1)
    if architecture == "merge":
        decoder, features = (
            MergeDecoder(vocab_size=13, embed_dim=8, units=12),
            rng.normal(size=(2, 20)),
        )
    else:
        decoder, features = (
            AttentionDecoder(vocab_size=13, embed_dim=8, units=12, attention_units=6),
            rng.normal(size=(2, 9, 20)),
        )
    tokens = np.array([[1, 5, 7, 4, 0], [1, 9, 3, 0, 0]], np.int32)
    return decoder, features.astype(np.float32), tokens


@pytest.mark.parametrize("architecture", ["merge", "attention"])
def test_step_reproduces_teacher_forcing(architecture):
    """Decoding by steps must see exactly what training saw, word for word."""
    decoder, features, tokens = _decoder_case(architecture)
    full = np.asarray(decoder(features, tokens, training=False))
    state = decoder.initial_state(features)
    for t in range(3):
        logits, state, alpha = decoder.step(features, tokens[:, t], state)
        np.testing.assert_allclose(np.asarray(logits), full[:, t], atol=1e-5)
        if architecture == "attention":
            assert alpha.shape == (2, 9)
        else:
            assert alpha is None


def test_attention_regulariser_is_added_in_training_only():
    decoder, features, tokens = _decoder_case("attention")
    decoder(features, tokens, training=False)
    assert not decoder.losses
    decoder(features, tokens, training=True)
    assert len(decoder.losses) == 1 and float(decoder.losses[0]) > 0


@pytest.mark.parametrize("architecture", ["merge", "attention"])
def test_model_save_load_pair(tmp_path, architecture):
    config = ModelConfig(
        architecture,
        vocab_size=17,
        encoder="small_cnn",
        input_size=32,
        decoder={"embed_dim": 8, "units": 8},
    )
    model = CaptionModel(config)
    model.build_all()
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    tokens = np.array([[1, 4, 5], [1, 6, 0]], np.int32)
    before = np.asarray(model({"images": images, "tokens": tokens}))
    loaded = CaptionModel.load_dir(model.save_dir(tmp_path / "m"))
    np.testing.assert_allclose(
        np.asarray(loaded({"images": images, "tokens": tokens})), before, atol=1e-6
    )
    assert loaded.config == model.config
    assert loaded.config.decoder["embed_dim"] == 8 and len(loaded.config.decoder) >= 4


def test_load_refuses_incomplete_or_mismatched_dirs(tmp_path):
    config = ModelConfig(
        "merge", vocab_size=17, input_size=32, decoder={"embed_dim": 8, "units": 8}
    )
    model = CaptionModel(config)
    model.build_all()
    saved = model.save_dir(tmp_path / "m")
    (saved / WEIGHTS_FILE).rename(tmp_path / "w.h5")
    with pytest.raises(ModelFileError, match=re.escape(f"{WEIGHTS_FILE} is missing")):
        CaptionModel.load_dir(saved)
    (tmp_path / "w.h5").rename(saved / WEIGHTS_FILE)
    text = (saved / CONFIG_FILE).read_text().replace('"vocab_size": 17', '"vocab_size": 19')
    (saved / CONFIG_FILE).write_text(text)
    with pytest.raises(ModelFileError):
        CaptionModel.load_dir(saved)
