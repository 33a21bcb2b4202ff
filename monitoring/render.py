"""Draw a dashboard's panels from a Prometheus server's data into one PNG.

Grafana is not installed here (nor needed): this asks Prometheus's HTTP API for each
panel's queries over a time range, exactly as Grafana would, and draws them with
matplotlib in the dashboard's order, so a reader sees what an operator sees.

    python -m monitoring.render --prometheus http://127.0.0.1:9090 --minutes 10 \\
        --out docs/images/overview-dashboard.png
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import httpx

from monitoring import contract

UNITS = {
    "reqps": "requests/s",
    "percentunit": "ratio",
    "percent": "%",
    "s": "seconds",
    "short": "",
    "none": "",
    "bytes": "bytes",
}


def query_range(
    prometheus: str, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    answer.raise_for_status()
    return list(answer.json()["data"]["result"])


def _legend(template: str, labels: dict[str, str]) -> str:
    if not template or template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def render(
    prometheus: str,
    out: Path,
    start: float,
    end: float,
    uid: str = "captioner-overview",
    rate_interval: str = "30s",
    max_panels: int = 12,
) -> list[str]:
    """Draw the first ``max_panels`` panels of dashboard ``uid``; returns their titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = contract.dashboards()[uid]
    shown = [p for p in contract.panels(board) if p["type"] in {"timeseries", "stat"}]
    shown = shown[:max_panels]
    columns = 3
    rows = math.ceil(len(shown) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(15, 3.2 * rows), squeeze=False)
    step = max(1.0, (end - start) / 200)
    for ax, panel in zip(axes.flat, shown, strict=False):
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        for target in panel["targets"]:
            expr = contract.substitute(target["expr"], rate_interval)
            for series in query_range(prometheus, expr, start, end, step):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=_legend(target.get("legendFormat", ""), series["metric"]))
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=8)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    figure.suptitle(board["title"], fontsize=13)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return [p["title"] for p in shown]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=10.0, help="the range, ending now")
    parser.add_argument("--dashboard", default="captioner-overview")
    parser.add_argument("--out", type=Path, default=Path("overview-dashboard.png"))
    args = parser.parse_args(argv)
    end = time.time()
    titles = render(args.prometheus, args.out, end - 60 * args.minutes, end, args.dashboard)
    print(f"wrote {args.out}: {len(titles)} panels")


if __name__ == "__main__":
    main()
