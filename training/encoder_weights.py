"""Pretrained weights of a backbone: which file, loading it, its identity for cache keys.

They never come from the network except through Keras. ``weights`` is one of:

* ``None`` or ``"random"``: random initialisation (tests, or a model trained end to
  end such as ``small_cnn``).
* a path to a ``.h5`` or ``.weights.h5`` file holding the backbone's weights
  without the classifier (Keras's ``*_notop.h5`` file, or what
  :func:`training.backbones.build_backbone` ``(...).save_weights`` wrote).
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

import hashlib
import logging
import os
import warnings
from pathlib import Path

import keras

from training.backbones import (
    APPLICATIONS,
    SMALL_CNN,
    EncoderError,
    application,
    preprocessing_for,
)

# BASE_WEIGHTS_PATH and friends); probed before Keras is asked to download.
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"
# A machine offline fails to connect (no name, no route, packets dropped): that is
# what the probe waits for, at most this long. Once connected, an answer may be slow.
PROBE_SECONDS = 0.6

log = logging.getLogger(__name__)


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
    app = application(name)
    size = input_size or app.size
    # Keras has MobileNetV2 notop weights for these sizes and falls back to 224.
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return app.notop_file.format(rows=rows)
