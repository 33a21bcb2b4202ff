"""Reading zip and tar archives member by member, writing only the members asked for.

Used by :mod:`training.datasets.fetch`: ``take`` maps an archive member (a file, a
folder, or ``""`` for everything) to a destination; every other member is skipped,
and so are members that would land outside the destination (absolute paths,
``..``) and the junk that archives made on macOS carry (``__MACOSX/``, ``._*``,
``.DS_Store``).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from training.datasets.download import FetchError

_JUNK = ("__MACOSX", ".DS_Store")


def extract(path: Path, take: dict[str, str], staging: Path, progress: bool) -> dict[str, int]:
    """Write the members TAKE names under STAGING; returns the files written per member.

    Raises:
        FetchError: PATH is not a zip or tar archive, or it is damaged.
    """
    counts = dict.fromkeys(take, 0)
    with _open_archive(path) as members:
        chosen = [(m, target) for m in members if (target := _target(m[0], take, counts))]
        with tqdm(
            total=sum(m[1] for m, _ in chosen),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"unpack {path.name}",
            disable=not progress,
        ) as bar:
            for (_, size, opener), target in chosen:
                out = staging / target
                out.parent.mkdir(parents=True, exist_ok=True)
                with opener() as source, out.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                bar.update(size)
    return counts


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[list[tuple[str, int, Callable[[], IO[bytes]]]]]:
    """(name, size, opener) of every regular file in a zip or tar archive."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                yield [
                    (i.filename, i.file_size, functools.partial(zf.open, i))
                    for i in zf.infolist()
                    if not i.is_dir()
                ]
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                yield [
                    (m.name, m.size, functools.partial(_tar_member, tf, m))
                    for m in tf
                    if m.isfile()
                ]
        else:
            raise FetchError(f"{path} is neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise FetchError(f"{path.name} is a damaged archive: {exc}") from None


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tf.extractfile(member)
    assert source is not None  # regular files always have a body
    return source


def _target(name: str, take: dict[str, str], counts: dict[str, int]) -> str | None:
    """Where member NAME goes under the staging folder, or None when not taken."""
    pure = PurePosixPath(name.removeprefix("./"))
    junk = any(p in _JUNK or p.startswith("._") for p in pure.parts)
    if junk or pure.is_absolute() or ".." in pure.parts:
        return None
    for member, destination in take.items():
        if not member:
            relative = str(pure)
        elif str(pure) == member:
            relative = ""
        elif pure.parts[: len(PurePosixPath(member).parts)] == PurePosixPath(member).parts:
            relative = str(pure.relative_to(member))
        else:
            continue
        counts[member] += 1
        return str(PurePosixPath(destination) / relative) if relative else destination
    return None


def top_level(path: Path) -> list[str]:
    """The first names at the top of the archive, for a message about its layout."""
    with _open_archive(path) as members:
        tops = sorted({PurePosixPath(m[0]).parts[0] for m in members if m[0]})
    return tops[:8] + (["..."] if len(tops) > 8 else [])
