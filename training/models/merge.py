"""The seed's CNN+LSTM *merge* decoder, trained with whole-sequence teacher forcing.

The image never enters the LSTM: the LSTM reads only words, and its output is
merged (concatenated) with a projection of the image features just before the
softmax (Tanti et al. 2018). With 2048-d features, vocabulary 7577 and 256 units
this is the seed's 6,876,569 parameters.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="captioner")
class MergeDecoder(layers.Layer):
    """Image projection + word LSTM, concatenated, then a softmax layer (as logits).

    Args:
        vocab_size: output classes, ``<pad>`` included.
        embed_dim: word embedding size.
        units: LSTM units.
        image_dim: size of the Dense projection of the image features.
        dropout: dropout on the image features and on the embeddings, as in the seed.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        units: int = 256,
        image_dim: int = 256,
        dropout: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.units = units
        self.image_dim = image_dim
        self.dropout = dropout
        self.image_dropout = layers.Dropout(dropout)
        self.image_dense = layers.Dense(image_dim, activation="relu", name="image_dense")
        self.embedding = layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")
        self.embed_dropout = layers.Dropout(dropout)
        self.lstm = layers.LSTM(units, return_sequences=True, return_state=True, name="lstm")
        self.classifier = layers.Dense(vocab_size, name="classifier")

    def build(self, features_shape, tokens_shape=None):
        self.image_dense.build(features_shape)
        self.embedding.build((None, None))
        self.lstm.build((None, None, self.embed_dim))
        self.classifier.build((None, None, self.image_dim + self.units))
        self.built = True

    def project(self, features, training=False):
        """The image half of the merge: [B, D] features to [B, image_dim]."""
        return self.image_dense(self.image_dropout(features, training=training))

    def call(self, features, tokens, training=False):
        """Logits [B, T, V] for every step of ``tokens`` [B, T] (teacher forcing)."""
        image = self.project(features, training=training)
        words = self.embed_dropout(self.embedding(tokens), training=training)
        mask = ops.not_equal(tokens, 0)
        sequence, _, _ = self.lstm(words, mask=mask, training=training)
        steps = ops.shape(tokens)[1]
        image = ops.repeat(ops.expand_dims(image, 1), steps, axis=1)
        return self.classifier(ops.concatenate([image, sequence], axis=-1))

    def initial_state(self, features):
        """Zero LSTM state: in the merge model the image does not condition the LSTM."""
        batch = ops.shape(features)[0]
        zeros = ops.zeros((batch, self.units), dtype=self.compute_dtype)
        return [zeros, zeros]

    def step(self, features, token, state):
        """One decoding step.

        Args:
            features: image features [B, D].
            token: previous token ids [B].
            state: ``[h, c]``, each [B, units].

        Returns:
            ``(logits [B, V], [h, c], None)``; merge models have no attention weights.
        """
        image = self.project(features)
        words = self.embedding(token)
        # The LSTM's own cell, not the layer over a length-1 sequence: the same
        # weights and arithmetic without a loop, so the exported step stays a plain graph.
        output, (h, c) = self.lstm.cell(words, state)
        logits = self.classifier(ops.concatenate([image, output], axis=-1))
        return logits, [h, c], None

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            units=self.units,
            image_dim=self.image_dim,
            dropout=self.dropout,
        )
        return config
