"""Rules that keep the architecture honest (docs/architecture.md)."""

import subprocess
import sys
from pathlib import Path

from benchmarks.footprint import requirement_closure
from scripts.import_map import ALLOWED, forbidden, imports

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx")


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module in imports(ROOT / folder)
        if module.split(".")[0] in forbidden
    ]


def test_shared_and_serving_packages_never_import_tensorflow():
    for folder in ("captioner", "telemetry", "inference", "feedback", "ui"):
        assert not offenders(folder, FORBIDDEN)


def test_imports_point_the_way_the_design_allows():
    """Every import between components follows scripts/import_map.ALLOWED, lazy ones too."""
    assert not forbidden(ROOT)


def test_the_allowed_directions_are_the_design():
    """The table itself: the core and telemetry import no component, training never imports
    export, the page never imports the service, and only the command line imports all."""
    assert ALLOWED["captioner"] == set() and ALLOWED["telemetry"] == set()
    assert "export" not in ALLOWED["training"]
    assert "inference" not in ALLOWED["ui"] and "ui" not in ALLOWED["inference"]
    everyone = set(ALLOWED) - {"cli", "monitoring"}
    assert ALLOWED["cli"] == everyone
    assert [c for c, allowed in ALLOWED.items() if allowed >= everyone] == ["cli"]
    # Every component on disk is in the table, so none escapes the rules.
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk <= set(ALLOWED), on_disk - set(ALLOWED)


def test_the_map_sees_a_backward_import(tmp_path):
    """The check is not vacuous: a core module importing a component is reported."""
    for component in ALLOWED:
        (tmp_path / component).mkdir()
    (tmp_path / "captioner" / "x.py").write_text("def f():\n    import training.trainer\n")
    assert forbidden(tmp_path) == ["captioner/x.py: training.trainer"]


def test_shared_package_loads_without_tensorflow():
    code = (
        "import sys; import captioner.text, captioner.images, captioner.decoding, cli.main; "
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
        "import cli.main; "
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
