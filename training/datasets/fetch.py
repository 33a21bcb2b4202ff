"""``captioner data fetch NAME``: download, verify and unpack a dataset under the data root.

For each part of the dataset (see ``sources.toml``), in order:

1. **Present already?** A record in ``DATA_ROOT/.fetched/`` that matches the table,
   with every ``expect`` path in place, means there is nothing to do. A copy that a
   user laid out by hand (every ``expect`` path there, no record) is used as it is.
2. **Download** into ``DATA_ROOT/.downloads/FILE.part``, resuming what an earlier run
   left (:mod:`training.datasets.download`); or take ``FILE`` from a local mirror
   folder. Nothing is unpacked before the size and every published digest match.
3. **Unpack atomically:** once every archive the dataset lacks is downloaded and
   verified, the members that ``take`` names are written under a hidden
   ``DATA_ROOT/.staging-PID`` folder and every ``expect`` path is checked there; only
   then is each destination renamed into place (a ``rename`` on the same file
   system). A failure anywhere before leaves no new destination: never a dataset
   with its captions and without its photos. The loaders never read ``.staging-*``.
4. **Record** what was unpacked and from which file (its sha256), then delete the
   archive unless ``keep_archives``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.datasets.archives import extract, top_level
from training.datasets.download import FetchError, download, human_bytes, verify
from training.datasets.records import RECORDS, PartResult, all_exist, already_done, write_record
from training.datasets.sources import Archive, Manual, Part, Sources

log = logging.getLogger(__name__)

DOWNLOADS = ".downloads"
STAGING = ".staging-"


@dataclass
class FetchResult:
    dataset: str
    data_root: Path
    parts: list[PartResult] = field(default_factory=list)
    manual: list[Manual] = field(default_factory=list)  # still to be done by hand

    @property
    def downloaded(self) -> int:
        return sum(p.downloaded for p in self.parts)


def fetch(
    name: str,
    data_root: str | os.PathLike[str],
    sources: Sources,
    *,
    mirror: str | None = None,
    retries: int = 3,
    keep_archives: bool = False,
    progress: bool = True,
) -> FetchResult:
    """Make dataset NAME present under DATA_ROOT (see the module docstring).

    Args:
        name: a dataset of SOURCES.
        data_root: where datasets live.
        sources: the table (:func:`training.datasets.sources.load_sources`).
        mirror: a base URL or a local folder holding the archives under their
            ``file`` names; used instead of the table's URLs.
        retries: further attempts per URL after a transient failure.
        keep_archives: keep downloaded archives in ``DATA_ROOT/.downloads``.
        progress: draw progress bars.

    Raises:
        FetchError: a download, check or unpack failed; nothing partial is left in
            place (a ``.part`` download is kept for the next run to resume).
    """
    dataset = sources.dataset(name)
    root = Path(data_root)
    try:
        (root / DOWNLOADS).mkdir(parents=True, exist_ok=True)
        (root / RECORDS).mkdir(exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot write under the data root {root}: {exc}") from None
    _remove_stale_staging(root)
    done = {
        p.archive: already_done(name, p, sources.archives[p.archive], root) for p in dataset.parts
    }
    todo = [p for p in dataset.parts if done[p.archive] is None]
    with contextlib.ExitStack() as stack:
        for file in sorted({sources.archives[p.archive].file for p in todo}):
            stack.enter_context(_lock(root / DOWNLOADS / f"{file}.lock"))
        _check_space([sources.archives[p.archive] for p in todo], root, mirror)
        obtained = {
            p.archive: _obtain(sources.archives[p.archive], root, mirror, retries, progress)
            for p in todo
        }
        _unpack({a: o[0] for a, o in obtained.items()}, todo, root, progress)
        for part in todo:
            done[part.archive] = write_record(name, part, sources.archives[part.archive], root,
                                         *obtained[part.archive][:3])  # fmt: skip
        for path, _, _, ours in obtained.values():
            if ours and not keep_archives:
                path.unlink(missing_ok=True)
    result = FetchResult(name, root, [r for r in done.values() if r is not None])
    result.manual = [m for m in dataset.manual if not all_exist(root, m.expect)]
    return result


def _obtain(
    archive: Archive, root: Path, mirror: str | None, retries: int, progress: bool
) -> tuple[Path, int, dict[str, str], bool]:
    """The verified archive: (path, bytes downloaded now, digests, whether it is ours to delete)."""
    local = _local_mirror(mirror)
    if local is not None:
        path = local / archive.file
        if not path.is_file():
            raise FetchError(f"the mirror folder {local} has no {archive.file}")
        return path, 0, verify(path, archive.size, archive.digests, progress), False
    path = root / DOWNLOADS / archive.file
    if path.is_file():  # kept by an earlier run with keep_archives
        return path, 0, verify(path, archive.size, archive.digests, progress), True
    part = path.with_name(path.name + ".part")
    before = part.stat().st_size if part.exists() else 0
    urls = [f"{mirror.rstrip('/')}/{archive.file}"] if mirror else list(archive.urls)
    log.info("%s: downloading%s from %s", archive.file,
             f" ({human_bytes(archive.size)})" if archive.size else "", urls[0])  # fmt: skip
    digests = download(
        urls, path, size=archive.size, digests=archive.digests, retries=retries, progress=progress
    )
    return path, path.stat().st_size - before, digests, True


def _check_space(archives: list[Archive], root: Path, mirror: str | None) -> None:
    """Refuse before downloading when the archives of known size, what is left of their
    download and then their unpacked copies, cannot fit (all are unpacked together)."""
    if _local_mirror(mirror) is not None:
        return  # read in place: only the unpacked copies are written
    needed = 0
    for archive in archives:
        if archive.size is None or (root / DOWNLOADS / archive.file).is_file():
            continue
        part = root / DOWNLOADS / f"{archive.file}.part"
        needed += archive.size - (part.stat().st_size if part.exists() else 0) + archive.size
    free = shutil.disk_usage(root).free
    if free < needed:
        names = ", ".join(a.file for a in archives if a.size is not None)
        raise FetchError(
            f"{names} need about {human_bytes(needed)} free under {root} (the rest of the "
            f"download, then the unpacked copy), and {human_bytes(free)} are free"
        )


def _local_mirror(mirror: str | None) -> Path | None:
    if not mirror:
        return None
    if mirror.startswith("file://"):
        return Path(mirror.removeprefix("file://"))
    if "://" in mirror:
        return None
    return Path(mirror)


def _unpack(paths: dict[str, Path], parts: list[Part], root: Path, progress: bool) -> None:
    """Unpack every part's members and check them all, then put them all in place."""
    staging = root / f"{STAGING}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for part in parts:
            path = paths[part.archive]
            counts = extract(path, part.take, staging, progress)
            empty = [member or "(everything)" for member, count in counts.items() if not count]
            if empty:
                raise FetchError(f"{path.name} has no member {empty[0]!r} that the table takes")
            missing = [p for p in part.expect if not (staging / p).exists()]
            if missing:
                raise FetchError(
                    f"{path.name} unpacked, but {missing[0]} is not in it where the table "
                    f"expects; nothing was put in place. It holds: {', '.join(top_level(path))}"
                )
        for part in parts:
            for destination in part.take.values():
                (root / destination).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / destination, root / destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(root: Path) -> None:
    """Staging folders left by a run that was killed (its pid no longer runs)."""
    for folder in root.glob(f"{STAGING}*"):
        pid = folder.name.removeprefix(STAGING)
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One fetch at a time per archive file: two writers would interleave one ``.part``."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FetchError(
                f"another `captioner data fetch` is downloading {path.stem} under {path.parent}"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
