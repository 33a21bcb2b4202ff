"""The chart against the code it deploys: variable names, probes, ports, drain, monitoring/."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.delivery.chart import (
    CHART as CHART_DIR,
)
from tests.delivery.chart import (
    MONITORING,
    PROFILES,
    container,
    env_values,
    find,
    one,
    pod_spec,
    profile_values,
    render,
    render_profile,
)
from tests.delivery.values_schema import CHART_MANAGED, settings_classes

# Variables a captioner container may carry that are not its settings, and why.
NOT_SETTINGS = {
    "HOME": "Streamlit and TensorFlow write caches under it; the root file system is read-only",
    "TF_CONFIG_TEMPLATE": "the trainer's command line turns it into TF_CONFIG per worker",
}
CAPTIONER_CONTAINERS = {"inference": "inference", "ui": "ui", "trainer": "training"}


def setting_names(component: str) -> set[str]:
    """Every variable name the component's settings class reads, aliases included."""
    model = settings_classes()[component]
    names = set()
    for field, info in model.model_fields.items():
        names.add(f"CAPTIONER_{field.upper()}")
        alias = info.validation_alias
        for choice in getattr(alias, "choices", []):
            names.add(str(choice))
    return names


def unknown_variables(docs: list[dict]) -> list[str]:
    """Variables set on captioner containers that no settings class reads."""
    problems = []
    for workload in docs:
        if workload["kind"] not in ("Deployment", "Job", "StatefulSet"):
            continue
        for c in pod_spec(workload)["containers"]:
            component = CAPTIONER_CONTAINERS.get(c["name"])
            if component is None:
                continue
            known = setting_names(component)
            for variable in c.get("env", []):
                name = variable["name"]
                if name not in known and name not in NOT_SETTINGS and not name.startswith("OTEL_"):
                    problems.append(f"{workload['metadata']['name']}/{c['name']}: {name}")
    return problems


@pytest.mark.parametrize("profile", PROFILES)
def test_every_variable_the_chart_sets_is_a_real_setting(profile):
    assert unknown_variables(render_profile(profile)) == []


def test_a_misspelt_variable_is_caught():
    extra = [{"name": "CAPTIONER_MAX_BATCHSIZE", "value": "4"}]
    docs = render({"inference": {"extraEnv": extra}, "ui": {"extraEnv": extra}})
    assert unknown_variables(docs) == [
        "demo-captioner-inference/inference: CAPTIONER_MAX_BATCHSIZE",
        "demo-captioner-ui/ui: CAPTIONER_MAX_BATCHSIZE",
    ]


def test_values_schema_settings_are_the_settings_classes():
    """values.schema.json's settings parts are generated: refresh after a setting changes."""
    from tests.delivery.values_schema import SCHEMA, settings_schema

    schema = json.loads(SCHEMA.read_text())
    for component in CHART_MANAGED:
        written = schema["properties"][component]["properties"]["settings"]
        assert written == settings_schema(component), (
            f"{component} settings changed: run python -m tests.delivery.values_schema"
        )


@pytest.mark.parametrize("profile", PROFILES)
def test_the_services_accept_the_variables_the_chart_sets(profile, monkeypatch):
    """Each container's variables, read by its settings class as at start-up."""
    docs = render_profile(profile)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Job")]
    checked = 0
    for workload in workloads:
        for c in pod_spec(workload)["containers"]:
            component = CAPTIONER_CONTAINERS.get(c["name"])
            if component is None:
                continue
            with monkeypatch.context() as patch:
                for name in list(__import__("os").environ):
                    if name.startswith("CAPTIONER_") or name == "MONGODB_URI":
                        patch.delenv(name)
                for name, value in env_values(c).items():
                    patch.setenv(name, value)
                settings = settings_classes()[component]()
            checked += 1
            if component == "inference":
                assert settings.host == "0.0.0.0"
                assert settings.port == c["ports"][0]["containerPort"]
            if component == "ui":
                assert settings.ui_host == "0.0.0.0"
    assert checked >= 2


def _port(c: dict, name: str) -> int:
    (port,) = [p["containerPort"] for p in c["ports"] if p["name"] == name]
    return port


@pytest.mark.parametrize("profile", PROFILES)
def test_inference_probes_and_ports_match_the_service(profile):
    from inference.app import create_app
    from inference.settings import ServeSettings

    # The paths the app routes, as its OpenAPI document lists them: FastAPI keeps an
    # included router as one entry of ``app.routes``, not its paths.
    routes = set(create_app(ServeSettings()).openapi()["paths"])
    docs = render_profile(profile)
    deployment = one(docs, "Deployment", "inference")
    inference = container(deployment, "inference")
    port = _port(inference, "http")
    assert int(env_values(inference)["CAPTIONER_PORT"]) == port
    assert inference["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert inference["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert inference["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {"/v2/health/live", "/v2/health/ready", "/metrics"} <= routes
    service = one(docs, "Service", "inference")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("profile", PROFILES)
def test_ui_probes_and_ports_match_the_page(profile):
    from streamlit.web.server.starlette.starlette_routes import ROUTE_HEALTH

    docs = render_profile(profile)
    ui = container(one(docs, "Deployment", "ui"), "ui")
    env = env_values(ui)
    assert int(env["CAPTIONER_UI_PORT"]) == _port(ui, "http")
    assert int(env["CAPTIONER_UI_METRICS_PORT"]) == _port(ui, "metrics")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ui[probe]["httpGet"] == {"path": f"/{ROUTE_HEALTH}", "port": "http"}
    inference_service = one(docs, "Service", "inference")
    # Through the Gateway when it has an in-VPC address (the canary split), else the Service.
    gateway = profile_values(profile).get("gateway", {})
    assert env["CAPTIONER_SERVICE_URL"] == (
        gateway["url"]
        if gateway.get("enabled") and gateway.get("url")
        else f"http://{inference_service['metadata']['name']}:"
        f"{inference_service['spec']['ports'][0]['port']}"
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_grace_period_outlasts_the_drain(profile):
    from inference.settings import ServeSettings

    deployment = one(render_profile(profile), "Deployment", "inference")
    inference = container(deployment, "inference")
    drain = float(
        env_values(inference).get(
            "CAPTIONER_DRAIN_SECONDS", ServeSettings.model_fields["drain_seconds"].default
        )
    )
    pause = inference["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > drain + pause


def test_a_grace_period_shorter_than_the_drain_is_refused():
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match="must exceed settings.drain_seconds"):
        render({"inference": {"settings": {"drain_seconds": 60}}})


@pytest.mark.parametrize("profile", ["cpu", "gpu", "autopilot", "everything"])
def test_scrape_targets_name_ports_that_exist(profile):
    docs = render_profile(profile)
    monitors = find(docs, "ServiceMonitor") + find(docs, "PodMonitoring")
    assert monitors
    for monitor in monitors:
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        if monitor["kind"] == "ServiceMonitor":
            ports = [p["name"] for p in one(docs, "Service", component)["spec"]["ports"]]
        else:
            workload = one(docs, "Deployment", component)
            ports = [p["name"] for c in pod_spec(workload)["containers"] for p in c["ports"]]
        assert endpoint["port"] in ports, f"{monitor['kind']} {component}"


def dashboard_files() -> list:
    files = sorted((MONITORING / "dashboards").glob("*.json"))
    assert files, "no dashboards in monitoring/dashboards/"
    return files


def rule_groups() -> list:
    files = sorted((MONITORING / "rules").glob("*.yaml"))
    assert files, "no rule files in monitoring/rules/"
    return [group for f in files for group in yaml.safe_load(f.read_text())["groups"]]


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_dashboards_are_the_files_in_monitoring_byte_for_byte(profile):
    maps = {
        key: (value, cm["metadata"])
        for cm in find(render_profile(profile), "ConfigMap", "monitoring")
        for key, value in cm["data"].items()
    }
    files = dashboard_files()
    assert sorted(maps) == [f.name for f in files]
    for f in files:
        text, metadata = maps[f.name]
        assert text == f.read_text(), f"{f.name} differs from monitoring/"
        assert metadata["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize(("profile", "kind"), [("gpu", "PrometheusRule"), ("autopilot", "Rules")])
def test_alert_rules_are_the_groups_in_monitoring(profile, kind):
    rule = one(render_profile(profile), kind)
    assert rule["spec"]["groups"] == rule_groups()


def test_the_packaged_chart_carries_the_dashboards_and_rules(tmp_path):
    """`helm package` follows the monitoring/ link: the archive carries the files, not the code."""
    import tarfile

    import helm_python as helm

    archive = helm.package(CHART_DIR, destination=tmp_path, app_version="0.1.0")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    monitoring = sorted(n for n in names if "/monitoring/" in n)
    expected = [f"captioner/monitoring/dashboards/{f.name}" for f in dashboard_files()]
    expected += [f"captioner/monitoring/rules/{f.name}" for f in sorted(MONITORING.glob("rules/*"))]
    assert set(expected) <= set(monitoring)
    # The generators, their tests and caches stay out (.helmignore).
    assert not [n for n in monitoring if n.endswith(".py") or "/tests/" in n or "__pycache" in n]
    with helm.Chart.load(archive) as chart:
        rendered = chart.render(
            {"metrics": {"dashboards": {"enabled": True}}}, name="demo", namespace="captioner"
        )
    text = rendered["captioner/templates/monitoring/dashboards.yaml"]
    assert text.count("grafana_dashboard") == len(dashboard_files())
