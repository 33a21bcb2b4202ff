"""The images' Dockerfiles: hadolint, multi-stage, non-root, no TensorFlow where it must not be."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.delivery.chart import REPO
from tests.delivery.dockerfiles import DOCKER, stages

DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile*"))
IMAGES = {
    "inference/Dockerfile.cpu": "requirements-cpu.txt",
    "inference/Dockerfile.gpu": "requirements-gpu.txt",
    "ui/Dockerfile": "requirements.txt",
    "trainer/Dockerfile": "requirements.txt",
}
NO_TENSORFLOW = ["inference/Dockerfile.cpu", "inference/Dockerfile.gpu", "ui/Dockerfile"]
TENSORFLOW = re.compile(r"^(tensorflow|tensorflow-cpu|keras|tf-keras|tf2onnx|tf-nightly)==", re.M)
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "python3-dev", "python3-pip", "git")


def test_every_image_has_its_dockerfile():
    assert sorted(str(p.relative_to(DOCKER)) for p in DOCKERFILES) == sorted(IMAGES)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(DOCKER)))
def test_hadolint_passes(dockerfile):
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_problems():
    hadolint = Path(sys.executable).with_name("hadolint")
    bad = "FROM python:latest\nRUN pip install requests\nUSER root\n"
    result = subprocess.run(
        [str(hadolint), "--no-color", "-"], input=bad, capture_output=True, text=True
    )
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("name", IMAGES)
def test_multi_stage_non_root_locked_and_no_build_tools_at_the_end(name):
    dockerfile = DOCKER / name
    found = stages(dockerfile)
    assert found[0].name == "builder" and len(found) >= 2
    final = found[-1]
    chain = [final]
    while chain[-1].base in {s.name for s in found}:
        chain.append(next(s for s in found if s.name == chain[-1].base))
    steps = [step for stage in chain for step in stage.instructions]
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[0].split(":")[0] == "10001", "the final image must not run as root"
    runs = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert "pip install" not in runs, "installs belong in the builder stage"
    for tool in BUILD_TOOLS:
        assert not re.search(rf"\binstall\b[^&]*\s{re.escape(tool)}(\s|$)", runs), tool
    copies = [rest for keyword, rest in steps if keyword == "COPY"]
    assert any("--from=builder /opt/venv /opt/venv" in c for c in copies)
    (builder,) = [s for s in found if s.name == "builder"]
    lock = f"docker/{Path(name).parent}/{IMAGES[name]}"
    assert ("COPY", f"{lock} /tmp/requirements.txt") in builder.instructions
    installs = [r for k, r in builder.instructions if k == "RUN" and "pip install" in r]
    assert "--require-hashes -r /tmp/requirements.txt" in installs[0]
    assert "--no-deps /src" in installs[1]


@pytest.mark.parametrize("name", NO_TENSORFLOW)
def test_serving_images_carry_no_tensorflow(name):
    lock = (DOCKER / Path(name).parent / IMAGES[name]).read_text()
    assert not TENSORFLOW.findall(lock)
    copies = [r for k, r in stages(DOCKER / name)[0].instructions if k == "COPY"]
    assert not any(re.search(r"\b(training|export)\b", c) for c in copies)


def test_the_trainer_has_tensorflow_for_gpu():
    lock = (DOCKER / "trainer" / "requirements.txt").read_text()
    assert "tensorflow==" in lock and "nvidia-cudnn-cu12==" in lock


def test_locks_match_the_extras_they_come_from():
    """Every requirement of the extra is pinned in its lock (docker/lock.sh regenerates)."""
    import tomllib

    from packaging.requirements import Requirement

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]

    def requirements(extra: str) -> set[str]:
        names = set()
        for spec in extras[extra]:
            req = Requirement(spec)
            if req.name == "captioner":
                for inner in req.extras:
                    names |= requirements(inner)
            else:
                names.add(req.name.lower().replace("_", "-"))
        return names

    for name, extra in [
        ("inference/requirements-cpu.txt", "serve"),
        ("inference/requirements-gpu.txt", "serve-gpu"),
        ("ui/requirements.txt", "ui"),
        ("trainer/requirements.txt", "train-gpu"),
    ]:
        pinned = set(re.findall(r"^([A-Za-z0-9_.-]+)==", (DOCKER / name).read_text(), re.M))
        pinned = {p.lower().replace("_", "-") for p in pinned}
        assert requirements(extra) <= pinned, f"{name}: run docker/lock.sh"


def test_gpu_base_matches_the_cuda_that_onnxruntime_gpu_needs(tmp_path):
    """The CUDA major of the base image is the one the pinned onnxruntime-gpu asks for."""
    import json

    lock = (DOCKER / "inference" / "requirements-gpu.txt").read_text()
    (version,) = re.findall(r"^onnxruntime-gpu==(\S+)", lock, re.M)
    (base,) = re.findall(
        r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-",
        (DOCKER / "inference" / "Dockerfile.gpu").read_text(),
        re.M,
    )
    report = tmp_path / "report.json"
    # Metadata only (PyPI serves it beside the wheel): nothing is installed.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--dry-run",
            "--no-deps",
            "--ignore-installed",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--platform",
            "manylinux_2_28_x86_64",
            "--report",
            str(report),
            f"onnxruntime-gpu[cuda]=={version}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    offline = ("NewConnectionError", "ConnectTimeout", "name resolution", "Network is unreachable")
    if result.returncode != 0 and any(sign in result.stderr for sign in offline):
        pytest.skip(f"PyPI unreachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(report.read_text())["install"]
    runtime = [r for r in item["metadata"]["requires_dist"] if r.startswith("nvidia-cuda-runtime")]
    assert runtime, item["metadata"]["requires_dist"]
    (major,) = set(re.findall(r"~=\s*(\d+)\.", runtime[0]))
    assert major == base, f"onnxruntime-gpu {version} needs CUDA {major}, the base is CUDA {base}"


@pytest.mark.parametrize("script", ["lock.sh", "build.sh", "local-base.sh", "engine.sh"])
def test_the_docker_scripts_pass_shellcheck(script):
    shellcheck = Path(sys.executable).with_name("shellcheck")
    result = subprocess.run(
        [str(shellcheck), "--shell=bash", "--external-sources", str(DOCKER / script)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout


# The component each image runs; it needs the command line and whatever that component
# may import (scripts/import_map.ALLOWED), and nothing more.
RUNS = {
    "inference/Dockerfile.cpu": {"inference"},
    "inference/Dockerfile.gpu": {"inference"},
    "ui/Dockerfile": {"ui"},
    "trainer/Dockerfile": {"training", "export"},
}


def _needs(components: set[str]) -> set[str]:
    from scripts.import_map import ALLOWED

    needed, todo = {"cli"}, list(components)
    while todo:
        component = todo.pop()
        if component not in needed:
            needed.add(component)
            todo.extend(ALLOWED[component])
    return needed


@pytest.mark.parametrize("name", IMAGES)
def test_each_image_copies_the_packages_its_command_imports_and_no_other(name):
    copies = [r for k, r in stages(DOCKER / name)[0].instructions if k == "COPY"]
    packages = {m.group(1) for c in copies if (m := re.fullmatch(r"(\w+) /src/\1", c))}
    assert packages == _needs(RUNS[name])
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().split()}
    assert packages <= allowed, f".dockerignore leaves out {packages - allowed}"
