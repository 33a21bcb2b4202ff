"""What a ``captioner[extra]`` install pulls in, and its size on disk, from installed metadata."""

from __future__ import annotations

from importlib.metadata import Distribution, PackageNotFoundError, distribution

from packaging.requirements import Requirement


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


def requirement_closure(extra: str, root: str = "captioner") -> set[str]:
    """Distribution names that ``pip install root[extra]`` installs (root itself excluded)."""
    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [(root, {extra})]
    while todo:
        name, extras = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
                continue
            key = _key(req.name)
            if key == root:
                todo.append((key, set(req.extras)))
            elif key not in seen:
                seen.add(key)
                todo.append((key, set(req.extras)))
    return seen


def installed_bytes(dist: Distribution) -> int:
    """Bytes of the files a distribution installed (per its RECORD)."""
    total = 0
    for file in dist.files or []:
        path = file.locate()
        try:
            total += path.stat().st_size  # type: ignore[union-attr]
        except OSError:
            continue
    return total


def footprint(extra: str) -> dict[str, int]:
    """Installed bytes per distribution of the extra's closure, largest first."""
    sizes = {}
    for name in requirement_closure(extra):
        try:
            sizes[name] = installed_bytes(distribution(name))
        except PackageNotFoundError:
            continue
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))
