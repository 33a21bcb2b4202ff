"""Interrupting training and running the same command again resumes from the last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from training.run_dir import RunDir
from training.tracking import RESUMED_FROM

EPOCHS = 6


def tiny_env(run_dir):
    env = dict(os.environ)
    env.update(
        CAPTIONER_DATASET="shapes[train]-192s1",
        CAPTIONER_VAL_IMAGES="16",
        CAPTIONER_RUN_DIR=str(run_dir),
        CAPTIONER_EMBED_DIM="16",
        CAPTIONER_UNITS="16",
        CAPTIONER_BATCH_SIZE="32",
        CAPTIONER_EPOCHS=str(EPOCHS),
        CAPTIONER_PATIENCE=str(EPOCHS),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    return env


def command():
    return [sys.executable, "-m", "cli", "train"]


def read_state(run_dir):
    path = RunDir(run_dir).state_path
    return json.loads(path.read_text()) if path.is_file() else None


def assert_same_or_linked_mlflow_run(tmp_path, before, after):
    """The resumed run continues the MLflow run, or (if a kill damaged it) links to it."""
    if after == before:
        return
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    client = mlflow.MlflowClient((tmp_path / "mlruns").as_uri())
    assert client.get_run(after).data.tags[RESUMED_FROM] == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_run_resumes(tmp_path, sig):
    run_dir = tmp_path / "run"
    env = tiny_env(run_dir)
    first = subprocess.Popen(
        command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        state = read_state(run_dir)
        if state and state["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert first.poll() is None, (
        "training finished before it could be interrupted:\n" + first.stdout.read()
    )
    first.send_signal(sig)
    first.communicate(timeout=60)
    interrupted = read_state(run_dir)
    assert 1 <= interrupted["epoch"] < EPOCHS

    second = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming after epoch {interrupted['epoch']}" in second.stderr
    final = read_state(run_dir)
    assert final["epoch"] == EPOCHS
    assert [h["epoch"] for h in final["history"]] == list(range(1, EPOCHS + 1))
    assert_same_or_linked_mlflow_run(tmp_path, interrupted["mlflow_run_id"], final["mlflow_run_id"])
    assert final["stopped"] == f"finished {EPOCHS} epochs"
    run = RunDir(run_dir)
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == [f"epoch-{EPOCHS:04d}"]
    assert (run.model_dir / RunDir.WEIGHTS_FILE).is_file()

    third = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "already finished" in third.stderr
    assert read_state(run_dir)["epoch"] == EPOCHS


def test_resume_refuses_other_settings(tmp_path):
    run_dir = tmp_path / "run"
    env = tiny_env(run_dir) | {"CAPTIONER_EPOCHS": "1"}
    assert subprocess.run(command(), env=env, capture_output=True, timeout=300).returncode == 0
    other = env | {"CAPTIONER_UNITS": "24"}
    result = subprocess.run(command(), env=other, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "other settings (units)" in result.stderr and "Traceback" not in result.stderr
