"""``captioner serve`` with the real-photo model: over HTTP, with the request's default
options, the held-out photos get exactly the Keras reference's captions (the beam size and
re-ranking chosen on validation, the ensemble in one graph), and the choice is visible."""

from __future__ import annotations

import httpx
import pytest

from captioner.decoding import DecodeOptions
from tests.helpers import SHARED_DATA
from training.datasets.registry import load_dataset
from training.evaluate import load_model, load_reranker
from training.reference_decoder import caption_dataset
from training.tune import load_decoding

pytestmark = pytest.mark.server


def test_default_requests_get_the_keras_reference_captions(trained_real, real_service):
    held_out = load_dataset("flickr8k[test]-24s3", SHARED_DATA)
    model, vocab = load_model(trained_real.model_dir)
    chosen = load_decoding(trained_real.model_dir)
    options = DecodeOptions(chosen.beam_size, vocab.max_length, chosen.length_penalty)
    reranker = load_reranker(trained_real.model_dir)
    reference = caption_dataset(model, vocab, held_out, options, reranker=reranker)
    served = {}
    with httpx.Client(base_url=real_service.url, timeout=60) as client:
        for example in held_out.examples:
            answer = client.post(
                "/v1/captions", files={"image": ("photo.jpg", example.path.read_bytes())}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            served[example.image_id] = body["caption"]
            assert 1 <= len(body["candidates"]) <= chosen.beam_size
            if chosen.rerank:
                consensus = [c["consensus"] for c in body["candidates"]]
                assert all(c is not None for c in consensus)
        metadata = client.get(f"/v2/models/{body['model']['name']}").json()["parameters"]
    assert served == reference
    assert metadata["default_beam_size"] == chosen.beam_size
    assert metadata["reranks"] == chosen.rerank


def test_a_greedy_request_is_not_reranked(real_service):
    photo = (SHARED_DATA / "real_photos" / "img7.jpg").read_bytes()
    answer = httpx.post(
        f"{real_service.url}/v1/captions",
        files={"image": ("p.jpg", photo)},
        data={"beam_size": "1"},
        timeout=60,
    ).json()
    assert len(answer["candidates"]) == 1
    assert answer["candidates"][0]["consensus"] is None
