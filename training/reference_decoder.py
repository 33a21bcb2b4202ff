"""Keras side of decoding: the reference that the ONNX server must match word for word.

The search itself is :mod:`captioner.decoding`; this module only adapts a
:class:`CaptionModel` to its step interface with compiled TensorFlow functions.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from captioner.consensus import ConsensusReranker
from captioner.decoding import Candidate, DecodeOptions, decode
from captioner.images import preprocess
from captioner.text import Vocabulary
from training.datasets.base import CaptionDataset
from training.models.captioner import CaptionModel


class KerasStepDecoder:
    """:class:`captioner.decoding.StepDecoder` over a Keras model."""

    def __init__(self, model: CaptionModel):
        self.model = model
        # No autograph: these are plain Keras ops without Python control flow on tensors,
        # and autograph's conversion cache once handed an ensemble's ``step`` the
        # converted ``initial_state`` in a process that had trained its members.
        self._encode = tf.function(model.encode, reduce_retracing=True, autograph=False)
        self._init = tf.function(model.initial_state, reduce_retracing=True, autograph=False)
        self._step = tf.function(model.step, reduce_retracing=True, autograph=False)

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self._encode(tf.constant(images, tf.float32)).numpy()

    def initial_state(self, features: np.ndarray) -> list[np.ndarray]:
        return [s.numpy() for s in self._init(tf.constant(features))]

    def step(self, features, tokens, state):
        logp, new_state, alpha = self._step(
            tf.constant(features), tf.constant(tokens, tf.int32), [tf.constant(s) for s in state]
        )
        return (
            logp.numpy(),
            [s.numpy() for s in new_state],
            None if alpha is None else alpha.numpy(),
        )


def step_decoder(model: CaptionModel) -> KerasStepDecoder:
    """The model's step decoder, made once: each new one would trace its functions again."""
    decoder = getattr(model, "_step_decoder", None)
    if decoder is None:
        decoder = KerasStepDecoder(model)
        model._step_decoder = decoder
    return decoder


def caption_batches(
    model: CaptionModel,
    vocab: Vocabulary,
    dataset: CaptionDataset,
    options: DecodeOptions,
    batch_size: int = 64,
    reranker: ConsensusReranker | None = None,
) -> Iterator[tuple[list[str], list[list[Candidate]]]]:
    """Decode a dataset in batches: yields image ids and their ranked candidates.

    With a ``reranker``, each image's candidates are re-ranked by consensus, as the
    service does with a package that carries one.
    """
    decoder = step_decoder(model)
    spec = model.config.preprocessing()
    examples = dataset.examples
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        images = np.stack([preprocess(dataset.image(ex), spec) for ex in chunk])
        features = decoder.encode(images)
        state = decoder.initial_state(features)
        candidates = decode(decoder, features, state, vocab.start_id, vocab.end_id, options)
        if reranker is not None:
            candidates = [
                reranker.rerank(f, c, vocab) for f, c in zip(features, candidates, strict=True)
            ]
        yield [ex.image_id for ex in chunk], candidates


def caption_dataset(
    model: CaptionModel,
    vocab: Vocabulary,
    dataset: CaptionDataset,
    options: DecodeOptions,
    batch_size: int = 64,
    reranker: ConsensusReranker | None = None,
) -> dict[str, str]:
    """The best caption for every image of a dataset."""
    captions: dict[str, str] = {}
    batches = caption_batches(model, vocab, dataset, options, batch_size, reranker)
    for ids, candidates in batches:
        for image_id, ranked in zip(ids, candidates, strict=True):
            captions[image_id] = vocab.decode(ranked[0].tokens)
    return captions
