"""The dependency audit gate's verdicts (scripts/pip_audit.py) on pip-audit reports."""

from __future__ import annotations

import importlib.util
import re

import pytest
from packaging.utils import canonicalize_name

from tests.helpers import REPO


@pytest.fixture(scope="module")
def gate():
    spec = importlib.util.spec_from_file_location("pip_audit_gate", REPO / "scripts/pip_audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(*dependencies):
    return {"dependencies": [{"name": "captioner", "skip_reason": "not on PyPI"}, *dependencies]}


CLEAN = [{"name": f"lib{i}", "version": "1.0", "vulns": []} for i in range(20)]
FINDING = {"id": "GHSA-1", "fix_versions": ["0.2"]}
VULNERABLE = {"name": "lib-x", "version": "0.1", "vulns": [FINDING]}
SKIPPED = [{"name": f"lib{i}", "skip_reason": "Dependency not found on PyPI"} for i in range(20)]


def test_a_clean_audit_passes(gate):
    status, lines = gate.verdict(report(*CLEAN), required=True)
    assert status == 0 and "20 dependencies audited" in lines[0]


def test_a_finding_fails_and_names_the_fix(gate):
    status, lines = gate.verdict(report(*CLEAN, VULNERABLE), required=False)
    assert status == 1 and "lib-x 0.1: GHSA-1 (fixed in 0.2)" in lines


@pytest.mark.parametrize("unreached", [None, report(*SKIPPED), report(*SKIPPED[:5], *CLEAN[:10])])
def test_an_audit_that_looked_nothing_up_is_not_a_pass(gate, unreached):
    status, lines = gate.verdict(unreached, required=False)
    assert status == 0 and ("unreachable" in lines[0] or "could not run" in lines[0])
    assert gate.verdict(unreached, required=True)[0] == 2


def test_the_audit_covers_the_environment_and_every_image_lock(gate):
    targets = gate.targets()
    assert targets.pop(".venv (installed)") == ["--local"]
    locks = {str(p.relative_to(REPO)) for p in (REPO / "docker").glob("*/requirements*.txt")}
    assert set(targets) == locks and len(locks) == 4
    assert all("--disable-pip" in arguments for arguments in targets.values())


@pytest.mark.parametrize(
    "lock",
    sorted((REPO / "docker").glob("*/requirements*.txt")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_pip_audit_reads_every_package_pinned_in_a_lock(gate, lock):
    """Reachable or not, the report names every pin: the whole shipped set is looked up."""
    pinned = {
        canonicalize_name(m.group(1))
        for m in re.finditer(r"^([A-Za-z0-9][\w.-]*)==", lock.read_text(), re.MULTILINE)
    }
    report = gate.run_pip_audit(gate.targets()[str(lock.relative_to(REPO))], timeout=240)
    assert report is not None
    assert {d["name"] for d in report["dependencies"]} >= pinned
