"""The import map of the components, held against the directions the design allows.

``python scripts/import_map.py`` prints every arrow between components (top-level
packages) with how many imports make it, marks any the design does not allow, and
exits 1 if there is one. ``tests/unit/test_architecture.py`` checks the same table;
docs/architecture.md explains it.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Who may import whom: the design, written down (docs/architecture.md, "Components").
# The core imports no component; telemetry is the small package the service and the
# page share; export reads training's runs; the page uses the feedback component; only
# the command line imports everyone.
ALLOWED: dict[str, set[str]] = {
    "captioner": set(),
    "telemetry": set(),
    "training": {"captioner"},
    "export": {"captioner", "training"},
    "inference": {"captioner", "telemetry"},
    "feedback": {"captioner", "telemetry"},
    "ui": {"captioner", "telemetry", "feedback"},
    "monitoring": set(),
    "registry": {"captioner"},
    "rollout": set(),
    "cli": {
        "captioner",
        "telemetry",
        "training",
        "export",
        "inference",
        "feedback",
        "ui",
        "registry",
        "rollout",
    },
}
COMPONENTS = tuple(ALLOWED)


def imports(folder: Path) -> Iterator[tuple[Path, str]]:
    """(file, imported module) for every import under FOLDER, lazy ones included."""
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


def arrows(root: Path = ROOT) -> Counter[tuple[str, str]]:
    """How many imports run from each component to each other one."""
    found: Counter[tuple[str, str]] = Counter()
    for component in COMPONENTS:
        for _, module in imports(root / component):
            target = module.split(".")[0]
            if target in ALLOWED and target != component:
                found[component, target] += 1
    return found


def forbidden(root: Path = ROOT) -> list[str]:
    """Every import that runs against the allowed directions, as ``file: module``."""
    return [
        f"{path.relative_to(root)}: {module}"
        for component in COMPONENTS
        for path, module in imports(root / component)
        if module.split(".")[0] in ALLOWED
        and module.split(".")[0] != component
        and module.split(".")[0] not in ALLOWED[component]
    ]


def main() -> int:
    found = arrows()
    for component in COMPONENTS:
        targets = [f"{t} ({n})" for (c, t), n in sorted(found.items()) if c == component]
        print(f"{component:10} -> {', '.join(targets) or 'nothing of the project'}")
    bad = forbidden()
    for line in bad:
        print(f"NOT ALLOWED  {line}")
    print(f"{sum(found.values())} imports between components, {len(bad)} against the design")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
