"""What the dashboards and rules query, read back from the generated files.

Used by the contract tests (every metric a query names is defined by the code, and
every metric the code defines is shown) and by the integration test that runs every
query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
RULES = HERE / "rules"

# Series that come from elsewhere, not from captioner's code.
EXTERNAL_PREFIXES = {
    "DCGM_FI_": "NVIDIA DCGM exporter (GPU nodes)",
}
EXTERNAL = {"up": "Prometheus itself, one per scrape target"}
# Metrics the code defines that no dashboard or rule shows, each with its reason.
NOT_SHOWN: dict[str, str] = {}
# Queries that return nothing on a machine without a GPU: their only sources are DCGM's.
GPU_ONLY_PREFIX = "DCGM_FI_"

_NAME = re.compile(r"\b((?:captioner|DCGM_FI)[A-Za-z0-9_:]*|up)\b(?!\s*\()")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RULE_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it lives."""

    where: str
    expr: str


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(RULES.glob("*.yaml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    found = []
    for panel in board.get("panels", []):
        found.append(panel)
        found += panel.get("panels", [])
    return found


def dashboard_queries() -> list[Query]:
    queries = []
    for uid, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                queries.append(
                    Query(f"{uid} / {panel['title']} / {target['refId']}", target["expr"])
                )
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                queries.append(Query(f"{uid} / variable {variable['name']}", variable["query"]))
    return queries


def rule_queries() -> list[Query]:
    return [
        Query(f"{group['name']} / {rule.get('record') or rule.get('alert')}", rule["expr"])
        for group in rule_groups()
        for rule in group["rules"]
    ]


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (recording-rule names excluded), histogram suffixes cut.

    A regex rather than a PromQL parser: the names of this stack have fixed
    prefixes (``captioner_``, ``DCGM_FI_``) plus ``up``; quoted label values are
    blanked first. ``label_values(metric, label)`` counts its metric.
    """
    names = set()
    for name in _NAME.findall(_STRING.sub('""', expr)):
        if _RULE_NAME.match(name):
            continue
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        names.add(name)
    return names


def rule_names_used(expr: str) -> set[str]:
    return {name for name in _NAME.findall(_STRING.sub('""', expr)) if _RULE_NAME.match(name)}


def is_external(name: str) -> bool:
    return name in EXTERNAL or any(name.startswith(p) for p in EXTERNAL_PREFIXES)


def gpu_only(expr: str) -> bool:
    names = metric_names(expr)
    return bool(names) and all(n.startswith(GPU_ONLY_PREFIX) for n in names)


def substitute(expr: str, rate_interval: str = "1m", job: str = ".+") -> str:
    """A dashboard query as Grafana would send it, for the given variable values."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", job)
