"""Image encoders: a small CNN for the synthetic demo and keras.applications backbones.

Every encoder takes float32 NHWC images that :func:`captioner.images.preprocess`
already scaled per :func:`encoder_info`'s ``preprocessing``; no encoder rescales
pixels itself, so training and serving share one preprocessing implementation.
``output="pooled"`` gives ``[B, D]``; ``output="grid"`` gives the last feature map
flattened to ``[B, h*w, C]`` positions, which is what attention decoders read.

EfficientNet carries its own rescaling and normalisation layers in Keras; this
module cuts them off and declares ``torch`` scaling instead, which is exactly what
those layers compute with ImageNet weights (Keras divides by ``sqrt(std)`` after a
Normalization layer whose stored variance is the std; tensorflow/tensorflow#49930).

Pretrained weights never come from the network. ``weights`` is one of:

* ``None`` or ``"random"``: random initialisation (tests, or a model trained end to
  end such as ``small_cnn``).
* a path to a ``.h5`` or ``.weights.h5`` file holding the backbone's weights
  without the classifier (Keras's ``*_notop.h5`` file, or what
  :func:`build_backbone` ``(...).save_weights`` wrote).
* ``"imagenet"``: Keras's own notop file in the Keras cache, ``$KERAS_HOME/models/``
  (``~/.keras/models/`` when ``KERAS_HOME`` is unset), under Keras's file name, e.g.
  ``xception_weights_tf_dim_ordering_tf_kernels_notop.h5``. When it is not there,
  Keras downloads it, exactly as ``keras.applications.Xception(weights="imagenet")``
  does for any Keras user (its URL, its hash check, its cache). Without a network
  that fails at once, before Keras tries: a one-second probe of Keras's download
  host comes first, and :class:`EncoderError` names the file Keras wants and the
  folder to put it in (copied from a machine with internet).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
from keras import layers

from captioner.images import Preprocessing, Scaling

Output = Literal["pooled", "grid"]

# Where every keras.applications weights file is downloaded from (the modules'
# BASE_WEIGHTS_PATH and friends); probed before Keras is asked to download.
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"
# A machine offline fails to connect (no name, no route, packets dropped): that is
# what the probe waits for, at most this long. Once connected, an answer may be slow.
PROBE_SECONDS = 0.6

log = logging.getLogger(__name__)


class EncoderError(ValueError):
    """An encoder that cannot be built: unknown name, bad size, missing weights."""


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
        app = _application(name)
        size, scaling = input_size or app.size, app.scaling
        if size < app.min_size:
            raise EncoderError(f"{name} needs an input of at least {app.min_size}, got {size}")
    return Preprocessing(size, size, scaling)


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
    app = _application(name)
    constructor = getattr(keras.applications, app.constructor)
    try:
        return constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    except ValueError as exc:
        raise EncoderError(f"cannot build {name} at {size}x{size}: {exc}") from exc


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


def load_backbone_weights(
    backbone: keras.Model,
    name: str,
    weights: str | os.PathLike[str],
    input_size: int | None = None,
) -> None:
    """Load ``"imagenet"`` (the Keras cache, downloaded by Keras) or a weights file.

    Raises:
        EncoderError: the file is missing, has the wrong suffix or does not fit.
    """
    path = resolve_weights(name, weights, input_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            backbone.load_weights(str(path))
        except (ValueError, KeyError) as exc:
            raise EncoderError(f"weights {path} do not fit {name}: {exc}") from exc
    for warning in caught:
        # Keras 3 only warns when a .weights.h5 file lacks some nested layers, which
        # then keep their random initial weights: a backbone must load completely.
        if "Skipping nested container" in str(warning.message):
            raise EncoderError(f"weights {path} do not fit {name}: {warning.message}")
        warnings.warn(warning.message, warning.category, stacklevel=2)


def resolve_weights(
    name: str, weights: str | os.PathLike[str], input_size: int | None = None
) -> Path:
    """The local file that WEIGHTS names for encoder NAME.

    ``"imagenet"`` missing from the Keras cache is downloaded by Keras (see the module
    docstring); nothing else is ever downloaded.
    """
    if str(weights) == "imagenet":
        if name == SMALL_CNN:
            raise EncoderError("small_cnn has no pretrained weights; it trains end to end")
        path = keras_cache_dir() / _notop_file(name, input_size)
        if not path.is_file():
            _keras_download(name, input_size, path)
        return path
    path = Path(weights).expanduser()
    if not path.name.endswith((".h5", ".hdf5")):
        raise EncoderError(
            f"weights must be None, 'random', 'imagenet' or a .h5/.weights.h5 file, got {weights!r}"
        )
    if not path.is_file():
        raise EncoderError(f"weights file {path} does not exist")
    return path


def _keras_download(name: str, input_size: int | None, path: Path) -> None:
    """Let Keras download its ImageNet notop file into its cache, or fail at once offline."""
    app = APPLICATIONS[name]
    by_hand = (
        f"Keras wants {path.name} in {path.parent}/: on a machine with internet run "
        f'`python -c "import keras; keras.applications.{app.constructor}(include_top=False)"` '
        f"and copy ~/.keras/models/{path.name} from there, or pass a weights file path."
    )
    try:
        import httpx

        # Any answer means reachable, whatever its status.
        httpx.head(KERAS_ORIGIN, timeout=httpx.Timeout(10.0, connect=PROBE_SECONDS))
    except (ImportError, httpx.HTTPError, OSError) as exc:
        raise EncoderError(
            f"ImageNet weights for {name} are not in the Keras cache, and Keras cannot "
            f"download them: {KERAS_ORIGIN} is unreachable ({exc or type(exc).__name__}). "
            + by_hand
        ) from None
    size = preprocessing_for(name, input_size).height
    log.info("%s: downloading ImageNet weights with Keras into %s", name, path.parent)
    constructor = getattr(keras.applications, app.constructor)
    try:
        constructor(include_top=False, weights="imagenet", input_shape=(size, size, 3))
    except Exception as exc:  # Keras raises several kinds (URL, HTTP, hash) for a download
        raise EncoderError(f"Keras could not download ImageNet weights for {name}: {exc}. "
                           + by_hand) from exc  # fmt: skip
    if not path.is_file():
        raise EncoderError(
            f"Keras downloaded the ImageNet weights for {name}, but not into {path.parent} "
            "(KERAS_HOME changed after Keras was imported?). " + by_hand
        )


def weights_id(
    name: str, weights: str | os.PathLike[str] | None, input_size: int | None = None
) -> str:
    """A stable identity of WEIGHTS for cache keys: ``random``, or a file's name and hash.

    Random weights differ at every build, so features cached under ``random`` are
    only meaningful for the one model instance that produced them.
    """
    if weights in (None, "random"):
        return "random"
    path = resolve_weights(name, weights, input_size)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name}:{digest.hexdigest()[:16]}"


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded model files: ``$KERAS_HOME/models`` or ``~/.keras/models``.

    Read from the environment at every call (Keras itself reads it once, at import).
    """
    home = os.environ.get("KERAS_HOME")
    if home:
        return Path(home).expanduser() / "models"
    base = Path.home()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras" / "models"


def _notop_file(name: str, input_size: int | None) -> str:
    app = _application(name)
    size = input_size or app.size
    # Keras has MobileNetV2 notop weights for these sizes and falls back to 224.
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return app.notop_file.format(rows=rows)


def _application(name: str) -> _Application:
    try:
        return APPLICATIONS[name]
    except KeyError:
        raise EncoderError(
            f"unknown encoder {name!r}; known: {', '.join(known_encoders())}"
        ) from None
