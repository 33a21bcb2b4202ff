"""The encoders that exist: a small CNN for the synthetic demo and keras.applications backbones.

For each name: the input it takes (:func:`preprocessing_for`) and the bare network,
randomly initialised (:func:`build_backbone`); :mod:`training.encoders` turns a
backbone into an encoder and :mod:`training.encoder_weights` loads its weights.

EfficientNet carries its own rescaling and normalisation layers in Keras; this
module cuts them off and declares ``torch`` scaling instead, which is exactly what
those layers compute with ImageNet weights (Keras divides by ``sqrt(std)`` after a
Normalization layer whose stored variance is the std; tensorflow/tensorflow#49930).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
from keras import layers

from captioner.images import Preprocessing, Scaling


class EncoderError(ValueError):
    """An encoder that cannot be built: unknown name, bad size, missing weights."""


@keras.saving.register_keras_serializable(package="captioner")
class SmallCNN(layers.Layer):
    """Conv3x3 (+BatchNorm) + ReLU + MaxPool2x2 blocks, one per entry of ``filters``.

    The output keeps its spatial layout (``[B, H/2^k, W/2^k, filters[-1]]``) because
    the shapes captions describe left/right/above/below relations.

    Args:
        filters: output channels of each block.
        kernel_size: side of every convolution kernel.
        batch_norm: whether to normalise after each convolution. Off by default:
            trained end to end from scratch with a fast-moving encoder, the
            moving statistics lag the batch statistics and inference-time
            features drift from training-time ones (measured: teacher-forced
            loss 0.48 in training mode vs 1.60 in inference mode after 4 epochs).
    """

    def __init__(
        self,
        filters: Sequence[int] = (32, 64, 96, 128),
        kernel_size: int = 3,
        batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.kernel_size = kernel_size
        self.batch_norm = batch_norm
        self.convs = [
            layers.Conv2D(f, kernel_size, padding="same", use_bias=not batch_norm, name=f"conv{i}")
            for i, f in enumerate(self.filters)
        ]
        self.norms = (
            [layers.BatchNormalization(name=f"bn{i}") for i in range(len(self.filters))]
            if batch_norm
            else []
        )
        self.pool = layers.MaxPooling2D(2)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = (*shape[:3], self.filters[i])
            if self.batch_norm:
                self.norms[i].build(shape)
            shape = self.pool.compute_output_shape(shape)
        self.built = True

    def call(self, images, training=False):
        x = images
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.batch_norm:
                x = self.norms[i](x, training=training)
            x = self.pool(keras.ops.relu(x))
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for _ in self.filters:
            shape = self.pool.compute_output_shape(shape)
        return (*shape[:3], self.filters[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=list(self.filters), kernel_size=self.kernel_size, batch_norm=self.batch_norm
        )
        return config


@dataclass(frozen=True)
class _Application:
    """A keras.applications backbone: constructor, default input, scaling, cache file."""

    constructor: str
    size: int
    scaling: Scaling
    notop_file: str
    min_size: int = 32
    strip_to: str | None = None  # first layer after Keras's built-in preprocessing


_KERAS = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
_EFFICIENTNET_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)

APPLICATIONS: dict[str, _Application] = {
    "xception": _Application("Xception", 299, "tf", "xception" + _KERAS, min_size=71),
    "inception_v3": _Application("InceptionV3", 299, "tf", "inception_v3" + _KERAS, min_size=75),
    "inception_resnet_v2": _Application(
        "InceptionResNetV2", 299, "tf", "inception_resnet_v2" + _KERAS, min_size=75
    ),
    "resnet50": _Application("ResNet50", 224, "caffe", "resnet50" + _KERAS),
    "resnet101": _Application("ResNet101", 224, "caffe", "resnet101" + _KERAS),
    "resnet152": _Application("ResNet152", 224, "caffe", "resnet152" + _KERAS),
    "resnet50_v2": _Application("ResNet50V2", 224, "tf", "resnet50v2" + _KERAS),
    "resnet101_v2": _Application("ResNet101V2", 224, "tf", "resnet101v2" + _KERAS),
    "vgg16": _Application("VGG16", 224, "caffe", "vgg16" + _KERAS),
    "vgg19": _Application("VGG19", 224, "caffe", "vgg19" + _KERAS),
    "densenet121": _Application("DenseNet121", 224, "torch", "densenet121" + _KERAS),
    "densenet169": _Application("DenseNet169", 224, "torch", "densenet169" + _KERAS),
    # Keras ships one notop file per input size; {rows} is filled in by _notop_file.
    "mobilenet_v2": _Application(
        "MobileNetV2",
        224,
        "tf",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
    ),
    **{
        f"efficientnet_b{i}": _Application(
            f"EfficientNetB{i}",
            size,
            "torch",
            f"efficientnetb{i}_notop.h5",
            strip_to="stem_conv_pad",
        )
        for i, size in enumerate(_EFFICIENTNET_SIZES)
    },
}

SMALL_CNN = "small_cnn"
SMALL_CNN_SIZE = 64
SMALL_CNN_SCALING: Scaling = "unit"


def known_encoders() -> list[str]:
    return [SMALL_CNN, *APPLICATIONS]


def preprocessing_for(name: str, input_size: int | None = None) -> Preprocessing:
    """The preprocessing encoder NAME expects, without building anything."""
    if name == SMALL_CNN:
        size, scaling = input_size or SMALL_CNN_SIZE, SMALL_CNN_SCALING
        if size < 16:  # four 2x2 poolings
            raise EncoderError(f"small_cnn needs an input of at least 16, got {size}")
    else:
        app = application(name)
        size, scaling = input_size or app.size, app.scaling
        if size < app.min_size:
            raise EncoderError(f"{name} needs an input of at least {app.min_size}, got {size}")
    return Preprocessing(size, size, scaling)


def build_backbone(name: str, input_size: int | None = None) -> keras.Model:
    """The bare backbone, randomly initialised: images to its last feature map [B, h, w, C].

    For keras.applications this is Keras's own model with ``include_top=False``
    (built-in preprocessing layers included), so its ``save_weights`` files are
    what ``build_encoder(weights=PATH)`` loads.
    """
    size = preprocessing_for(name, input_size).height
    if name == SMALL_CNN:
        images = keras.Input((size, size, 3), name="image")
        return keras.Model(images, SmallCNN(name="small_cnn")(images), name="small_cnn_backbone")
    app = application(name)
    constructor = getattr(keras.applications, app.constructor)
    try:
        return constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    except ValueError as exc:
        raise EncoderError(f"cannot build {name} at {size}x{size}: {exc}") from exc


def application(name: str) -> _Application:
    """The keras.applications entry of encoder NAME.

    Raises:
        EncoderError: NAME is not a known encoder.
    """
    try:
        return APPLICATIONS[name]
    except KeyError:
        raise EncoderError(
            f"unknown encoder {name!r}; known: {', '.join(known_encoders())}"
        ) from None
