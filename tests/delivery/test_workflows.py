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


def deploy_step(step_id: str) -> dict:
    (step,) = [s for s in load("deploy.yml")["jobs"]["deploy"]["steps"] if s.get("id") == step_id]
    return step


def run_step(step: dict, tmp_path: Path, fakes: dict[str, str], env: dict[str, str]) -> dict:
    """A step's script as the runner runs it (bash -eo pipefail), with stand-in commands."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    output = tmp_path / "output"
    output.write_text("")
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return {"rc": result.returncode, "out": result.stdout + result.stderr, "outputs": outputs}


# `captioner rollout analyze` exits, one per window, and what the stage decides.
ANALYSES = [
    ([0], "promote", 1),
    ([4], "rollback", 1),
    ([3, 0], "promote", 2),  # hold: one more window
    ([3, 4], "rollback", 2),
    ([3, 3], "rollback", 2),  # still hold after two windows: roll back
    ([1], None, 1),  # an error fails the step (and the canary is removed)
    ([3, 2], None, 2),
]


@pytest.mark.parametrize(("exits", "decision", "windows"), ANALYSES)
def test_the_canary_analysis_decides_on_the_exit_code(tmp_path, exits, decision, windows):
    (tmp_path / "exits").write_text("\n".join(map(str, exits)) + "\n")
    fakes = {
        "sleep": 'echo "sleep $*" >>calls',
        "kubectl": 'echo "kubectl $*" >>calls; exec /bin/sleep 20',
        "curl": "exit 0",
        "captioner": 'echo "captioner $*" >>calls\n'
        'code=$(head -n 1 exits); sed -i 1d exits; exit "$code"',
    }
    env = {
        "CANARY_WINDOW": "15m",
        "PROMETHEUS_NAMESPACE": "monitoring",
        "PROMETHEUS_SERVICE": "kube-prometheus-stack-prometheus",
        "PROMETHEUS_PORT": "9090",
        "STABLE_VERSION": "6",
        "CANARY_VERSION": "7",
    }
    result = run_step(deploy_step("analyze"), tmp_path, fakes, env)
    calls = (tmp_path / "calls").read_text().splitlines()
    analyses = [c for c in calls if c.startswith("captioner")]
    assert (
        analyses
        == [
            "captioner rollout analyze --prometheus http://127.0.0.1:9090 "
            "--stable 6 --canary 7 --window 15m"
        ]
        * windows
    )
    assert calls.count("sleep 15m") == windows  # a whole window before each analysis
    assert (
        "kubectl -n monitoring port-forward service/kube-prometheus-stack-prometheus 9090:9090"
        in calls
    )
    assert result["outputs"].get("decision") == decision, result["out"]
    assert (result["rc"] == 0) == (decision is not None), result["out"]


def test_promote_and_roll_back_follow_the_decision():
    steps = {s.get("name", ""): s for s in load("deploy.yml")["jobs"]["deploy"]["steps"]}
    (promote,) = [s for n, s in steps.items() if n.startswith("promote")]
    (rollback,) = [s for n, s in steps.items() if n.startswith("roll back the canary")]
    assert promote["if"] == "steps.analyze.outputs.decision == 'promote'"
    # Promotion: the canary's package becomes stable's, the canary goes, then the alias moves.
    run = promote["run"]
    assert "--set inference.canary.enabled=false" in run
    assert 'inference.modelVersion="$CANARY_VERSION"' in run
    assert 'inference.modelPackage.gcsFuse.onlyDir="$CANARY_DIR"' in run
    # The alias takes the registry's number; the chart and the analysis the package version.
    alias = 'captioner registry alias champion "$CANARY_REGISTRY_VERSION"'
    assert run.index("helm upgrade") < run.index(alias)
    # Rolled back (by decision, an analysis error, a failed promotion or a cancel): the
    # canary goes, stable and the alias stay.
    for clause in (
        "always()",
        "steps.canary.outcome == 'success'",
        "steps.analyze.outputs.decision == 'rollback'",
        "steps.analyze.outcome != 'success'",
        "steps.promote.outcome == 'failure'",
    ):
        assert clause in rollback["if"], clause
    assert "--set inference.canary.enabled=false" in rollback["run"]
    assert "registry alias" not in rollback["run"] and "modelVersion" not in rollback["run"]
    canary = deploy_step("canary")
    assert canary["if"] == "steps.models.outputs.canary-version != ''"
    for flag in ("inference.canary.enabled=true", 'inference.canary.weight="$CANARY_WEIGHT"'):
        assert flag in canary["run"], flag
    assert "--rollback-on-failure" in canary["run"] and "--reuse-values" in canary["run"]
    job = load("deploy.yml")["jobs"]["deploy"]
    assert job["env"]["CANARY_WINDOW"] == "${{ vars.CANARY_WINDOW || '15m' }}"
    names = [s.get("id") for s in job["steps"]]
    assert names.index("smoke") < names.index("canary") < names.index("analyze")


def version(number: int, package_version: str) -> str:
    """`captioner registry show`'s JSON for a version (registry.version.RegisteredVersion)."""
    import json

    source = f"gs://models/registry/{number}/package"
    return json.dumps({"version": number, "package_version": package_version, "source": source})


@pytest.mark.parametrize(
    ("challenger", "canary"),
    [
        (version(7, "p7"), ("p7", "models", "registry/7", "package", "7")),
        (version(6, "p6"), None),  # already the champion
        (None, None),  # no challenger alias
    ],
)
def test_the_models_come_from_the_registry_aliases(tmp_path, challenger, canary):
    show = f"case $3 in champion) echo '{version(6, 'p6')}' ;;\n"
    show += (
        f"challenger) echo '{challenger}' ;;\n"
        if challenger
        else "challenger) echo 'no alias' >&2; exit 1 ;;\n"
    )
    # `registry show ALIAS`, nothing more: the command prints JSON and has no --json.
    fakes = {"captioner": f'[ "$1 $2 $#" = "registry show 3" ] || exit 9\n{show}esac'}
    env = {
        "CAPTIONER_REGISTRY_URI": "https://mlflow.example",
        "MODEL_BUCKET": "b",
        "MODEL_DIR": "d",
    }
    result = run_step(deploy_step("models"), tmp_path, fakes, env)
    assert result["rc"] == 0, result["out"]
    out = result["outputs"]
    assert (out["stable-version"], out["stable-bucket"], out["stable-dir"], out["stable-path"]) == (
        "p6",
        "models",
        "registry/6",
        "package",
    )
    keys = ("version", "bucket", "dir", "path", "registry-version")
    assert tuple(out.get(f"canary-{k}") for k in keys) == (canary or (None,) * 5)


def test_without_a_registry_stable_serves_the_configured_folder(tmp_path):
    env = {
        "CAPTIONER_REGISTRY_URI": "",
        "MODEL_BUCKET": "captioner-models",
        "MODEL_DIR": "shapes-attention",
    }
    result = run_step(deploy_step("models"), tmp_path, {"captioner": "exit 9"}, env)
    assert result["rc"] == 0, result["out"]
    assert result["outputs"] == {
        "stable-version": "",
        "stable-bucket": "captioner-models",
        "stable-path": "package",
        "stable-dir": "shapes-attention",
    }


def test_a_package_the_pods_cannot_mount_is_refused(tmp_path):
    champion = '{"version": 6, "package_version": "p6", "source": "mlflow-artifacts:/6/p"}'
    fakes = {"captioner": f"echo '{champion}'"}
    env = {
        "CAPTIONER_REGISTRY_URI": "https://mlflow.example",
        "MODEL_BUCKET": "b",
        "MODEL_DIR": "d",
    }
    result = run_step(deploy_step("models"), tmp_path, fakes, env)
    assert result["rc"] != 0 and "not a gs://BUCKET/PATH" in result["out"]
