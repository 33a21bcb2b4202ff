"""The analysis as a table for people; ``Analysis.to_dict`` is the one for machines."""

from __future__ import annotations

from rollout.analysis import Analysis, Signal


def _value(signal: Signal, value: float | None) -> str:
    if value is None:
        return "-"
    if signal.unit == "ratio":
        return f"{value:.2%}"
    if signal.unit == "s":
        return f"{value * 1000:.1f} ms"
    if signal.unit == "count":
        return f"{value:.0f}"
    return f"{value:.3f}"


def table(analysis: Analysis) -> str:
    """Every signal for stable and canary with its rule and result, then the verdict."""
    header = ("signal", f"stable {analysis.stable}", f"canary {analysis.canary}", "rule", "result")
    rows = [header] + [
        (s.name, _value(s, s.stable), _value(s, s.canary), s.rule, s.status.value)
        for s in analysis.signals
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"canary {analysis.canary} against stable {analysis.stable} over {analysis.window}",
        "",
        *(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ),  # fmt: skip
        "",
        f"verdict: {analysis.verdict.value.upper()} (exit {analysis.verdict.exit_code})",
        *(f"  - {reason}" for reason in analysis.reasons),
    ]
    return "\n".join(lines)
