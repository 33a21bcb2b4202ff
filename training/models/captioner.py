"""The captioning model: an image encoder and a decoder, saved and loaded as a pair.

``call`` runs teacher forcing for training. ``encode`` + ``initial_state`` +
``step`` are the decoding interface that search, evaluation and export use.
The encoder may be skipped at training time by feeding cached ``features``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
from keras import ops

from captioner.images import Preprocessing
from training.encoders import build_encoder, encoder_info
from training.models.ensemble import MEMBER_CLASSES, EnsembleDecoder

Architecture = Literal["merge", "attention"]
MODEL_FORMAT = 1
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "model.weights.h5"


class ModelFileError(ValueError):
    """A saved model directory that is missing files or does not match its config."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model before its weights are loaded."""

    architecture: Architecture
    vocab_size: int
    encoder: str = "small_cnn"
    input_size: int | None = None
    train_encoder: bool = False
    decoder: dict[str, Any] = field(default_factory=dict)
    members: int = 1  # above 1: an ensemble of that many decoders (training/models/ensemble.py)

    def __post_init__(self) -> None:
        if self.architecture not in ("merge", "attention"):
            raise ValueError(
                f"architecture must be 'merge' or 'attention', got {self.architecture!r}"
            )
        if self.members < 1:
            raise ValueError(f"members must be at least 1, got {self.members}")

    @property
    def feature_output(self) -> Literal["pooled", "grid"]:
        return "pooled" if self.architecture == "merge" else "grid"

    def preprocessing(self) -> Preprocessing:
        return encoder_info(self.encoder, self.input_size).preprocessing


@keras.saving.register_keras_serializable(package="captioner")
class CaptionModel(keras.Model):
    """Encoder + decoder. Inputs: ``{"images" or "features": ..., "tokens": [B, T]}``."""

    def __init__(self, config: ModelConfig, encoder_weights: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = build_encoder(
            config.encoder,
            output=config.feature_output,
            input_size=config.input_size,
            weights=encoder_weights,
            trainable=config.train_encoder,
        )
        decoder_cls = MEMBER_CLASSES[config.architecture]
        if config.members > 1:
            self.decoder = EnsembleDecoder(
                config.vocab_size, config.architecture, config.members, config.decoder,
                name="decoder",
            )  # fmt: skip
            hyper = self.decoder.members[0].get_config()
        else:
            self.decoder = decoder_cls(
                vocab_size=config.vocab_size, name="decoder", **config.decoder
            )
            hyper = self.decoder.get_config()
        # Record every decoder hyperparameter, defaults included, so a saved model
        # never depends on what the defaults are when it is loaded.
        accepted = inspect.signature(decoder_cls.__init__).parameters
        full = {k: hyper[k] for k in accepted if k in hyper and k != "vocab_size"}
        self.config = replace(config, decoder=full)

    def call(self, inputs, training=False):
        if "features" in inputs:
            features = inputs["features"]
        else:
            features = self.encoder(
                inputs["images"], training=training and self.config.train_encoder
            )
        return self.decoder(features, inputs["tokens"], training=training)

    def encode(self, images):
        return self.encoder(images, training=False)

    def initial_state(self, features):
        return self.decoder.initial_state(features)

    def step(self, features, token, state):
        """Log-probabilities [B, V], new state and attention weights (or None)."""
        logits, state, alpha = self.decoder.step(features, token, state)
        return ops.log_softmax(ops.cast(logits, "float32"), axis=-1), state, alpha

    def build_all(self) -> None:
        """Create every weight by running the model once on zeros."""
        pre = self.config.preprocessing()
        images = np.zeros((1, pre.height, pre.width, 3), dtype=np.float32)
        tokens = np.ones((1, 2), dtype=np.int32)
        self({"images": images, "tokens": tokens})
        features = self.encode(images)
        self.step(features, tokens[:, 0], self.initial_state(features))

    def get_config(self):
        return {"config": asdict(self.config), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(ModelConfig(**config["config"]), name=config.get("name"))

    def save_dir(self, directory: str | Path) -> Path:
        """Write ``model.json`` (format, config) and ``model.weights.h5``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{WEIGHTS_FILE}.tmp.weights.h5"
        self.save_weights(tmp)
        tmp.replace(directory / WEIGHTS_FILE)
        payload = {"format": MODEL_FORMAT, "config": asdict(self.config)}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        return directory

    @classmethod
    def load_dir(cls, directory: str | Path) -> CaptionModel:
        """Rebuild from ``model.json`` and load ``model.weights.h5``, validating both."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ModelFileError(f"{directory} is not a saved model: {path.name} is missing")
        try:
            payload = json.loads(config_path.read_text())
            if payload.get("format") != MODEL_FORMAT:
                raise ModelFileError(
                    f"{config_path}: unsupported model format {payload.get('format')!r}"
                )
            config = ModelConfig(**payload["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{config_path} is malformed: {exc}") from exc
        model = cls(config)
        model.build_all()
        try:
            model.load_weights(weights_path)
        except ValueError as exc:
            raise ModelFileError(
                f"{weights_path} does not match {config_path.name}: {exc}"
            ) from exc
        return model


def count_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))
