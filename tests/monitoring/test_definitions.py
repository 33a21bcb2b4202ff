"""Dashboards and rules as files: current, valid for promtool, tested, documented, and
naming only metrics the code defines (docs/architecture.md, telemetry: both ways)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from feedback.metrics import FeedbackMetrics
from inference.metrics import ServiceMetrics
from monitoring import contract
from monitoring.build_rules import RUNBOOK_BASE, alerts
from monitoring.generate import main as generate
from tests.helpers import REPO

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool comes with Debian's prometheus (scripts/setup.sh)"
)
ALERT_TESTS = sorted((REPO / "monitoring" / "tests").glob("*.test.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks"


def defined_metrics() -> dict[str, str]:
    """Every sample name the code exposes, mapped to its family (histogram parts folded)."""
    families: list[Metric] = [
        *ServiceMetrics().registry.collect(),
        *FeedbackMetrics().registry.collect(),
    ]
    names = {}
    for family in families:
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        names[exposed] = family.type
    return names


def test_the_committed_files_are_what_the_code_generates():
    assert generate(["--check"]) == 0, "run: python -m monitoring.generate"


@needs_promtool
def test_promtool_accepts_every_rule_file():
    files = sorted((REPO / "monitoring" / "rules").glob("*.yaml"))
    assert len(files) == 2
    result = subprocess.run(
        [PROMTOOL, "check", "rules", *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


@needs_promtool
def test_promtool_unit_tests_pass():
    assert len(ALERT_TESTS) == 2
    result = subprocess.run(
        [PROMTOOL, "test", "rules", *(p.name for p in ALERT_TESTS)],
        cwd=ALERT_TESTS[0].parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("SUCCESS") == len(ALERT_TESTS)


def test_every_alert_has_a_unit_test_firing_and_one_not_firing():
    cases = [case for p in ALERT_TESTS for case in yaml.safe_load(p.read_text())["tests"]]
    firing, silent = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {a.name for a in alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"
    assert (firing | silent) - names == set(), "tests for alerts that do not exist"


def test_every_alert_links_a_runbook_that_exists_and_says_what_to_do():
    for group in contract.rule_groups():
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            url = rule["annotations"]["runbook_url"]
            assert url.startswith(RUNBOOK_BASE + "/"), url
            page = RUNBOOKS / url.removeprefix(RUNBOOK_BASE + "/")
            assert page.is_file(), f"{rule['alert']}: {page} missing"
            text = page.read_text()
            assert rule["alert"] in text, f"{page.name} does not name {rule['alert']}"
            for heading in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
                assert heading in text, f"{page.name} lacks {heading}"
            assert rule["labels"]["severity"] in {"critical", "warning"}


def test_dashboards_have_a_datasource_variable_stable_uids_and_units_everywhere():
    boards = contract.dashboards()
    assert set(boards) == {
        "captioner-overview",
        "captioner-model",
        "captioner-feedback",
        "captioner-gpu",
    }
    for name, board in boards.items():
        assert board["uid"] == name
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in contract.panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in contract.panels(board):
            if panel["type"] == "row":
                continue
            where = f"{name} / {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
            assert panel["targets"], f"{where}: no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where


def test_every_metric_a_query_names_is_defined_by_the_code():
    defined = defined_metrics()
    recorded = contract.recorded_names()
    for query in contract.dashboard_queries() + contract.rule_queries():
        for name in contract.metric_names(query.expr):
            assert name in defined or contract.is_external(name), f"{query.where}: {name}"
        for name in contract.rule_names_used(query.expr):
            assert name in recorded, f"{query.where}: no recording rule {name}"


def test_every_metric_the_code_defines_is_shown_or_listed_as_not_shown():
    used = set()
    for query in contract.dashboard_queries() + contract.rule_queries():
        used |= contract.metric_names(query.expr)
    defined = set(defined_metrics())
    assert defined - used - set(contract.NOT_SHOWN) == set(), "defined, never shown"
    assert set(contract.NOT_SHOWN) <= defined, "NOT_SHOWN lists metrics that do not exist"
    assert set(contract.NOT_SHOWN).isdisjoint(used), "NOT_SHOWN lists metrics that are shown"


def test_the_metric_name_reader_is_not_fooled_by_labels_functions_or_suffixes():
    expr = (
        'sum by (le) (rate(captioner_request_duration_seconds_bucket{job=~"captioner_x"}[5m]))'
        ' / captioner:requests:rate5m and up{job=~".*captioner.*"} == 0'
    )
    assert contract.metric_names(expr) == {"captioner_request_duration_seconds", "up"}
    assert contract.rule_names_used(expr) == {"captioner:requests:rate5m"}
    assert contract.gpu_only("avg(DCGM_FI_DEV_GPU_UTIL)")
    assert not contract.gpu_only("avg(DCGM_FI_DEV_GPU_UTIL) / captioner_model_ready")


def test_a_misspelt_metric_would_be_caught(tmp_path: Path):
    defined = defined_metrics()
    [name] = contract.metric_names("rate(captioner_request_total[5m])")
    assert name not in defined and not contract.is_external(name)


@needs_promtool
def test_the_local_prometheus_configuration_is_valid_with_its_rules():
    result = subprocess.run(
        [PROMTOOL, "check", "config", "monitoring/prometheus-local.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Both rule files were read through the configuration, every rule of each.
    for group in contract.rule_groups():
        assert f"SUCCESS: {len(group['rules'])} rules found" in result.stdout, group["name"]
