"""The CPU inference image's Python set, installed as its Dockerfile does, serves a model.

For a machine with no container engine: the builder stage's COPY and pip steps are
replayed into a fresh virtual environment (same Python minor as the image), which must
hold no TensorFlow and run ``captioner serve`` on the tests' model package from outside
the repository. Where Podman is installed, test_containers.py builds the real image and
checks the same in it, so this replay is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import venv

import httpx
import pytest

from tests.delivery.dockerfiles import DOCKER, replay_pip_installs
from tests.helpers import REAL_PHOTOS, free_port, wait_until

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        shutil.which("podman") is not None,
        reason="Podman is here: test_containers.py checks the built image itself",
    ),
]

FORBIDDEN = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "tf2onnx", "torch", "jax"}


@pytest.fixture(scope="module")
def image_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    venv.create(root / "opt" / "venv", with_pip=True)
    python = root / "opt" / "venv" / "bin" / "python"
    commands = replay_pip_installs(DOCKER / "inference" / "Dockerfile.cpu", root, python)
    assert len(commands) == 2  # the lock, then the project without dependencies
    return root


def installed(python) -> dict[str, str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listing)}


def test_the_image_environment_is_the_lock_and_has_no_tensorflow(image_env):
    python = image_env / "opt" / "venv" / "bin" / "python"
    have = installed(python)
    assert not FORBIDDEN & set(have), FORBIDDEN & set(have)
    lock = (DOCKER / "inference" / "requirements-cpu.txt").read_text()
    for name, version in have.items():
        if name in ("pip", "setuptools", "captioner"):
            continue
        assert f"\n{name}=={version} " in lock.lower().replace("_", "-"), f"{name} {version}"
    where = subprocess.run(
        [str(python), "-c", "import inference, captioner; print(inference.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=image_env,
    ).stdout
    assert where.startswith(str(image_env / "opt" / "venv")), where


def test_the_image_environment_serves_the_model(image_env, served_package, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPTIONER_", "PYTHON"))}
    # The variables the image itself sets (ENV in the Dockerfile), then the chart's.
    env |= {
        "CAPTIONER_PROVIDERS": '["CPUExecutionProvider"]',
        "CAPTIONER_HOST": "127.0.0.1",
        "CAPTIONER_PORT": str(port),
        "CAPTIONER_MODEL_DIR": str(served_package),
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(image_env / "opt" / "venv" / "bin" / "captioner"), "serve"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200

        wait_until(ready, 90, what="the image environment's service to be ready")
        photo = (REAL_PHOTOS / "img1.jpg").read_bytes()
        answer = httpx.post(f"{url}/v1/captions", files={"image": ("a", photo)}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        manifest = json.loads((served_package / "manifest.json").read_text())
        assert body["caption"] and body["model"]["name"] == manifest["model"]["name"]
        assert body["model"]["execution_provider"] == "CPUExecutionProvider"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        log.close()
    # uvicorn re-raises SIGTERM after its graceful shutdown.
    assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()[-2000:]


def test_python_matches_the_image():
    dockerfile = (DOCKER / "inference" / "Dockerfile.cpu").read_text()
    assert f"python:{sys.version_info.major}.{sys.version_info.minor}-slim" in dockerfile
