"""Resumable, verified downloads over HTTP (httpx).

A download writes ``FILE.part`` beside its destination. When it stops (a dropped
connection, a server error, a killed process), the next attempt asks for the rest
with an HTTP ``Range`` request and appends; a server that ignores ``Range`` (answers
200) is read again from the start, and says so. Only a file whose length and every
published digest match is renamed to ``FILE``; a wrong one is deleted.

httpx rather than urllib: streaming with timeouts per phase, redirects, proxy and
CA-bundle settings from the environment (``HTTPS_PROXY``, ``SSL_CERT_FILE``), and
typed transport errors, none of which urllib gives without code of our own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS = 64 * 1024  # bytes an attempt must bring to be progress, not a failure
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


class FetchError(RuntimeError):
    """A download or unpack that did not complete; the message says what to do."""


class _Retry(Exception):
    """A failure worth another attempt at the same URL (connection, 5xx, short body)."""


class _NextUrl(Exception):
    """A failure of this URL that another attempt will not fix (4xx, bad answer)."""


def download(
    urls: list[str] | tuple[str, ...],
    destination: Path,
    *,
    size: int | None = None,
    digests: Mapping[str, str] | None = None,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Download DESTINATION from the first of URLS that works; resume a ``.part`` left before.

    Args:
        urls: tried in order; each gets ``retries`` further attempts after a
            transient failure, every attempt resuming where the last one stopped.
        destination: the final path; ``destination.part`` holds the bytes meanwhile.
        size: the expected length in bytes, when known.
        digests: algorithm (``sha256``, ``md5``) to the expected hex digest.
        retries: further attempts per URL after a connection error, a 5xx answer or
            a body shorter than announced.
        progress: draw a progress bar (bytes, rate, ETA).
        timeout: seconds to connect, and to wait for each read.

    Returns:
        The file's ``sha256`` (always) and the other digests asked for.

    Raises:
        FetchError: every URL failed (the ``.part`` is kept, so running again
            resumes), or the file does not match ``size`` or ``digests`` (it is
            deleted).
    """
    part = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    # identity: the file as the server holds it, never re-encoded on the way.
    headers = {"Accept-Encoding": "identity"}
    with httpx.Client(follow_redirects=True, timeout=timeout, headers=headers) as client:
        for url in urls:
            try:
                _fetch(client, url, part, size, retries, progress)
                break
            except _NextUrl as exc:
                failures.append(f"{url}: {exc}")
        else:
            have = part.stat().st_size if part.exists() else 0
            kept = ""
            if have:
                kept = f"; {human_bytes(have)} are kept in {part} and the next run resumes"
            raise FetchError(f"cannot download {destination.name}: {'; '.join(failures)}{kept}")
    found = verify(part, size, digests or {}, progress)
    os.replace(part, destination)
    return found


def verify(
    path: Path, size: int | None, digests: Mapping[str, str], progress: bool = True
) -> dict[str, str]:
    """PATH's digests (sha256 and those in DIGESTS), after checking them and SIZE.

    Raises:
        FetchError: a mismatch; PATH is deleted when it is a ``.part`` download.
    """
    actual_size = path.stat().st_size
    problem = None
    if size is not None and actual_size != size:
        problem = f"it has {actual_size} bytes, the table says {size}"
    found = {}
    if problem is None:
        found = file_digests(path, {"sha256", *digests}, progress)
        wrong = [k for k, v in digests.items() if found[k] != v.lower()]
        if wrong:
            problem = "; ".join(f"{k} is {found[k]}, expected {digests[k]}" for k in wrong)
    if problem:
        note = ""
        if path.name.endswith(".part"):
            path.unlink()
            note = " It was deleted; run again to download it afresh."
        name = path.name.removesuffix(".part")
        raise FetchError(f"{name} is not the file expected: {problem}.{note}")
    return found


def file_digests(path: Path, algorithms: set[str], progress: bool = True) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in sorted(algorithms)}
    with (
        path.open("rb") as file,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"verify {path.name.removesuffix('.part')}",
            disable=not progress,
        ) as bar,
    ):
        for block in iter(lambda: file.read(CHUNK), b""):
            for hasher in hashers.values():
                hasher.update(block)
            bar.update(len(block))
    return {name: h.hexdigest() for name, h in hashers.items()}


def _fetch(
    client: httpx.Client, url: str, part: Path, size: int | None, retries: int, progress: bool
) -> None:
    """Bring ``part`` to the whole file from URL, resuming; raises _NextUrl when it cannot.

    An attempt that brought at least :data:`PROGRESS` new bytes before it failed does
    not count against ``retries``: a flaky link that keeps moving finishes the file.
    """
    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _attempt(client, url, part, size, progress)
            return
        except _Retry as exc:
            have = part.stat().st_size if part.exists() else 0
            attempt = 1 if have - before >= PROGRESS else attempt + 1
            if attempt > retries:
                tries = "1 attempt" if retries == 0 else f"{retries + 1} attempts"
                raise _NextUrl(f"{exc} (after {tries}, {human_bytes(have)} downloaded)") from None
            wait = min(2.0 ** (attempt - 1), 30.0)
            log.warning("%s: %s; retrying in %.0f s from byte %d", url, exc, wait, have)
            time.sleep(wait)


def _attempt(client: httpx.Client, url: str, part: Path, size: int | None, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with client.stream("GET", url, headers=headers) as answer:
            total = _expected_total(answer, have)
            if total is None and answer.status_code == 416:
                return  # the .part already holds the whole file
            if answer.status_code == 200 and have:
                log.info("%s ignores Range requests: downloading from the start", url)
                have = 0
            if have:
                log.info("%s: resuming at byte %d of %s", url, have, total or "?")
            with (
                part.open("ab" if have else "wb") as file,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=part.name.removesuffix(".part"),
                    disable=not progress,
                ) as bar,
            ):
                for chunk in answer.iter_raw():  # as it arrives: a drop loses nothing
                    file.write(chunk)
                    bar.update(len(chunk))
    except httpx.TransportError as exc:
        raise _Retry(f"connection failed: {exc or type(exc).__name__}") from None
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Retry(f"the server sent {got} of {total} bytes")


def _expected_total(answer: httpx.Response, have: int) -> int | None:
    """The whole file's length from an answer; raises _Retry/_NextUrl on error answers."""
    status = answer.status_code
    if status == 416 and have:
        match = _CONTENT_RANGE.match(answer.headers.get("content-range", ""))
        if match and match.group(3) == str(have):
            return None
        raise _NextUrl(f"answered 416 to a resume from byte {have}")
    if status >= 500:
        raise _Retry(f"the server answered {status} {answer.reason_phrase}")
    if status >= 400:
        raise _NextUrl(f"answered {status} {answer.reason_phrase}")
    if status == 206:
        match = _CONTENT_RANGE.match(answer.headers.get("content-range", ""))
        if not match or match.group(1) is None or int(match.group(1)) != have:
            raise _NextUrl(
                f"answered a resume from byte {have} with Content-Range "
                f"{answer.headers.get('content-range')!r}"
            )
        return None if match.group(3) == "*" else int(match.group(3))
    if status != 200:
        raise _NextUrl(f"answered {status} {answer.reason_phrase}")
    length = answer.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value, unit = float(count), "bytes"
    for unit in ("KiB", "MiB", "GiB"):  # noqa: B007 (the unit the loop stops at is used)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"
