"""``captioner export`` and ``captioner package verify`` as a user runs them: real subprocesses."""

import json
import shutil
import subprocess
import sys

import pytest

from training.run_dir import RunDir


def captioner(*args):
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "package"
    result = captioner(
        "export", "--checkpoint", str(trained.model_dir), "--out", str(out), "--version", "1.2.3"
    )
    return result, out


def test_export_writes_a_package(exported):
    result, out = exported
    assert result.returncode == 0, result.stderr
    assert f"package: {out}" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == {"name": "shapes-attention", "version": "1.2.3"}
    assert {"encoder.onnx", "decoder.onnx", "vocab.json"} <= {p.name for p in out.iterdir()}


def test_verify_prints_its_checks(exported):
    _, out = exported
    result = captioner("package", "verify", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "shapes-attention 1.2.3 (attention)"
    assert "[ok] sha256 of every file" in lines
    assert "[ok] fp32: onnx.checker, shape inference, tensor names and shapes" in lines
    assert any(line.startswith("probe caption (fp32): ") for line in lines)


def test_verify_refuses_a_damaged_package_without_a_traceback(exported, tmp_path):
    _, out = exported
    damaged = shutil.copytree(out, tmp_path / "package")
    data = bytearray((damaged / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (damaged / "decoder.onnx").write_bytes(bytes(data))
    result = captioner("package", "verify", str(damaged))
    assert result.returncode != 0
    assert "Error:" in result.stderr and "decoder.onnx" in result.stderr
    assert "Traceback" not in result.stderr
    assert "[ok]" not in result.stdout


def test_export_of_a_missing_checkpoint_is_a_clear_error(tmp_path):
    model_dir = RunDir(tmp_path).model_dir
    model_dir.mkdir()
    result = captioner("export", "--checkpoint", str(model_dir), "--out", str(tmp_path / "p"))
    assert result.returncode != 0
    assert "Error:" in result.stderr and RunDir.MODEL_CONFIG_FILE in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()
