"""What the driver measures: the cells, each peer run's records, their summary over repeats.

A cell is one load pattern at one beam size; a :class:`PeerRun` is one peer's server in
one repeat, with a :class:`CellResult` per cell. These records are what results.json
holds; :func:`summarize` takes each peer's cell over the repeats for the tables.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_OUTSTANDING = 256  # an open-loop cell's most requests out at once


@dataclass(frozen=True)
class Cell:
    """One load pattern: a closed loop of ``clients`` or Poisson arrivals at ``rate``."""

    beam: int
    clients: int = 0
    rate: float = 0.0

    @property
    def load(self) -> str:
        return f"closed {self.clients}" if self.clients else f"open {self.rate:.1f}/s"


@dataclass
class CellResult:
    """What one cell measured on one peer in one repeat."""

    peer: str
    repeat: int
    load: str
    beam: int
    rate: float  # good answers per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: dict[str, int]
    peak_rss_mb: float  # the server's process tree, summed
    server_cpu_cores: float
    client_cpu_cores: float


@dataclass
class PeerRun:
    """One peer's server in one repeat: its start-up, caption check and cells."""

    peer: str
    repeat: int
    startup_s: float = float("nan")
    agreement: dict[int, str] = field(default_factory=dict)  # by beam: "7/7" and what differs
    cells: list[CellResult] = field(default_factory=list)
    failure: str | None = None
    survivors: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """One peer's cell over the repeats: medians, the rate's range, errors summed, peak RSS."""

    rate: float
    rate_min: float
    rate_max: float
    p50: float
    p90: float
    p99: float
    errors: str
    rss: float
    server_cpu: float
    client_cpu: float

    @classmethod
    def of(cls, found: Sequence[CellResult]) -> Summary:
        errors: Counter[str] = Counter()
        for r in found:
            errors.update(r.errors)
        kinds = ", ".join(f"{k}: {v}" for k, v in errors.most_common())
        rates = [r.rate for r in found]

        def mid(name: str) -> float:
            return statistics.median(getattr(r, name) for r in found)

        return cls(
            mid("rate"), min(rates), max(rates), mid("p50_ms"), mid("p90_ms"), mid("p99_ms"),
            f"{errors.total()} ({kinds})" if errors else "0", max(r.peak_rss_mb for r in found),
            mid("server_cpu_cores"), mid("client_cpu_cores"),
        )  # fmt: skip


Summaries = dict[tuple[str, str, int], Summary]  # by peer, load, beam


def summarize(runs: Sequence[PeerRun], cells: Sequence[Cell]) -> Summaries:
    """Each peer's cells over the repeats; a cell that never ran on a peer has no entry."""
    summaries = {}
    for peer in dict.fromkeys(r.peer for r in runs):
        for cell in cells:
            key = (peer, cell.load, cell.beam)
            found = [c for r in runs for c in r.cells if (c.peer, c.load, c.beam) == key]
            if found:
                summaries[key] = Summary.of(found)
    return summaries
