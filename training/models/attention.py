"""Show, Attend and Tell soft attention decoder (Xu et al. 2015).

At each step the LSTM state scores every position of the encoder grid; the
softmax of those scores (the attention weights, which the UI draws) averages the
grid into a context vector, gated by a scalar computed from the state. The
LSTM reads the previous word and the context; the deep output layer combines
word, state and context. Training adds the doubly stochastic regulariser
``lambda * mean_i (1 - sum_t alpha_ti)^2`` so that every region gets attention.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="captioner")
class SoftAttention(layers.Layer):
    """Additive attention of a state over grid features, with the SAT gating scalar.

    Args:
        units: size of the attention MLP.
    """

    def __init__(self, units: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.feature_proj = layers.Dense(units, name="feature_proj")
        self.state_proj = layers.Dense(units, name="state_proj")
        self.score = layers.Dense(1, name="score")
        self.gate = layers.Dense(1, activation="sigmoid", name="gate")

    def build(self, features_shape, state_shape):
        self.feature_proj.build(features_shape)
        self.state_proj.build(state_shape)
        self.score.build((None, None, self.units))
        self.gate.build(state_shape)
        self.built = True

    def precompute(self, features):
        """The state-independent half of the scores, computed once per image."""
        return self.feature_proj(features)

    def call(self, features, projected, state):
        """Context [B, D] and weights [B, N] for features [B, N, D] and a state [B, H]."""
        hidden = ops.tanh(projected + ops.expand_dims(self.state_proj(state), 1))
        alpha = ops.softmax(ops.squeeze(self.score(hidden), -1), axis=-1)
        context = ops.sum(ops.expand_dims(alpha, -1) * features, axis=1)
        return self.gate(state) * context, alpha

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config


@keras.saving.register_keras_serializable(package="captioner")
class AttentionDecoder(layers.Layer):
    """LSTM decoder with soft attention over a feature grid [B, N, D].

    Args:
        vocab_size: output classes, ``<pad>`` included.
        embed_dim: word embedding size (also the deep-output size).
        units: LSTM units.
        attention_units: size of the attention MLP.
        dropout: dropout before the output layer.
        alpha_regularization: weight of the doubly stochastic regulariser.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        units: int = 256,
        attention_units: int = 128,
        dropout: float = 0.2,
        alpha_regularization: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.units = units
        self.attention_units = attention_units
        self.dropout = dropout
        self.alpha_regularization = alpha_regularization
        self.embedding = layers.Embedding(vocab_size, embed_dim, name="embedding")
        self.init_h = layers.Dense(units, activation="tanh", name="init_h")
        self.init_c = layers.Dense(units, activation="tanh", name="init_c")
        self.attention = SoftAttention(attention_units, name="attention")
        self.cell = layers.LSTMCell(units, name="cell")
        self.out_state = layers.Dense(embed_dim, name="out_state")
        self.out_context = layers.Dense(embed_dim, name="out_context")
        self.out_dropout = layers.Dropout(dropout)
        self.classifier = layers.Dense(vocab_size, name="classifier")

    def build(self, features_shape, tokens_shape=None):
        dim = features_shape[-1]
        self.embedding.build((None,))
        self.init_h.build((None, dim))
        self.init_c.build((None, dim))
        self.attention.build(features_shape, (None, self.units))
        self.cell.build((None, self.embed_dim + dim))
        self.out_state.build((None, self.units))
        self.out_context.build((None, dim))
        self.classifier.build((None, self.embed_dim))
        self.built = True

    def initial_state(self, features):
        """``[h, c]`` from the mean of the grid, as in the paper."""
        mean = ops.mean(features, axis=1)
        return [self.init_h(mean), self.init_c(mean)]

    def _step(self, features, projected, token, state, training=False):
        word = self.embedding(token)
        context, alpha = self.attention(features, projected, state[0])
        _, state = self.cell(ops.concatenate([word, context], axis=-1), state, training=training)
        deep = ops.tanh(word + self.out_state(state[0]) + self.out_context(context))
        logits = self.classifier(self.out_dropout(deep, training=training))
        return logits, state, alpha

    def call(self, features, tokens, training=False):
        """Logits [B, T, V] under teacher forcing; adds the attention regulariser as a loss."""
        projected = self.attention.precompute(features)
        state = self.initial_state(features)
        logits, alphas = [], []
        # Unrolled over the fixed caption length: T is small (max length + 1) and
        # an unrolled graph trains faster on CPU than a symbolic while loop.
        for t in range(tokens.shape[1]):
            step_logits, state, alpha = self._step(
                features, projected, tokens[:, t], state, training
            )
            logits.append(step_logits)
            alphas.append(alpha)
        if training and self.alpha_regularization > 0:
            mask = ops.cast(ops.not_equal(tokens, 0), alphas[0].dtype)
            attended = ops.sum(ops.stack(alphas, axis=1) * ops.expand_dims(mask, -1), axis=1)
            # Mean over positions rather than the paper's sum: with a grid larger
            # than the caption is long the sum cannot approach zero and would
            # outweigh the caption loss (the common reference implementations
            # average it the same way).
            penalty = ops.mean(ops.square(1.0 - attended))
            self.add_loss(self.alpha_regularization * penalty)
        return ops.stack(logits, axis=1)

    def step(self, features, token, state):
        """One decoding step: ``(logits [B, V], [h, c], attention weights [B, N])``."""
        return self._step(features, self.attention.precompute(features), token, state)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            units=self.units,
            attention_units=self.attention_units,
            dropout=self.dropout,
            alpha_regularization=self.alpha_regularization,
        )
        return config
