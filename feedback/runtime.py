"""The feedback component as one object: store, outbox, metrics and the one flusher.

The page (``ui/app.py``) and the launcher (``ui/launch.py``) both call :func:`build`.
Under ``captioner ui`` they are two processes on one outbox file, and only one of them
may deliver it: :meth:`FeedbackRuntime.start` takes an exclusive lock beside the
outbox first, so the launcher (which starts before it spawns the page) delivers and
the page's start does nothing. The page run on its own (``streamlit run``, AppTest)
takes the lock and delivers itself. The lock is the operating system's (``flock``):
it goes with the process, so a crashed owner never strands the outbox.
"""

from __future__ import annotations

import fcntl
import logging
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from feedback.limits import FeedbackLimiter
from feedback.localdb import LocalMongo, mongodb_uri_or_local
from feedback.metrics import FeedbackMetrics
from feedback.outbox import Flusher, Outbox
from feedback.store import FeedbackStore, StoreUnavailable

if TYPE_CHECKING:
    from pathlib import Path

    from feedback.settings import FeedbackSettings

log = logging.getLogger(__name__)


@dataclass
class FeedbackRuntime:
    """What one process needs to take feedback; :func:`build` makes it.

    Attributes:
        settings: what it was built from.
        uri: the database's URI (the local nx-27017's when it was started here).
        store: the database.
        outbox: where feedback waits while the database is down.
        metrics: the feedback counters and the outbox depth.
        limiter: the per-client rate limit on submissions.
        local: the nx-27017 started for this process, or ``None``.
    """

    settings: FeedbackSettings
    uri: str
    store: FeedbackStore
    outbox: Outbox
    metrics: FeedbackMetrics
    limiter: FeedbackLimiter
    local: LocalMongo | None = None
    _flusher: Flusher | None = field(default=None, init=False, repr=False)
    _lock: IO[str] | None = field(default=None, init=False, repr=False)

    def ensure_indexes(self) -> bool:
        """Create the store's indexes now rather than at the first save.

        Returns:
            ``False`` (logged) when the database is unreachable: feedback then goes to
            the outbox, and the first save that reaches the database creates them.
        """
        try:
            self.store.ensure_indexes()
        except StoreUnavailable:
            log.warning("the feedback database is unreachable; feedback goes to the outbox")
            return False
        return True

    @property
    def delivering(self) -> bool:
        """Whether this process runs the outbox's flusher."""
        return self._flusher is not None

    def start(self) -> bool:
        """Start delivering the outbox, unless a process (this one included) already does.

        Returns:
            Whether this call started the flusher; ``False`` when it runs already,
            here or in another process holding the outbox's lock.
        """
        if self._flusher is not None:
            return False
        lock = _claim(lock_path(self.outbox.path))
        if lock is None:
            log.info("another process delivers the outbox %s", self.outbox.path)
            return False
        self._lock = lock
        self._flusher = Flusher(
            self.outbox, self.store, interval=self.settings.flush_seconds, metrics=self.metrics
        )
        self._flusher.start()
        return True

    def stop(self, timeout: float | None = 10) -> None:
        """Stop the flusher after its current delivery and release the outbox's lock."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop(timeout)
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the file releases the flock

    def close(self) -> None:
        """Stop, then close the outbox, the store and the local database (if started here)."""
        self.stop()
        self.outbox.close()
        self.store.close()
        if self.local is not None:
            self.local.stop()


def build(settings: FeedbackSettings) -> FeedbackRuntime:
    """The store, outbox and metrics per the settings; the flusher waits for ``start()``.

    Without ``mongodb_uri`` a local nx-27017 is started (and stopped when the process
    exits, or on :meth:`FeedbackRuntime.close`). The database is not contacted here (the
    store connects lazily): an unreachable one is not an error, feedback then goes to
    the outbox.

    Raises:
        LocalDBError: the local database was needed and could not be started.
        LimitError: the rate-limit settings are unusable.
    """
    limiter = FeedbackLimiter(settings.rate_limit, settings.rate_limit_storage)
    secret = settings.mongodb_uri
    uri, local = mongodb_uri_or_local(
        secret.get_secret_value() if secret else None,
        settings.local_db_dir,
        settings.local_db_port,
    )
    store = FeedbackStore(uri, settings.mongodb_database, settings.mongodb_timeout_ms)
    metrics = FeedbackMetrics()
    outbox = Outbox(settings.outbox_path, metrics=metrics)
    return FeedbackRuntime(settings, uri, store, outbox, metrics, limiter, local)


def lock_path(outbox: Path) -> Path:
    """The file whose lock says which process delivers OUTBOX."""
    return outbox.with_name(outbox.name + ".lock")


def _claim(path: Path) -> IO[str] | None:
    """The lock file, held exclusively; ``None`` when another holder has it."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
