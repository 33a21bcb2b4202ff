"""Image encoders: a small CNN for the synthetic demo and keras.applications backbones.

Every encoder takes float32 NHWC images that :func:`captioner.images.preprocess`
already scaled per :func:`encoder_info`'s ``preprocessing``; no encoder rescales
pixels itself, so training and serving share one preprocessing implementation.
``output="pooled"`` gives ``[B, D]``; ``output="grid"`` gives the last feature map
flattened to ``[B, h*w, C]`` positions, which is what attention decoders read.

Which encoders exist and their bare backbones: :mod:`training.backbones`; their
pretrained weights (never from the network but through Keras's own cache):
:mod:`training.encoder_weights`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Literal

import keras
from keras import layers

from captioner.images import Preprocessing
from training.backbones import (
    APPLICATIONS,
    SMALL_CNN,
    EncoderError,
    build_backbone,
    preprocessing_for,
)
from training.encoder_weights import load_backbone_weights

Output = Literal["pooled", "grid"]


@dataclass(frozen=True)
class EncoderInfo:
    """What an encoder expects and what it gives.

    Attributes:
        name: the encoder's name.
        preprocessing: how images must be prepared for it.
        pooled_dim: D of the ``pooled`` output ``[B, D]``.
        grid_shape: ``(h, w, channels)`` of the last feature map; the ``grid``
            output is ``[B, h*w, channels]``.
    """

    name: str
    preprocessing: Preprocessing
    pooled_dim: int
    grid_shape: tuple[int, int, int]

    @property
    def positions(self) -> int:
        """N of the ``grid`` output."""
        return self.grid_shape[0] * self.grid_shape[1]


@functools.lru_cache(maxsize=32)
def encoder_info(name: str, input_size: int | None = None) -> EncoderInfo:
    """Input preprocessing and output sizes of encoder NAME at INPUT_SIZE (default: its own).

    Builds the randomly initialised backbone once to read its output shape.
    """
    preprocessing = preprocessing_for(name, input_size)
    grid = build_backbone(name, preprocessing.height)
    h, w, c = (int(d) for d in grid.output.shape[1:])
    pooled = h * w * c if name == SMALL_CNN else c
    return EncoderInfo(name, preprocessing, pooled, (h, w, c))


def build_encoder(
    name: str,
    output: Output,
    input_size: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    trainable: bool = False,
) -> keras.Model:
    """An encoder model: scaled float32 images [B, H, W, 3] to features.

    Args:
        name: ``small_cnn`` or a key of :data:`APPLICATIONS`.
        output: ``pooled`` ([B, D]) or ``grid`` ([B, h*w, C]).
        input_size: image side; the encoder's default when omitted.
        weights: ``None``/``"random"``, ``"imagenet"`` (the Keras cache; Keras
            downloads what is missing) or a path to a weights file; see the module
            docstring.
        trainable: whether the encoder's weights train with the decoder.
            keras.applications backbones always run BatchNorm in inference mode.

    Pooled features are the global average of the grid for keras.applications
    backbones and the flattened grid for ``small_cnn``, whose captions depend on
    where the shapes are.

    Raises:
        EncoderError: unknown name or output, bad size, missing or mismatched weights.
    """
    if output not in ("pooled", "grid"):
        raise EncoderError(f"unknown encoder output {output!r}; expected 'pooled' or 'grid'")
    preprocessing = preprocessing_for(name, input_size)
    size = preprocessing.height
    backbone = build_backbone(name, size)
    if weights not in (None, "random"):
        load_backbone_weights(backbone, name, weights, size)
    if name != SMALL_CNN and APPLICATIONS[name].strip_to:
        backbone = keras.Model(
            backbone.get_layer(APPLICATIONS[name].strip_to).input,
            backbone.output,
            name=f"{backbone.name}_unscaled",
        )
    backbone.trainable = trainable

    images = keras.Input((size, size, 3), name="image")
    if name == SMALL_CNN:
        grid = backbone(images)
    else:
        grid = backbone(images, training=False)
    h, w, c = (int(d) for d in grid.shape[1:])
    if output == "grid":
        features = layers.Reshape((h * w, c), name="grid")(grid)
    elif name == SMALL_CNN:
        features = layers.Flatten(name="pooled")(grid)
    else:
        features = layers.GlobalAveragePooling2D(name="pooled")(grid)
    return keras.Model(images, features, name=f"{name}_{output}_encoder")
