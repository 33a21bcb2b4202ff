"""Behaviour of a trained model: it looks at the image, and decoding is consistent."""

import json

import numpy as np
import pytest

from captioner.decoding import DecodeOptions, decode
from captioner.images import preprocess
from training.datasets.shapes import correct_share, load_shapes
from training.datasets.spec import parse_spec
from training.evaluate import evaluate, load_model
from training.reference_decoder import KerasStepDecoder, caption_dataset
from training.run_dir import RunDir
from training.scoring import score_captions
from training.settings import EvalSettings


@pytest.fixture(scope="module")
def model_and_vocab(trained):
    return load_model(trained.model_dir)


@pytest.fixture(scope="module")
def evaluation(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(
        trained.model_dir, parse_spec("shapes[test]-200s3"), out, EvalSettings(beam_size=3)
    ), out


def test_training_improved_validation_cider(trained):
    history = trained.state.history
    assert len(history) == 6
    assert trained.state.best_score > 1.5 * history[0]["val_cider"]


def test_model_beats_the_constant_caption(evaluation):
    result, _ = evaluation
    model, constant = result.corpus["greedy"], result.corpus["constant"]
    assert model["CIDEr"] > 2 * constant["CIDEr"]
    assert model["BLEU-4"] > constant["BLEU-4"]
    assert model["correct"] > 0.3 > constant["correct"]


def test_captions_depend_on_the_image(model_and_vocab):
    model, vocab = model_and_vocab
    dataset = load_shapes("test", 60, 5)
    captions = caption_dataset(model, vocab, dataset, DecodeOptions(1, vocab.max_length))
    assert len(set(captions.values())) > 20
    shuffled = dict(zip(captions, list(captions.values())[::-1], strict=True))
    assert correct_share(captions, dataset) > correct_share(shuffled, dataset) + 0.2


def test_batched_decoding_matches_one_image_at_a_time(model_and_vocab):
    model, vocab = model_and_vocab
    dataset = load_shapes("test", 12, 9)
    decoder = KerasStepDecoder(model)
    spec = model.config.preprocessing()
    images = np.stack([preprocess(dataset.image(e), spec) for e in dataset.examples])
    features = decoder.encode(images)
    for size in (1, 3):
        options = DecodeOptions(size, vocab.max_length)
        together = [
            c[0].tokens
            for c in decode(
                decoder,
                features,
                decoder.initial_state(features),
                vocab.start_id,
                vocab.end_id,
                options,
            )
        ]
        alone = [
            decode(
                decoder,
                features[i : i + 1],
                decoder.initial_state(features[i : i + 1]),
                vocab.start_id,
                vocab.end_id,
                options,
            )[0][0].tokens
            for i in range(len(features))
        ]
        assert together == alone


def test_attention_weights_come_with_every_word(model_and_vocab):
    model, vocab = model_and_vocab
    dataset = load_shapes("test", 4, 2)
    decoder = KerasStepDecoder(model)
    spec = model.config.preprocessing()
    features = decoder.encode(
        np.stack([preprocess(dataset.image(e), spec) for e in dataset.examples])
    )
    state = decoder.initial_state(features)
    options = DecodeOptions(3, vocab.max_length)
    for candidates in decode(decoder, features, state, vocab.start_id, vocab.end_id, options):
        best = candidates[0]
        assert len(best.attention) == len(best.tokens) + 1  # one map per word and for <end>
        assert all(np.isclose(a.sum(), 1.0, atol=1e-4) and a.shape == (16,) for a in best.attention)


def test_evaluation_writes_scores_and_report(evaluation):
    result, out = evaluation
    scores = json.loads((out / RunDir.SCORES_FILE).read_text())
    assert set(scores["corpus"]) == {"greedy", "beam3", "constant", "nearest-neighbour"}
    paired = scores["intervals"]["beam3 - nearest-neighbour"]
    assert paired["low"] <= paired["mean"] <= paired["high"]
    for row in scores["corpus"].values():
        assert {"BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "correct"} <= set(row)
    per_image = json.loads((out / RunDir.PER_IMAGE_FILE).read_text())
    assert len(per_image["greedy"]) == 200
    report = result.report.read_text()
    assert "| greedy |" in report and "Best constant caption" in report
    assert len(list((out / "examples").glob("*.png"))) == 8


def test_corpus_scores_agree_with_a_direct_scoring(evaluation, trained):
    result, out = evaluation
    captions = json.loads((out / RunDir.CAPTIONS_FILE).read_text())["greedy"]
    dataset = load_shapes("test", 200, 3)
    direct = score_captions(dataset.references(), captions, metrics=("CIDEr",), tokenize=True)
    assert direct.corpus["CIDEr"] == pytest.approx(result.corpus["greedy"]["CIDEr"])
