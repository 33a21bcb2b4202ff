"""The report's markdown tables: the peers, the results, the ratios, the physical limit.

Each table is built from ' | '-separated lines by :func:`table`; a cell's text is kept
to one line (:func:`one_line`), a failure's reason to its first and last lines.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from benchmarks.peers.limit import Limit
from benchmarks.peers.results import Cell, PeerRun, Summaries, Summary
from benchmarks.peers.servers import Peer

REFERENCE = "captioner_peer"  # the row every peer is compared with
RESULTS = (
    "peer | load | beam | req/s median (min–max) | p50 ms | p90 ms | p99 ms | errors"
    " | peak RSS MB | server CPU cores | client CPU cores | of limit",
    "{peer} | {load} | {beam} | {rate:.1f} ({rate_min:.1f}–{rate_max:.1f}) | {p50:.0f}"
    " | {p90:.0f} | {p99:.0f} | {errors} | {rss:.0f} | {server_cpu:.2f} | {client_cpu:.2f}"
    " | {share:.0%}",
)
PEERS_TABLE = (
    "peer | server | version | onnxruntime | start-up s (median) | captions = PeerModel"
    " | processes left after stop | tuning",
    "{stem} | {name} | {version} | {onnxruntime} | {startup:.1f} | {agree} | {left} | {tuning}",
)


def table(header: str, rows: Sequence[str]) -> str:
    """A markdown table from ' | '-separated lines."""
    lines = [header, " | ".join(["---"] * (header.count("|") + 1)), *rows]
    return "\n".join(f"| {line} |" for line in lines)


def one_line(text: str) -> str:
    """Text fit for one table cell: one line, no column bars."""
    return " ".join(text.split()).replace("|", "/")


def short(reason: str) -> str:
    """A failure's reason on one line: its first line and the log's last line."""
    lines = [line for line in reason.splitlines() if line.strip()]
    return one_line(lines[0] if len(lines) < 2 else f"{lines[0]} … {lines[-1]}")[:300]


def results_table(
    peers: Sequence[Peer], runs: Sequence[PeerRun], cells: Sequence[Cell], summaries: Summaries,
    limit: dict[int, float],
) -> str:  # fmt: skip
    rows = []
    for peer in peers:
        failed = peer.failure or next((r.failure for r in runs if r.peer == peer.stem), None)
        if not any((peer.stem, c.load, c.beam) in summaries for c in cells):
            rows.append(f"{peer.stem} | could not run: {short(failed or 'not run')}" + " |" * 10)
            continue
        for cell in cells:
            s = summaries.get((peer.stem, cell.load, cell.beam))
            if s is None:
                rows.append(f"{peer.stem} | {cell.load} | {cell.beam} | could not run" + " |" * 8)
                continue
            share = s.rate / limit[cell.beam]
            rows.append(RESULTS[1].format(peer=peer.stem, load=cell.load, beam=cell.beam,
                                          share=share, **vars(s)))  # fmt: skip
    return table(RESULTS[0], rows)


def ratio(ours: Summary, theirs: Summary) -> str:
    """Our throughput over theirs, their p99 over ours: above 1, captioner serve is better."""
    if not theirs.rate:
        return "∞ (it answered none)"
    return f"{ours.rate / theirs.rate:.2f}× / {theirs.p99 / ours.p99:.2f}×"


def ratios_table(peers: Sequence[Peer], cells: Sequence[Cell], summaries: Summaries) -> str:
    others = [p.stem for p in peers if p.stem != REFERENCE]
    rows = []
    for cell in cells:
        ours = summaries.get((REFERENCE, cell.load, cell.beam))
        if ours is None:
            continue
        theirs = {p: summaries.get((p, cell.load, cell.beam)) for p in others}
        ran = {p: s for p, s in theirs.items() if s is not None}
        best = max(ran, key=lambda p: ran[p].rate, default=None)
        row = [cell.load, str(cell.beam), *(ratio(ours, s) if s else "—" for s in theirs.values())]
        row += [best, ratio(ours, ran[best])] if best else ["—", "—"]
        rows.append(" | ".join(row))
    return table(" | ".join(["load", "beam", *others, "best peer", f"{REFERENCE} vs best"]), rows)


def peers_table(peers: Sequence[Peer], runs: Sequence[PeerRun]) -> str:
    rows = []
    for peer in peers:
        mine = [r for r in runs if r.peer == peer.stem]
        started = [r.startup_s for r in mine if r.startup_s == r.startup_s]  # not NaN
        agree = "; ".join(
            f"r{r.repeat + 1} beam {b}: {a}" for r in mine for b, a in r.agreement.items()
        )
        left = ", ".join(s for r in mine for s in r.survivors) or "none"
        rows.append(PEERS_TABLE[1].format(
            stem=peer.stem, name=getattr(peer.module, "NAME", "?"), version=peer.version,
            onnxruntime=peer.onnxruntime, agree=one_line(agree) or "—", left=left,
            startup=statistics.median(started) if started else float("nan"),
            tuning=one_line(getattr(peer.module, "TUNING", "?")),
        ))  # fmt: skip
    return table(PEERS_TABLE[0], rows)


Measure = tuple[str, Callable[[Limit], str]]  # a row's label, and its value in one Limit


def limit_table(limits: dict[str, Limit], beams: Sequence[int]) -> str:
    def per_beam(b: int) -> list[Measure]:
        return [
            (f"decoder beam {b}, best captions/s (batch)",
             lambda m: f"{m.decoder_captions_per_s[b]:.1f} ({m.decoder_batch[b]})"),
            (f"decoder beam {b}, hypothesis rows × steps per s",
             lambda m: f"{m.decoder_rows_steps_per_s[b]:.0f}"),
            (f"**limit beam {b}, captions/s**", lambda m: f"**{m.captions_per_s[b]:.1f}**"),
            (f"limit beam {b} with the JPEG decode + preprocess, captions/s",
             lambda m: f"{m.with_preprocess_per_s[b]:.1f}"),
            (f"one photo alone, encode + decode beam {b}, ms", lambda m: f"{m.single_ms[b]:.1f}"),
        ]  # fmt: skip

    measures: list[Measure] = [
        ("encoder, best images/s (batch)",
         lambda m: f"{m.encoder_images_per_s:.1f} ({m.encoder_batch})"),
        *(measure for b in beams for measure in per_beam(b)),
        ("JPEG decode + preprocess, ms per photo (not in the limit)",
         lambda m: f"{m.preprocess_ms:.1f}"),
    ]  # fmt: skip
    rows = [" | ".join([label, *(value(m) for m in limits.values())]) for label, value in measures]
    return table(" | ".join(["physical limit (this process, CPU)", *limits]), rows)
