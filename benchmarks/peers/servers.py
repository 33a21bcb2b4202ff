"""A peer's environment and its server: made, started, checked and stopped leaving nothing.

A peer is its module (``benchmarks/peers/<stem>.py``, see ``common.py``) and the
interpreter of its own virtual environment, installed from its requirements file under
``runs/peers/venvs`` unless a stamp of that file says it is up to date. Its server starts
in a session of its own; stopping it sends SIGTERM to the process group, SIGKILL after
``STOP_GRACE_S``, and checks that none of its processes is left.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import psutil

from benchmarks.peers.common import ENV_PACKAGE, ENV_THREADS
from benchmarks.peers.load import TreeMeter
from captioner.package import sha256
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]  # the repository: the servers' cwd and PYTHONPATH
DISTRIBUTIONS = {  # the distribution whose version names each peer
    "captioner_peer": "captioner",
    "mlserver_peer": "mlserver",
    "ray_peer": "ray",
    "bentoml_peer": "bentoml",
    "litserve_peer": "litserve",
    "pytriton_peer": "nvidia-pytriton",
}
REQUIREMENTS_DIR = ROOT / "benchmarks" / "peers" / "requirements"
READY_TIMEOUT_S = 300
STOP_GRACE_S = 15


class PeerFailure(Exception):
    """A peer that could not be installed, started or kept running: the reason, in words."""


@dataclass
class Peer:
    """A peer module and the interpreter its server runs on (or why it cannot run)."""

    stem: str
    module: ModuleType | None = None
    python: str = sys.executable
    failure: str | None = None
    version: str = "?"
    onnxruntime: str = "?"


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:]) or "(empty log)"


def run_logged(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(argv)}\n".encode())
        out.flush()
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        raise PeerFailure(f"{what} failed (exit {code}); log {log}:\n{log_tail(log)}")


def install(stem: str, module: ModuleType, venvs: Path, logs: Path, skip: bool) -> str:
    """The peer's venv python, made and filled unless its stamp says it is up to date."""
    venv = venvs / stem
    python = venv / "bin" / "python"
    if skip:
        if not python.exists():
            raise PeerFailure(f"--skip-install, and there is no venv at {venv}")
        return str(python)
    requirements = REQUIREMENTS_DIR / module.REQUIREMENTS
    if not requirements.exists():
        raise PeerFailure(f"no requirements file {requirements}")
    digest, stamp = sha256(requirements), venv / ".requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return str(python)
    log = logs / f"{stem}-install.log"
    base = getattr(module, "BASE_PYTHON", None) or sys.executable
    print(f"{stem}: installing {requirements.name} into {venv} (log {log}) ...", flush=True)
    if not python.exists():
        run_logged([shutil.which(base) or base, "-m", "venv", str(venv)], log, "venv")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    run_logged([*pip, "-r", str(requirements)], log, "pip install")
    stamp.write_text(digest + "\n")
    return str(python)


def installed_version(python: str, dist: str) -> str:
    code = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
    try:
        answer = subprocess.run([python, "-c", code, dist], capture_output=True, text=True)
    except OSError:
        return "?"
    return answer.stdout.strip() if answer.returncode == 0 else "?"


def prepare(stem: str, venvs: Path, logs: Path, skip_install: bool) -> Peer:
    """Import the peer's client half and make its environment; a failure is kept, not raised."""
    peer = Peer(stem)
    try:
        peer.module = importlib.import_module(f"benchmarks.peers.{stem}")
        if peer.module.REQUIREMENTS is not None:
            peer.python = install(stem, peer.module, venvs, logs, skip_install)
    except PeerFailure as exc:
        peer.failure = str(exc)
    except Exception as exc:  # a module not written yet, or one that does not import
        peer.failure = f"cannot import benchmarks/peers/{stem}.py: {type(exc).__name__}: {exc}"
    if peer.failure is None:
        peer.version = installed_version(peer.python, DISTRIBUTIONS.get(stem, stem[:-5]))
        peer.onnxruntime = installed_version(peer.python, "onnxruntime")
    return peer


class Server:
    """One peer's server, started in its own session; stopping it leaves nothing running."""

    def __init__(self, peer: Peer, package: Path, log: Path):
        assert peer.module is not None
        self.peer, self.module, self.log = peer, peer.module, log
        self.url = f"http://127.0.0.1:{free_port()}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{peer.stem}-"))
        extra: dict[str, str] = getattr(self.module, "environment", dict)()
        self.env = {**os.environ, **extra, "PYTHONPATH": str(ROOT), ENV_PACKAGE: str(package)}
        self.env[ENV_THREADS] = "0"
        self.process: subprocess.Popen | None = None
        self.meter: TreeMeter | None = None
        self.startup_s = float("nan")
        self.survivors: list[str] = []

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:  # a start that failed or was interrupted leaves nothing behind
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        argv = self.module.command(self.peer.python, port, self.workdir)
        with self.log.open("wb") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            start = time.perf_counter()
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            self.meter = TreeMeter(self.process.pid).__enter__()
        except psutil.NoSuchProcess:
            self.check_alive("at once")
            raise
        self.wait_ready()
        self.startup_s = time.perf_counter() - start

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                self.check_alive("before it was ready")
                try:
                    if client.get(self.module.READY_PATH).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise PeerFailure(
            f"not ready in {READY_TIMEOUT_S} s; log {self.log}:\n{log_tail(self.log)}"
        )

    def check_alive(self, when: str) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            tail = log_tail(self.log)
            raise PeerFailure(f"the server exited (code {code}) {when}; log {self.log}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after the grace time, then a check for survivors."""
        assert self.process is not None
        group = self.process.pid  # start_new_session: the group and session ids are its pid
        tracked: dict[int, psutil.Process] = {}
        if self.meter is not None:
            self.meter.__exit__()
            tracked = {p.pid: p for p in [*self.meter.seen.values(), *self.meter.processes()]}
        signal_group(group, signal.SIGTERM)
        psutil.wait_procs(list(tracked.values()), timeout=STOP_GRACE_S)  # the root is tracked
        signal_group(group, signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.meter is not None:
            tracked.update((p.pid, p) for p in self.meter.processes())
        _, alive = psutil.wait_procs(list(tracked.values()), timeout=2)
        for proc in alive:
            self.survivors.append(f"pid {proc.pid} {describe(proc)}")
            print(f"!!! {self.peer.stem}: pid {proc.pid} outlived SIGKILL of its group: killing it",
                  file=sys.stderr, flush=True)  # fmt: skip
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)


def signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe(proc: psutil.Process) -> str:
    try:
        return shlex.join(proc.cmdline())[:200]
    except psutil.Error:
        return "(gone)"
