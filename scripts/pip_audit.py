"""The dependency audit gate: pip-audit over the installed dependency set.

Fails (exit 1) on any known vulnerability not accepted below. When the vulnerability
service cannot be reached or answers for too few packages, that is not a pass: it
prints a warning and exits 0, or fails (exit 2) when ``CAPTIONER_AUDIT_REQUIRED=1``
(set it wherever the network is known to reach PyPI, as on GitHub's runners).

    python scripts/pip_audit.py [--timeout 240]

There is no lock file: ``scripts/setup.sh`` installs the extras into ``.venv``, and
that environment (``pip-audit --local``) is what the tests ran against.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Findings looked at and accepted, by vulnerability id, each with why (docs/reliability.md).
ACCEPTED: dict[str, str] = {}
# Below this share of dependencies looked up, the audit did not happen.
MIN_AUDITED = 0.9
OURS = {"captioner"}  # not on PyPI: nothing to look up


def run_pip_audit(timeout: float) -> dict | None:
    """pip-audit's JSON report, or None when it could not produce one."""
    command = [
        str(Path(sys.executable).with_name("pip-audit")), "--local", "--format", "json",
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds for pip-audit")
    args = parser.parse_args()
    required = os.environ.get("CAPTIONER_AUDIT_REQUIRED") == "1"
    status, lines = verdict(run_pip_audit(args.timeout), required)
    if status:
        prefix = "FAILED: "
    else:
        prefix = "" if "audited:" in lines[0] else "WARNING: "
    print("pip-audit: " + prefix + "\n  ".join(lines), file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
