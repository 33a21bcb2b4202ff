"""A model trained briefly on the real photos: better than the constant caption on the
held-out photos, one ensemble graph in its package, and the package's captions (beam and
consensus re-ranking included) equal the Keras reference word for word."""

from __future__ import annotations

import json

import numpy as np
import pytest

from captioner.decoding import DecodeOptions
from captioner.images import preprocess
from captioner.package import open_package
from captioner.runtime import OnnxCaptioner
from tests.helpers import SHARED_DATA
from training.datasets.registry import load_dataset
from training.datasets.spec import parse_spec
from training.evaluate import evaluate, load_model, load_reranker
from training.reference_decoder import caption_dataset
from training.run_dir import RunDir
from training.settings import EvalSettings
from training.tune import load_decoding

pytestmark = pytest.mark.java


@pytest.fixture(scope="module")
def held_out():
    return load_dataset("flickr8k[test]", SHARED_DATA)


@pytest.fixture(scope="module")
def evaluation(trained_real, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_eval")
    return evaluate(
        trained_real.model_dir,
        parse_spec("flickr8k[test]"),
        out,
        EvalSettings(data_root=SHARED_DATA),
    ), out


def test_the_model_beats_the_constant_caption_on_held_out_photos(evaluation):
    result, out = evaluation
    corpus = result.corpus
    assert result.served.endswith("+rerank") or result.served.startswith("beam")
    assert corpus[result.served]["CIDEr"] > corpus["constant"]["CIDEr"] + 0.05
    assert corpus[result.served]["BLEU-1"] > corpus["constant"]["BLEU-1"]
    scores = json.loads((out / RunDir.SCORES_FILE).read_text())
    paired = scores["intervals"][f"{result.served} - constant"]
    assert paired["low"] <= paired["mean"] <= paired["high"]
    assert "nearest-neighbour" in corpus
    assert len(list((out / "examples").glob("*.png"))) == 8


def test_the_ensemble_is_one_decoder_averaging_its_members(trained_real):
    model, _ = load_model(trained_real.model_dir)
    assert model.config.members == 2
    features = np.random.default_rng(0).normal(size=(3, 1280)).astype(np.float32)
    tokens = np.array([1, 5, 9], np.int32)
    state = model.initial_state(features)
    logp, _, _ = model.step(features, tokens, state)
    u = model.decoder.member_units
    members = []
    for i, member in enumerate(model.decoder.members):
        part = [s[:, i * u : (i + 1) * u] for s in state]
        logits, _, _ = member.step(features, tokens, part)
        members.append(
            np.exp(np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True)))
        )
    np.testing.assert_allclose(np.exp(np.asarray(logp)), np.mean(members, axis=0), atol=1e-6)


def test_the_package_carries_the_choice_and_captions_as_keras_does(
    trained_real, real_package, held_out
):
    package = open_package(real_package)
    chosen = load_decoding(trained_real.model_dir)
    assert package.decoding().beam_size == chosen.beam_size
    assert package.decoding().rerank == chosen.rerank
    model, vocab = load_model(trained_real.model_dir)
    reranker = load_reranker(trained_real.model_dir)
    options = DecodeOptions(chosen.beam_size, vocab.max_length, chosen.length_penalty)
    reference = caption_dataset(model, vocab, held_out, options, reranker=reranker)
    runtime = OnnxCaptioner(package, providers=["CPUExecutionProvider"])
    spec = package.preprocessing()
    images = np.stack([preprocess(held_out.image(ex), spec) for ex in held_out.examples])
    served = {
        ex.image_id: package.vocab.decode(c[0].tokens)
        for ex, c in zip(held_out.examples, runtime.caption(images, options), strict=True)
    }
    assert served == reference
