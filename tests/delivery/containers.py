"""Build and run the project's images with Podman, as compose.yaml runs them.

The container tests start real containers from the images ``docker/build.sh`` builds;
each container's flags (read-only root, tmpfs, capabilities, environment, restart
policy, stop grace) are read from its service in ``compose.yaml``, so what is tested
is what a user's ``compose up`` runs. Every container and network carries a label
and is removed at the end, killed or not.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.delivery.chart import REPO

COMPOSE = REPO / "compose.yaml"
# What this machine's kind needs, as docs/deploy.md says: crun refuses its hybrid
# cgroups, and raising rlimits is not permitted. docker/build.sh reads the same variables.
ENGINE_ARGS = os.environ.get(
    "CONTAINER_ENGINE_ARGS", "--runtime /usr/sbin/runc --cgroup-manager cgroupfs"
)
BUILD_ARGS = os.environ.get(
    "CONTAINER_BUILD_ARGS", "--ulimit nofile=4096:4096 --ulimit nproc=4096:4096"
)
# The base of the CPU images where nothing can be pulled: docker/local-base.sh makes it.
LOCAL_BASE = "localhost/py311:bookworm"
LABEL = "captioner.test"
SESSION = uuid.uuid4().hex[:8]
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def podman_path() -> str | None:
    return shutil.which("podman")


def podman(
    *args: str, check: bool = True, timeout: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = ["podman", *shlex.split(ENGINE_ARGS), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(command)} failed:\n{result.stderr[-3000:]}")
    return result


def run_flags() -> list[str]:
    """Flags every ``podman run`` here takes: this host's rlimits, the session label."""
    return [*shlex.split(BUILD_ARGS), "--label", f"{LABEL}={SESSION}"]


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``, recursively.

    compose-spec validates but does not interpolate; these are the forms compose.yaml
    uses, with compose's meaning (``:-`` and ``:?`` also apply to an empty variable).
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        unset = current is None or (
            operator is not None and operator.startswith(":") and not current
        )
        if operator in (":-", "-") and unset:
            return argument
        if operator in (":?", "?") and unset:
            raise ValueError(f"compose.yaml: {name} is required: {argument}")
        return current or ""

    return VARIABLE.sub(one, value)


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml with its variables filled in (YAML anchors and merge keys resolved)."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return interpolate(raw, dict(os.environ if env is None else env))


def seconds(duration: str) -> float:
    """A compose duration (``45s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a compose duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def service_flags(service: Mapping[str, Any], drop_env: tuple[str, ...] = ()) -> list[str]:
    """``podman run`` flags for one compose service's runtime settings (volumes and
    ports are the caller's: the test chooses the host side)."""
    flags: list[str] = []
    if service.get("read_only"):
        # The chart mounts /tmp itself; podman's automatic tmpfs would hide a missing one.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    for path in service.get("tmpfs", []):
        flags += ["--tmpfs", path]
    for capability in service.get("cap_drop", []):
        flags += ["--cap-drop", capability]
    for option in service.get("security_opt", []):
        flags += ["--security-opt", option]
    for name, value in (service.get("environment") or {}).items():
        if name not in drop_env:
            flags += ["--env", f"{name}={value}"]
    if "stop_grace_period" in service:
        flags += ["--stop-timeout", str(int(seconds(service["stop_grace_period"])))]
    if "restart" in service:
        flags += ["--restart", service["restart"]]
    return flags


@dataclass
class Container:
    """One running container, by name."""

    name: str
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{self.ports[port]}"

    def inspect(self) -> dict[str, Any]:
        return json.loads(podman("inspect", self.name).stdout)[0]

    def state(self) -> dict[str, Any]:
        return self.inspect()["State"]

    def exec(self, *command: str, check: bool = False) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *command, check=check)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


@contextmanager
def network() -> Iterator[str]:
    """A network of the test's own: compose's service names resolve on it."""
    name = f"captioner-test-{SESSION}-{uuid.uuid4().hex[:6]}"
    podman("network", "create", "--label", f"{LABEL}={SESSION}", name)
    try:
        yield name
    finally:
        podman("network", "rm", "--force", name, check=False)


@contextmanager
def running(name: str, image: str, flags: list[str], ports: dict[int, int]) -> Iterator[Container]:
    """``podman run -d`` with FLAGS and 127.0.0.1 port mappings; removed on exit."""
    published = [f"--publish=127.0.0.1:{host}:{inside}" for inside, host in ports.items()]
    podman("run", "--detach", "--name", name, *run_flags(), *published, *flags, image)
    try:
        yield Container(name, ports)
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False)


def leftovers() -> list[str]:
    """This session's containers still present (none, after the tests)."""
    listed = podman("ps", "--all", "--filter", f"label={LABEL}={SESSION}", "--format", "{{.Names}}")
    return listed.stdout.split()


def build(images: list[str], base: str, tag: str, log: Path) -> dict[str, dict[str, float]]:
    """docker/build.sh for IMAGES on BASE; returns each image's build seconds and MB."""
    env = {
        **os.environ,
        "CONTAINER_ENGINE": "podman",
        "CONTAINER_ENGINE_ARGS": ENGINE_ARGS,
        "CONTAINER_BUILD_ARGS": BUILD_ARGS,
        "BUILD_LOG": str(log),
    }
    command = ["bash", str(REPO / "docker" / "build.sh"), "--base", base, "--tag", tag]
    # The host's bundle trusts what the host trusts (here, the TLS-inspecting proxy in
    # front of PyPI); build.sh hands it to pip as a build secret, never into a layer.
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.is_file():
        command += ["--ca-bundle", str(bundle)]
    result = subprocess.run(
        [*command, *images], capture_output=True, text=True, timeout=1800, cwd=REPO, env=env
    )
    if result.returncode != 0:
        tail = log.read_text()[-4000:] if log.exists() else ""
        raise AssertionError(f"docker/build.sh failed: {result.stderr}\n{tail}")
    built = {}
    for line in result.stdout.splitlines():
        if m := re.fullmatch(r"built captioner-([\w-]+):\S+ in (\d+) s, (\d+) MB", line):
            built[m.group(1)] = {"build_seconds": float(m.group(2)), "size_mb": float(m.group(3))}
    return built


def ensure_local_base() -> str:
    """The base image: PYTHON_IMAGE if given, else the local Debian one (made if absent)."""
    if os.environ.get("PYTHON_IMAGE"):
        return os.environ["PYTHON_IMAGE"]
    if podman("image", "exists", LOCAL_BASE, check=False).returncode != 0:
        env = {**os.environ, "CONTAINER_ENGINE": "podman", "CONTAINER_ENGINE_ARGS": ENGINE_ARGS}
        env["CONTAINER_BUILD_ARGS"] = BUILD_ARGS
        subprocess.run(
            ["bash", str(REPO / "docker" / "local-base.sh"), LOCAL_BASE],
            check=True,
            timeout=900,
            env=env,
        )
    return LOCAL_BASE
