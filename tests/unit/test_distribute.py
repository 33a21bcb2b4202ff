"""The tf.distribute strategy comes from the environment; precision from the device."""

import json
import os
import socket
import subprocess
import sys

CODE = (
    "import tensorflow as tf; from training.distribute import choose_strategy, set_precision; "
    "s = choose_strategy(); "
    "multi = isinstance(s, tf.distribute.MultiWorkerMirroredStrategy); "
    "print(type(s).__name__, multi, s.num_replicas_in_sync, set_precision('auto'))"
)


def run(env):
    result = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_strategy_and_float32_on_cpu():
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    assert run(env) == ["_DefaultDistributionStrategy", "False", "1", "float32"]


def test_tf_config_selects_multi_worker_mirrored():
    config = {
        "cluster": {"worker": [f"127.0.0.1:{free_port()}"]},
        "task": {"type": "worker", "index": 0},
    }
    _, multi, replicas, _ = run(dict(os.environ, TF_CONFIG=json.dumps(config)))
    assert multi == "True" and replicas == "1"
