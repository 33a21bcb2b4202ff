"""The GitHub workflows: actionlint, the workflow schema, and the deployment's rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.delivery.chart import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
# With shellcheck, actionlint also checks every `run:` script.
ACTIONLINT = [str(BIN / "actionlint"), "-no-color", f"-shellcheck={BIN / 'shellcheck'}"]
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict:
    text = (REPO / ".github" / "workflows" / name).read_text()
    # YAML 1.1 reads the key `on` as True.
    return {("on" if k is True else k): v for k, v in yaml.safe_load(text).items()}


def steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_the_workflows_exist():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "deploy.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow):
    result = subprocess.run(ACTIONLINT + [str(workflow)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_problems(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: [missing]\n"
        "    steps:\n      - run: rm -rf $TARGET/*\n"
    )
    result = subprocess.run(ACTIONLINT + [str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "missing" in result.stdout  # actionlint's own check
    assert "SC2086" in result.stdout  # shellcheck on the script: $TARGET unquoted


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_the_github_workflow_schema_passes(workflow):
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(workflow):
    text = workflow.read_text()
    for line in text.splitlines():
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not match or match.group(1).startswith("./"):
            continue
        assert PINNED.match(match.group(1)), line
        assert re.search(r"#\s*v\d", match.group(2)), f"no version comment: {line}"


def test_least_privilege_permissions():
    for name in ("ci.yml", "deploy.yml"):
        workflow = load(name)
        assert workflow["permissions"] == {"contents": "read"}, name
        for job_name, job in workflow["jobs"].items():
            permissions = job.get("permissions", {})
            writes = {k for k, v in permissions.items() if v == "write"}
            assert writes <= {"id-token"}, f"{name}/{job_name}: {writes}"
            if writes:
                assert "deploy" in job_name or name == "deploy.yml", f"{name}/{job_name}"
    for job in load("deploy.yml")["jobs"].values():
        for step in job.get("steps", []):
            assert "credentials_json" not in step.get("with", {}), "no JSON keys"


def test_ci_runs_the_checks_and_mongo_backed_tests_on_pull_requests():
    ci = load("ci.yml")
    assert {"pull_request", "push"} <= set(ci["on"])
    commands = "\n".join(s.get("run", "") for s in steps(ci))
    for gate in ("ruff check", "ruff format --check", "mypy", "pytest", "pytest tests/delivery"):
        assert gate in commands, gate
    (audit,) = [s for s in steps(ci) if "scripts/pip_audit.py" in s.get("run", "")]
    assert audit["env"]["CAPTIONER_AUDIT_REQUIRED"] == "1"  # unreachable is a failure there
    mongodb = ci["jobs"]["mongodb"]
    assert mongodb["services"]["mongo"]["image"].startswith("mongo:")
    assert mongodb["env"]["MONGODB_URI"].startswith("mongodb://")
    assert "pytest tests/ui" in "\n".join(s.get("run", "") for s in mongodb["steps"])
    deploy = ci["jobs"]["deploy"]
    assert deploy["uses"] == "./.github/workflows/deploy.yml"
    assert set(deploy["needs"]) == set(ci["jobs"]) - {"deploy"}
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]


def test_deploy_authenticates_by_workload_identity_and_rolls_back():
    deploy = load("deploy.yml")
    auth = [s for s in steps(deploy) if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert auth and all("workload_identity_provider" in s["with"] for s in auth)
    gke = [s for s in steps(deploy) if "get-gke-credentials@" in s.get("uses", "")]
    assert gke
    job = deploy["jobs"]["deploy"]
    assert job["environment"]["name"] == "production"
    assert job["concurrency"]["cancel-in-progress"] is False
    upgrade = next(s["run"] for s in job["steps"] if "helm upgrade" in s.get("run", ""))
    # Helm 4 renamed --atomic to --rollback-on-failure (the pinned Helm is 4).
    assert "--install" in upgrade and "--rollback-on-failure" in upgrade
    assert "--wait" in upgrade and '.image.tag="$TAG"' in upgrade
    (helm,) = [s for s in job["steps"] if "setup-helm@" in s.get("uses", "")]
    assert helm["with"]["version"].startswith("v4.")
    smoke = next(s["run"] for s in job["steps"] if s.get("id") == "smoke")
    assert "/v2/health/ready" in smoke and "/v1/captions" in smoke
    images = deploy["jobs"]["images"]
    built = {item["dockerfile"] for item in images["strategy"]["matrix"]["include"]}
    assert built == {str(p.relative_to(REPO)) for p in (REPO / "docker").glob("*/Dockerfile*")}
    (push,) = [s for s in images["steps"] if "build-push-action@" in s.get("uses", "")]
    assert push["with"]["tags"].endswith(":${{ github.sha }}")


def test_the_deployed_helm_is_the_one_the_tests_render_with():
    import helm_python as helm

    (setup,) = [s for s in steps(load("deploy.yml")) if "setup-helm@" in s.get("uses", "")]
    assert setup["with"]["version"] == helm.helm_sdk_version()
