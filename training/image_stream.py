"""Preprocessed images streamed by tf.data, decoded in parallel ahead of an encoder.

The feature cache (:mod:`training.features`) and the extraction benchmark
(``benchmarks/extract.py``) read their images through :func:`decoded`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from captioner.images import Preprocessing, preprocess
from training.datasets.base import CaptionDataset


def default_threads() -> int:
    """Decoding threads beside the encoder: tf.data's own tuning (0) when a GPU encodes,
    else a quarter of the cores, at least one.

    On a CPU the encoder is the work: decoding a Flickr8k photo costs 1/10 of encoding
    it with MobileNetV2 and 1/70 with Xception on 2 cores, and more decoding threads
    only take cores from the encoder (benchmarks/extract.py). A GPU leaves the cores
    to decoding, which then sets the pace.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return 0
    return max(1, (os.cpu_count() or 1) // 4)


def decoded(
    dataset: CaptionDataset,
    order: Sequence[int],
    spec: Preprocessing,
    threads: int | None = None,
    prefetch: int = 64,
) -> Iterator[np.ndarray]:
    """Preprocessed images of ``dataset.examples[i] for i in order``, in that order.

    A ``tf.data`` map decodes THREADS images at once (default :func:`default_threads`;
    0: tf.data tunes it) and keeps PREFETCH ready. Each image goes through
    :func:`captioner.images.preprocess`, the very code the service runs on a request,
    so the features a model trains on are the features it is served; Pillow releases
    the GIL while it decodes and resizes, so the threads do run side by side.
    """
    import tensorflow as tf

    examples = dataset.examples

    def load(index: np.ndarray) -> np.ndarray:
        return preprocess(dataset.image(examples[int(index)]), spec)

    shape = (spec.height, spec.width, 3)
    count = default_threads() if threads is None else threads
    parallel = tf.data.AUTOTUNE if count == 0 else count
    pipeline = (
        tf.data.Dataset.from_tensor_slices(np.asarray(order, dtype=np.int64))
        .map(
            lambda i: tf.ensure_shape(tf.numpy_function(load, [i], tf.float32), shape),
            num_parallel_calls=parallel,
            deterministic=True,
        )
        .prefetch(prefetch)
    )
    # tf.data's autotuning thread, on when nothing asks for it, held the pipeline's
    # end up by ~3.5 s in one run of two (measured with the encoder on 2 cores).
    options = tf.data.Options()
    options.autotune.enabled = count == 0
    pipeline = pipeline.with_options(options)
    return pipeline.as_numpy_iterator() if len(order) else iter(())
