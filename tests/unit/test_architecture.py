"""Rules that keep the architecture honest (shared/DESIGN.md)."""

import ast
import subprocess
import sys
from pathlib import Path

from benchmarks.footprint import requirement_closure

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx")


def imported_modules(folder: Path, top_level_only: bool = False):
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                yield path, [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, [node.module]


def offenders(folder: str, forbidden: tuple[str, ...], top_level_only: bool = False) -> list[str]:
    if not (ROOT / folder).is_dir():
        return []
    return [
        f"{path.relative_to(ROOT)}: {name}"
        for path, names in imported_modules(ROOT / folder, top_level_only)
        for name in names
        if name.split(".")[0] in forbidden
    ]


def test_shared_and_serving_packages_never_import_tensorflow():
    for folder in ("captioner", "inference", "ui"):
        assert not offenders(folder, FORBIDDEN)


def test_serving_never_imports_training_and_the_cli_only_lazily():
    assert not offenders("inference", ("training", "export"))
    assert not offenders("ui", ("training", "export"))
    # The CLI dispatches to every component, importing each inside its command.
    assert not offenders(
        "captioner", ("training", "export", "inference", "ui"), top_level_only=True
    )


def test_shared_package_loads_without_tensorflow():
    code = (
        "import sys; import captioner.text, captioner.images, captioner.decoding, captioner.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'training')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_packages_does_no_work():
    """Nothing happens at import time: no directories, no settings read, no TensorFlow start."""
    code = (
        "import os, sys; before = set(os.listdir('.')); "
        "import training.settings, training.datasets.registry, training.datasets.shapes; "
        "import captioner.cli; "
        "sys.exit(0 if set(os.listdir('.')) == before and 'tensorflow' not in sys.modules else 1)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_service_process_loads_without_tensorflow():
    """Building the app (every inference module imported) pulls in no TensorFlow or training."""
    code = (
        "import sys; from inference.settings import ServeSettings; "
        "from inference.app import create_app; import inference.server; "
        "create_app(ServeSettings(model_dir='missing')); "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf2onnx', 'training', 'export')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_serving_install_has_no_tensorflow():
    closure = requirement_closure("serve")
    assert {"fastapi", "onnxruntime", "prometheus-client"} <= closure
    assert not {n for n in closure if n.startswith(("tensorflow", "keras", "tf2onnx"))}


def test_every_service_setting_is_documented():
    from inference.settings import ServeSettings

    doc = (ROOT / "docs" / "inference.md").read_text()
    missing = [n for n in ServeSettings.model_fields if f"`CAPTIONER_{n.upper()}`" not in doc]
    assert not missing
