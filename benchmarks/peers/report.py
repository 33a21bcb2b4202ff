"""The report of one run: the machine's facts, table.md and results.json.

table.md holds the tables (``tables.py``) and the notes around them; results.json holds
every number: the machine, the arguments, the peers, the physical limits and the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.peers.limit import Limit
from benchmarks.peers.results import MAX_OUTSTANDING, Cell, PeerRun, Summaries, summarize
from benchmarks.peers.servers import Peer
from benchmarks.peers.tables import (
    REFERENCE,
    limit_table,
    peers_table,
    ratios_table,
    results_table,
)


def machine() -> dict[str, Any]:
    import onnxruntime

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    fields: dict[str, str] = {}
    for line in cpuinfo:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name", platform.processor()),
        "flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni")},
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "load_average_start": os.getloadavg()[0],
    }


@dataclass
class Report:
    """What one run of the driver ran and found, as table.md and results.json."""

    args: argparse.Namespace
    host: dict[str, Any]
    peers: Sequence[Peer]
    runs: Sequence[PeerRun]
    cells: Sequence[Cell]
    limits: dict[str, Limit]

    def markdown(self) -> str:
        """Every table and note of the report."""
        summaries = summarize(self.runs, self.cells)
        lines = [
            "## Peers", "", peers_table(self.peers, self.runs), "",
            *self._results(summaries),
            "## Ratios", "",
            f"Each cell: {REFERENCE} req/s ÷ the peer's / the peer's p99 ÷ {REFERENCE}'s "
            "(above 1: captioner serve is better).", "",
            ratios_table(self.peers, self.cells, summaries), "",
            "## Physical limit", "", limit_table(self.limits, self.args.beams), "",
            *self._single_request(summaries),
            *self._machine(),
            *self._failures(),
        ]  # fmt: skip
        return "\n".join(lines) + "\n"

    def _results(self, summaries: Summaries) -> list[str]:
        args, limits = self.args, self.limits
        limit = {b: max(m.captions_per_s[b] for m in limits.values()) for b in args.beams}
        return [
            "## Results", "",
            f"Median over {args.repeats} repeat(s) of {args.duration:g} s per cell after "
            f"{args.warmup:g} s of warm-up; the peer order rotates each repeat so that drift falls "
            "on all alike. 'of limit': the median req/s over the higher of the physical limits "
            f"measured ({', '.join(limits)}). Errors are summed over the repeats.", "",
            results_table(self.peers, self.runs, self.cells, summaries, limit), "",
        ]  # fmt: skip

    def _single_request(self, summaries: Summaries) -> list[str]:
        """captioner serve's one-client greedy p50 against one photo's graphs alone."""
        ours = summaries.get((REFERENCE, "closed 1", 1))
        if ours is None:
            return []
        alone = min(m.single_ms[1] for m in self.limits.values())  # the faster: the stricter ratio
        return [
            f"Single request: {REFERENCE} p50 at 1 client, greedy, {ours.p50:.1f} ms; one photo's "
            f"encode + greedy decode alone {alone:.1f} ms: ratio {ours.p50 / alone:.2f} (target "
            "<= 1.15; the served request also decodes the JPEG and re-ranks).", "",
        ]  # fmt: skip

    def _machine(self) -> list[str]:
        args, host = self.args, self.host
        flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in host["flags"].items())
        lines = [
            "## Machine", "",
            f"- CPU: {host['cpu']}; {flags}",
            f"- cores: {host['logical_cores']} logical, {host['physical_cores']} physical, "
            f"{host['usable_cores']} usable; load average {host['load_average_start']:.2f} at the "
            f"start, {host.get('load_average_end', float('nan')):.2f} at the end",
            f"- onnxruntime {host['onnxruntime']} (the driver's), Python {host['python']}",
            f"- repeats {args.repeats}, warm-up {args.warmup:g} s, duration {args.duration:g} s; "
            f"open loop at {args.open_rate:g} × the limit with the JPEG decode measured before, "
            f"at most {MAX_OUTSTANDING} out",
            f"- command: {shlex.join([Path(sys.executable).name, *sys.argv])}",
        ]  # fmt: skip
        if host.get("interrupted"):
            lines.append("- INTERRUPTED: the tables cover what ran before it")
        return lines

    def _failures(self) -> list[str]:
        failures = [f"- {p.stem}: {p.failure}" for p in self.peers if p.failure]
        failures += [
            f"- {r.peer}, repeat {r.repeat + 1}: {r.failure}" for r in self.runs if r.failure
        ]
        return ["", "## Could not run", "", "```", *failures, "```"] if failures else []

    def data(self) -> dict[str, Any]:
        """Every number of the run, as results.json holds it."""
        peers = [
            dataclasses.asdict(dataclasses.replace(p, module=None))
            | {"name": getattr(p.module, "NAME", None), "tuning": getattr(p.module, "TUNING", None)}
            for p in self.peers
        ]
        return {
            "machine": self.host,
            "arguments": vars(self.args),
            "peers": peers,
            "limits": {k: dataclasses.asdict(v) for k, v in self.limits.items()},
            "runs": [dataclasses.asdict(r) for r in self.runs],
        }

    def write(self) -> None:
        """Print the tables, write table.md and results.json under ``--out``."""
        out = self.args.out
        text = self.markdown()
        print("\n" + text)
        (out / "table.md").write_text(text)
        text = json.dumps(self.data(), indent=2, default=str) + "\n"
        (out / "results.json").write_text(text)
        if self.args.json:
            print(text)
        print(f"written: {out / 'table.md'}, {out / 'results.json'}")
