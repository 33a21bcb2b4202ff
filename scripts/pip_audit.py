"""The dependency audit gate: pip-audit over the installed set and every image's lock.

Audits, each on its own (the locks pin different versions of shared packages):

- the environment the tests ran in (``pip-audit --local`` on ``.venv``, installed by
  ``scripts/setup.sh`` from pyproject.toml's extras);
- the locked, hashed dependency set of every container image
  (``docker/*/requirements*.txt``, written by ``docker/lock.sh``): what is shipped.

Fails (exit 1) on any known vulnerability not accepted below. When the vulnerability
service cannot be reached or answers for too few packages, that is not a pass: it
prints a warning and exits 0, or fails (exit 2) when ``CAPTIONER_AUDIT_REQUIRED=1``
(set it wherever the network is known to reach PyPI, as on GitHub's runners).

    python scripts/pip_audit.py [--timeout 240]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Findings looked at and accepted, by vulnerability id, each with why (docs/reliability.md).
ACCEPTED: dict[str, str] = {}
# Below this share of dependencies looked up, the audit did not happen.
MIN_AUDITED = 0.9
OURS = {"captioner"}  # not on PyPI: nothing to look up


def targets() -> dict[str, list[str]]:
    """What to audit, by name: pip-audit's arguments for each."""
    found = {".venv (installed)": ["--local"]}
    for lock in sorted((ROOT / "docker").glob("*/requirements*.txt")):
        # Hashed pins: pip-audit reads them as they are, without pip resolving anything.
        found[str(lock.relative_to(ROOT))] = ["--requirement", str(lock), "--disable-pip"]
    return found


def run_pip_audit(arguments: list[str], timeout: float) -> dict | None:
    """pip-audit's JSON report, or None when it could not produce one."""
    command = [
        str(Path(sys.executable).with_name("pip-audit")), *arguments, "--format", "json",
        "--progress-spinner", "off", "--timeout", "30",
        *(arg for vuln in ACCEPTED for arg in ("--ignore-vuln", vuln)),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError) as exc:
        print(f"pip-audit: {exc}", file=sys.stderr)
        return None
    try:
        return json.loads(done.stdout)
    except ValueError:
        print(f"pip-audit (exit {done.returncode}): {done.stderr.strip()[-2000:]}", file=sys.stderr)
        return None


def fixes(vuln: dict) -> str:
    return ", ".join(vuln.get("fix_versions", [])) or "no release yet"


def verdict(report: dict | None, required: bool) -> tuple[int, list[str]]:
    """Exit status and the lines to print for one pip-audit report."""
    if report is None:
        return (2 if required else 0), ["pip-audit could not run against its service"]
    dependencies = [d for d in report.get("dependencies", []) if d["name"] not in OURS]
    found = [
        f"{d['name']} {d['version']}: {v['id']} (fixed in {fixes(v)})"
        for d in dependencies
        for v in d.get("vulns", [])
    ]
    audited = [d for d in dependencies if "skip_reason" not in d]
    if found:
        return 1, ["known vulnerabilities (fix, or accept in scripts/pip_audit.py):", *found]
    if not dependencies or len(audited) < MIN_AUDITED * len(dependencies):
        message = (
            f"only {len(audited)} of {len(dependencies)} dependencies could be looked up: "
            "the vulnerability service is unreachable from here, so nothing was audited"
        )
        return (2 if required else 0), [message]
    accepted = f" (accepted: {', '.join(sorted(ACCEPTED))})" if ACCEPTED else ""
    return 0, [f"{len(audited)} dependencies audited: no known vulnerabilities{accepted}"]


def audited(lines: list[str]) -> bool:
    return "audited:" in lines[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per pip-audit run")
    args = parser.parse_args()
    required = os.environ.get("CAPTIONER_AUDIT_REQUIRED") == "1"
    worst = 0
    for name, arguments in targets().items():
        status, lines = verdict(run_pip_audit(arguments, args.timeout), required)
        worst = max(worst, status)
        prefix = "FAILED: " if status else ("" if audited(lines) else "WARNING: ")
        out = sys.stderr if status else sys.stdout
        print(f"pip-audit {name}: {prefix}" + "\n  ".join(lines), file=out, flush=True)
        if status != 1 and not audited(lines):
            # One vulnerability service for every target: unreachable for one, for all.
            print("pip-audit: stopped; the remaining targets were not audited either", file=out)
            break
    return worst


if __name__ == "__main__":
    sys.exit(main())
