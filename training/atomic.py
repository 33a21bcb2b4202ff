"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A reader (or a run resumed after a kill) sees the old file or the new one, never
half of one; the temporary name carries the writer's pid so two processes never
write the same temporary file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json(path: Path, value: object, indent: int | None = 2) -> None:
    """Write VALUE as JSON to PATH atomically.

    Args:
        path: the file to replace.
        value: anything ``json.dumps`` takes.
        indent: as for ``json.dumps``; ``None`` for the compact form of large lists.
    """
    temporary = _temporary(path)
    temporary.write_text(json.dumps(value, indent=indent) + "\n")
    os.replace(temporary, path)


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write ARRAY as ``.npy`` to PATH atomically."""
    temporary = _temporary(path)
    with temporary.open("wb") as f:
        np.save(f, array)
    os.replace(temporary, path)
