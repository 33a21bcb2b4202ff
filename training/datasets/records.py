"""What ``captioner data fetch`` put in place: one record per part in ``DATA_ROOT/.fetched/``.

A record names the archive a part came from (its digests) and the layout it was
unpacked to, so a later fetch knows the part is present, and refuses a copy that
came from another archive or layout than the sources table names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from training.atomic import write_json
from training.datasets.download import FetchError
from training.datasets.sources import Archive, Part

log = logging.getLogger(__name__)

RECORDS = ".fetched"


@dataclass(frozen=True)
class PartResult:
    """What one part needed: ``fetched`` now, ``present`` from an earlier fetch, or
    ``in place`` (laid out by hand)."""

    archive: str
    status: Literal["fetched", "present", "in place"]
    sha256: str | None = None
    downloaded: int = 0
    pinned: bool = False  # the table has no digest: this sha256 was pinned by this run


def _record_path(root: Path, name: str, part: Part) -> Path:
    return root / RECORDS / f"{name}--{part.archive}.json"


def already_done(name: str, part: Part, archive: Archive, root: Path) -> PartResult | None:
    """The part's result when there is nothing to do; None when it must be fetched.

    Raises:
        FetchError: a destination exists but is not a whole copy (nothing is
            downloaded then), or it was fetched from another archive than the table's.
    """
    record = _read_record(_record_path(root, name, part))
    if all_exist(root, part.expect):
        if record is None:
            log.info("%s: %s is in place already (not fetched by captioner)", name, part.archive)
            return PartResult(part.archive, "in place")
        _check_record(record, archive, part, _record_path(root, name, part))
        return PartResult(part.archive, "present", record["sha256"])
    blocking = [d for d in part.take.values() if (root / d).exists()]
    if blocking:
        missing = [p for p in part.expect if not (root / p).exists()]
        raise FetchError(
            f"{root / blocking[0]} exists but lacks {missing[0]}: it is not a whole copy "
            f"of {archive.file}. Move it away and run again."
        )
    return None


def write_record(
    name: str, part: Part, archive: Archive, root: Path, path: Path, downloaded: int,
    digests: dict[str, str],
) -> PartResult:  # fmt: skip
    """Write what was put in place, and from which file, beside the dataset."""
    write_json(
        _record_path(root, name, part),
        {
            "archive": part.archive,
            "file": archive.file,
            "size": path.stat().st_size,
            **digests,
            "take": part.take,
            "expect": list(part.expect),
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    pinned = not archive.digests
    if pinned:
        log.warning(
            "%s has no published digest; its sha256 is pinned now: sha256 = \"%s\" "
            "(add it to the table's [archives.%s])", archive.file, digests["sha256"], part.archive,
        )  # fmt: skip
    return PartResult(part.archive, "fetched", digests["sha256"], downloaded, pinned)


def _check_record(record: dict, archive: Archive, part: Part, where: Path) -> None:
    """A record of another archive or layout than the table's means a stale copy."""
    stale = [k for k, v in archive.digests.items() if record.get(k) not in (None, v)]
    if stale or record.get("take") != part.take:
        raise FetchError(
            f"{where} records a copy from another {archive.file} (or another layout) than the "
            "sources table names; move its destinations and that record away to fetch again"
        )


def all_exist(root: Path, paths: tuple[str, ...]) -> bool:
    return all((root / p).exists() for p in paths)


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "sha256" in record else None
