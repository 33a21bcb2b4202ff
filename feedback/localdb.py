"""The embedded default database: nx-27017, the MongoDB wire protocol over SQLite files.

With no ``MONGODB_URI`` the feedback component starts one as a subprocess and talks
to it with real pymongo, so the same code runs against it and against MongoDB.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError


class LocalDBError(RuntimeError):
    """The local database could not be started."""


def nx_command() -> list[str]:
    """How to run nx-27017: the script installed beside this Python, else its module."""
    script = Path(sys.executable).parent / "nx-27017"
    if script.is_file():
        return [str(script)]
    if importlib.util.find_spec("nx_27017") is not None:
        return [sys.executable, "-m", "nx_27017.nx_27017"]
    found = shutil.which("nx-27017")
    if found:
        return [found]
    raise LocalDBError(
        "nx-27017 is not installed (pip install 'captioner[ui]'), or set MONGODB_URI"
    )


class LocalMongo:
    """One nx-27017 process on a data directory; also a context manager."""

    def __init__(self, data_dir: Path, port: int = 27017, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nx-27017.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nx-27017.log"

    def __enter__(self) -> LocalMongo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait until it answers ``ping``.

        Returns:
            Its URI, ``mongodb://HOST:PORT/``.

        Raises:
            LocalDBError: the port is taken, the process exited, or it did not answer in time.
        """
        if self._process is not None and self._process.poll() is None:
            return self.uri
        # Whatever already listens there would answer our ping and pass for ours.
        if listening(self.host, self.port):
            raise LocalDBError(
                f"port {self.port} on {self.host} is in use: set MONGODB_URI to use that "
                "server, or choose another port (CAPTIONER_LOCAL_DB_PORT)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *nx_command(),
            "--data-dir", str(self.data_dir),
            "--host", self.host,
            "-p", str(self.port),
            # Its defaults are shared /tmp files: a second server would refuse to start.
            "--pid-file", str(self.pid_file),
            "--log-file", str(self.log_file),
        ]  # fmt: skip
        # It logs to its file and echoes to stderr; a pipe nobody reads would block it.
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready(timeout)
        return self.uri

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        client: MongoClient[dict] = MongoClient(
            self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250, connect=False
        )
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._process = None
                    raise LocalDBError(f"nx-27017 exited at start: {self._log_tail()}")
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    time.sleep(0.1)
        finally:
            client.close()
        self.stop()
        raise LocalDBError(f"nx-27017 did not answer within {timeout:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_file})"
        return " | ".join(lines[-3:]) or "(empty log)"


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on HOST:PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def mongodb_uri_or_local(
    env_uri: str | None, data_dir: Path, port: int
) -> tuple[str, LocalMongo | None]:
    """``MONGODB_URI`` when it is set; else a local nx-27017, stopped when this process exits.

    Returns:
        The URI, and the :class:`LocalMongo` that was started (``None`` when none was).
    """
    if env_uri:
        return env_uri, None
    local = LocalMongo(data_dir, port)
    uri = local.start()
    atexit.register(local.stop)
    return uri, local
