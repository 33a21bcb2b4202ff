"""compose.yaml offline: valid Compose (compose-spec), every file it mounts there, run as
the chart runs the same images, and its Prometheus and Grafana wired to monitoring/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from compose_spec import PyCompose

from tests.delivery.chart import REPO, container, one, pod_spec, render_profile
from tests.delivery.containers import COMPOSE, compose, interpolate, seconds, service_flags
from tests.delivery.test_chart_contract import NOT_SETTINGS, setting_names

ENV = {"GRAFANA_ADMIN_PASSWORD": "unused-in-this-test"}
PROMTOOL = shutil.which("promtool")
# What each service runs, and the chart container that runs the same image.
COMPONENTS = {"inference": "inference", "ui": "ui"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return compose(ENV)


def test_compose_yaml_is_valid_compose(spec):
    parsed = PyCompose.from_json(json.dumps(spec))
    assert set(parsed.service_names()) == {"inference", "ui", "mongo", "prometheus", "grafana"}


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("services", "ui", "read_only"), "maybe", "expected a boolean"),
        (("services", "ui", "imagee"), "x", "imagee"),
        (("services", "inference", "ports"), 8000, "expected a set"),
    ],
)
def test_compose_spec_refuses_a_broken_file(spec, path, value, complaint):
    broken = json.loads(json.dumps(spec))
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=complaint):
        PyCompose.from_json(json.dumps(broken))


def test_grafanas_admin_password_must_be_given():
    raw = yaml.safe_load(COMPOSE.read_text())
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    with pytest.raises(ValueError, match="GRAFANA_ADMIN_PASSWORD is required"):
        interpolate(raw, env)


def test_every_file_compose_mounts_or_builds_is_in_the_repository(spec):
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("./"):
                continue  # a named volume
            if source == "./runs/demo/package":
                # The demo's package: scripts/demo.sh writes and serves it.
                assert source[2:] in (REPO / "scripts" / "demo.sh").read_text()
                continue
            assert (REPO / source).exists(), f"{name} mounts {source}, which is missing"
        if "build" in service:
            assert (REPO / service["build"]["dockerfile"]).is_file()
            assert service["build"]["context"] == "."


def test_images_are_the_names_the_build_script_gives(spec):
    script = (REPO / "docker" / "build.sh").read_text()
    assert 'name="captioner-$image:$tag"' in script
    assert spec["services"]["inference"]["image"] == "captioner-inference-cpu:latest"
    assert spec["services"]["ui"]["image"] == "captioner-ui:latest"


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_services_run_as_the_chart_runs_the_same_image(spec, name):
    service = spec["services"][name]
    deployment = one(render_profile("cpu"), "Deployment", name)
    chart = container(deployment, name)
    security = chart["securityContext"]
    assert service["read_only"] is security["readOnlyRootFilesystem"] is True
    assert service["cap_drop"] == security["capabilities"]["drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert security["allowPrivilegeEscalation"] is False
    # Writable where the chart mounts a volume, and nowhere else (the model package is
    # read-only in compose; the CPU profile copies it into a volume of its own at start).
    chart_mounts = {
        m["mountPath"]
        for m in chart["volumeMounts"]
        if not m.get("readOnly") and m["name"] != "model"
    }
    compose_mounts = set(service.get("tmpfs", []))
    compose_mounts |= {v.split(":")[1] for v in service.get("volumes", []) if ":ro" not in v}
    assert compose_mounts == chart_mounts
    grace = seconds(service["stop_grace_period"])
    assert grace == pod_spec(deployment)["terminationGracePeriodSeconds"]
    flags = service_flags(service)
    assert flags[flags.index("--stop-timeout") + 1] == str(int(grace))


def test_the_service_drains_inside_its_stop_grace_period(spec):
    from inference.settings import ServeSettings

    service = spec["services"]["inference"]
    drain = float(
        service["environment"].get(
            "CAPTIONER_DRAIN_SECONDS", ServeSettings.model_fields["drain_seconds"].default
        )
    )
    assert seconds(service["stop_grace_period"]) > drain


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_every_variable_compose_sets_is_a_real_setting(spec, name):
    known = setting_names(COMPONENTS[name]) | set(NOT_SETTINGS) | {"MONGODB_URI"}
    unknown = set(spec["services"][name]["environment"]) - known
    assert not unknown, unknown


def test_the_page_reaches_the_service_and_the_database_by_their_service_names(spec):
    env = spec["services"]["ui"]["environment"]
    assert env["CAPTIONER_SERVICE_URL"] == "http://inference:8000"
    assert env["MONGODB_URI"].startswith("mongodb://mongo:")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus")
def test_prometheus_loads_the_projects_rules_as_compose_mounts_them(spec, tmp_path):
    """The container's /etc/prometheus, laid out from compose's mounts, passes promtool."""
    service = spec["services"]["prometheus"]
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if not source.startswith("./"):
            continue
        into = tmp_path / target.lstrip("/")
        into.parent.mkdir(parents=True, exist_ok=True)
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, into)
        else:
            shutil.copy2(origin, into)
    config_flag = next(c for c in service["command"] if c.startswith("--config.file="))
    config = tmp_path / config_flag.split("=", 1)[1].lstrip("/")
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "captioner-alerts.yaml" in result.stdout + result.stderr
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in yaml.safe_load(config.read_text())["scrape_configs"]
    }
    ui_metrics = spec["services"]["ui"]["ports"][1].split(":")[-1]
    assert targets == {
        "captioner-inference": ["inference:8000"],
        "captioner-ui": [f"ui:{ui_metrics}"],
    }


def test_grafana_provisions_the_projects_dashboards_on_compose_prometheus(spec):
    service = spec["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in service["volumes"])
    provisioning = REPO / mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090" and source["isDefault"] is True
    [provider] = yaml.safe_load((provisioning / "dashboards" / "captioner.yaml").read_text())[
        "providers"
    ]
    dashboards = REPO / mounts[provider["options"]["path"]]
    assert dashboards == REPO / "monitoring" / "dashboards"
    files = sorted(dashboards.glob("*.json"))
    assert files
    for file in files:
        variables = json.loads(file.read_text())["templating"]["list"]
        [datasource] = [v for v in variables if v["type"] == "datasource"]
        assert datasource["query"] == source["type"]
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / home.rsplit("/", 1)[1]).is_file()
