"""Read a Dockerfile's stages, and replay its builder's pip installs outside Docker."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.delivery.chart import REPO

DOCKER = REPO / "docker"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages(dockerfile: Path) -> list[Stage]:
    found: list[Stage] = []
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name))
        elif found:
            found[-1].instructions.append((keyword, rest))
    return found


def replay_pip_installs(dockerfile: Path, root: Path, python: Path) -> list[list[str]]:
    """The builder stage's COPY and ``pip install`` steps, under ``root``, with ``python``.

    Paths in the image become paths under ``root``; ``--no-cache-dir`` is dropped (it
    keeps the image small; here pip's cache keeps the test fast). Returns the commands.
    """
    (builder,) = [s for s in stages(dockerfile) if s.name == "builder"]
    commands = []
    for keyword, rest in builder.instructions:
        if keyword == "COPY":
            *sources, dest = shlex.split(rest)
            target = root / dest.lstrip("/")
            for source in sources:
                origin = REPO / source
                into = target / origin.name if dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                if origin.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(origin, into, ignore=ignore)
                else:
                    shutil.copy2(origin, into)
        elif keyword == "RUN":
            for part in rest.split("&&"):
                words = shlex.split(part)
                if words[:4] != ["python", "-m", "pip", "install"]:
                    continue
                args = [str(root / w.lstrip("/")) if w.startswith("/") else w for w in words[4:]]
                command = [str(python), "-m", "pip", "install", "-q"]
                command += [a for a in args if a != "--no-cache-dir"]
                subprocess.run(command, check=True, cwd=root)
                commands.append(command)
    return commands
