"""`captioner serve --model models:/captioner@champion`: the registry's alias decides what
a real service on loopback serves."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from PIL import Image

from registry import CHALLENGER, CHAMPION, RegistrySettings, register_package, set_alias
from tests.helpers import REPO, ProcessServer
from tests.unit.test_registry import toy_package

pytestmark = pytest.mark.server

URI = "models:/captioner@champion"


@pytest.fixture
def store(tmp_path) -> dict[str, str]:
    """A registry with two versions, champion on the first: its settings as variables."""
    settings = RegistrySettings(
        registry_uri=str(tmp_path / "mlruns"), registry_cache_dir=tmp_path / "cache"
    )
    register_package(toy_package(tmp_path / "p1", "1.0.0"), settings=settings, alias=CHAMPION)
    register_package(
        toy_package(tmp_path / "p2", "1.1.0", seed=1), settings=settings, alias=CHALLENGER
    )
    return {
        "registry_uri": settings.registry_uri.get_secret_value(),
        "registry_cache_dir": str(settings.registry_cache_dir),
    }


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def served_version(store: dict[str, str], log) -> str:
    with ProcessServer(URI, log, **store) as server:
        server.wait_ready()
        answer = server.caption(png())
        assert answer.status_code == 200, answer.text
        return answer.json()["model"]["version"]


def test_serve_takes_the_champion_from_the_registry_and_follows_the_alias(store, tmp_path):
    assert served_version(store, tmp_path / "first.log") == "1.0.0"
    set_alias(CHAMPION, CHALLENGER, settings=RegistrySettings(**store))  # promote
    assert served_version(store, tmp_path / "second.log") == "1.1.0"


@pytest.mark.parametrize("missing", ["mlflow", "registry"])
def test_serve_without_the_registry_installed_names_the_extra(missing, tmp_path):
    """The serving image has neither MLflow nor the registry package: a models:/ URI is a
    clear error there, not a traceback."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None; "
        "from cli.main import main; main(['serve', '--model', 'models:/captioner@champion'])"
    )
    env = {"CAPTIONER_REGISTRY_URI": str(tmp_path / "mlruns"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "pip install 'captioner[registry]'" in result.stderr
    assert "Traceback" not in result.stderr
