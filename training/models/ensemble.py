"""Several decoders of one architecture as one decoder that averages their probabilities.

The members share the encoder (the same frozen features) and the vocabulary; each
was trained on its own seed. A step runs every member and returns the log of the
mean of their word distributions, so the ensemble is one step graph with the same
interface as a single decoder: its state is the members' states side by side
(``h`` and ``c`` of ``members * units``), which is how it fits the package's
decoder contract unchanged and how the service batches it like any model.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from training.models.attention import AttentionDecoder
from training.models.merge import MergeDecoder

MEMBER_CLASSES: dict[str, type[layers.Layer]] = {
    "merge": MergeDecoder,
    "attention": AttentionDecoder,
}


@keras.saving.register_keras_serializable(package="captioner")
class EnsembleDecoder(layers.Layer):
    """``members`` decoders of ``architecture``, each built with ``member_config``.

    Args:
        vocab_size: output classes, ``<pad>`` included.
        architecture: ``merge`` or ``attention``.
        members: how many decoders.
        member_config: constructor arguments of every member (without ``vocab_size``).
    """

    def __init__(
        self,
        vocab_size: int,
        architecture: str = "merge",
        members: int = 2,
        member_config: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if architecture not in MEMBER_CLASSES:
            raise ValueError(f"architecture must be one of {sorted(MEMBER_CLASSES)}")
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        self.vocab_size = vocab_size
        self.architecture = architecture
        self.member_config = dict(member_config or {})
        cls = MEMBER_CLASSES[architecture]
        self.members = [
            cls(vocab_size=vocab_size, name=f"member{i}", **self.member_config)
            for i in range(members)
        ]
        self.member_units = int(self.members[0].units)
        self.units = self.member_units * members

    def build(self, features_shape, tokens_shape=None):
        for member in self.members:
            member.build(features_shape, tokens_shape)
        self.built = True

    def _average(self, logits: list) -> object:
        probs = [ops.softmax(ops.cast(x, "float32"), axis=-1) for x in logits]
        return ops.log(ops.maximum(ops.mean(ops.stack(probs, axis=0), axis=0), 1e-30))

    def call(self, features, tokens, training=False):
        """Log of the mean probability [B, T, V] for every step of ``tokens``."""
        return self._average([m(features, tokens, training=training) for m in self.members])

    def initial_state(self, features):
        states = [m.initial_state(features) for m in self.members]
        return [
            ops.concatenate([s[0] for s in states], -1),
            ops.concatenate([s[1] for s in states], -1),
        ]

    def step(self, features, token, state):
        """One step of every member: (log mean probability [B, V], [h, c], mean attention)."""
        h, c = state
        u = self.member_units
        logits, hs, cs, alphas = [], [], [], []
        for i, member in enumerate(self.members):
            out, (h_i, c_i), alpha = member.step(
                features, token, [h[:, i * u : (i + 1) * u], c[:, i * u : (i + 1) * u]]
            )
            logits.append(out)
            hs.append(h_i)
            cs.append(c_i)
            if alpha is not None:
                alphas.append(alpha)
        alpha = ops.mean(ops.stack(alphas, 0), 0) if alphas else None
        return self._average(logits), [ops.concatenate(hs, -1), ops.concatenate(cs, -1)], alpha

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            architecture=self.architecture,
            members=len(self.members),
            member_config=self.member_config,
        )
        return config
