"""The tf.distribute strategy and precision, chosen from the environment."""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored with ``TF_CONFIG``, Mirrored on several GPUs, else the default.

    A Kubernetes Job sets ``TF_CONFIG`` on every worker; nothing here schedules.
    """
    if os.environ.get("TF_CONFIG"):
        cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
        log.info("strategy: MultiWorkerMirroredStrategy over %s", cluster)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("strategy: MirroredStrategy over %d GPUs", len(gpus))
        return tf.distribute.MirroredStrategy()
    log.info("strategy: default (%s)", "GPU" if gpus else "CPU")
    return tf.distribute.get_strategy()


def set_precision(mode: str) -> str:
    """``mixed_float16`` on a GPU when ``auto`` or ``on``; float32 otherwise."""
    use_mixed = mode == "on" or (mode == "auto" and bool(tf.config.list_physical_devices("GPU")))
    policy = "mixed_float16" if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy
