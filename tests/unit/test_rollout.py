"""Canary analysis: the verdict's rules on given numbers, and the command's error paths."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner

from cli.main import main
from rollout.analysis import Status, Verdict, VersionMetrics, decide
from rollout.promql import Queries, quote
from rollout.settings import RolloutSettings
from tests.helpers import REPO, ArchiveServer, free_port

SETTINGS = RolloutSettings(min_requests=100, min_captions=50, min_feedback=20)
HEALTHY = VersionMetrics(
    requests=1000,
    error_ratio=0.001,
    rejected_ratio=0.01,
    latency_p99=0.2,
    captions=990,
    log_prob_median=-3.5,
    feedback=80,
    thumbs_up_rate=0.6,
)


def verdict(canary: VersionMetrics, stable: VersionMetrics = HEALTHY, **settings):
    return decide(stable, canary, SETTINGS.model_copy(update=settings))


def test_a_canary_like_stable_with_enough_samples_is_promoted():
    analysis = verdict(replace(HEALTHY, requests=200, captions=198, feedback=25))
    assert analysis.verdict is Verdict.PROMOTE and analysis.verdict.exit_code == 0
    assert {s.status for s in analysis.signals} == {Status.PASS}


@pytest.mark.parametrize(
    ("change", "signal"),
    [
        ({"error_ratio": 0.05}, "5xx ratio"),
        ({"rejected_ratio": 0.2}, "429 ratio"),
        ({"latency_p99": 0.36}, "p99 latency"),  # > 0.2 x 1.5 + 0.05
        ({"thumbs_up_rate": 0.45}, "thumbs-up rate"),
        ({"log_prob_median": -4.6}, "median log-probability"),
    ],
)
def test_each_rule_rolls_the_canary_back(change, signal):
    analysis = verdict(replace(HEALTHY, **change))
    assert analysis.verdict is Verdict.ROLLBACK and analysis.verdict.exit_code == 4
    assert [s.name for s in analysis.signals if s.status is Status.FAIL] == [signal]
    assert len(analysis.reasons) == 1 and analysis.reasons[0].startswith(signal)


@pytest.mark.parametrize(
    "change",
    [
        {"error_ratio": 0.009},  # + 0.8 points, but under the 1 % floor
        {"rejected_ratio": 0.04},  # + 3 points, under the 5 % floor
        {"latency_p99": 0.34},  # within 0.2 x 1.5 + 0.05
        {"thumbs_up_rate": 0.51},  # within the 10-point margin
        {"log_prob_median": -4.4},  # within 1 nat
    ],
)
def test_a_change_within_the_thresholds_still_promotes(change):
    assert verdict(replace(HEALTHY, **change)).verdict is Verdict.PROMOTE


def test_too_few_requests_hold_even_a_canary_that_fails_every_request():
    analysis = verdict(replace(HEALTHY, requests=40, error_ratio=1.0, captions=0, feedback=0))
    assert analysis.verdict is Verdict.HOLD and analysis.verdict.exit_code == 3
    assert analysis.reasons == ["too few requests to decide (stable 1000, canary 40; 100 needed)"]


def test_too_few_requests_on_stable_hold_too():
    assert verdict(HEALTHY, stable=replace(HEALTHY, requests=99)).verdict is Verdict.HOLD


def test_too_little_feedback_holds_a_canary_that_passes_everything_else():
    analysis = verdict(replace(HEALTHY, feedback=19, thumbs_up_rate=0.1))
    assert analysis.verdict is Verdict.HOLD
    assert analysis.reasons == ["thumbs-up rate: too few samples (stable 80, canary 19; 20 needed)"]


def test_too_little_feedback_does_not_stop_a_roll_back_on_errors():
    analysis = verdict(replace(HEALTHY, feedback=0, thumbs_up_rate=None, error_ratio=0.5))
    assert analysis.verdict is Verdict.ROLLBACK
    assert [s.status for s in analysis.signals if s.name == "thumbs-up rate"] == [
        Status.INSUFFICIENT
    ]


def test_a_canary_without_captions_cannot_be_promoted():
    analysis = verdict(replace(HEALTHY, captions=0, log_prob_median=None))
    assert analysis.verdict is Verdict.HOLD
    assert analysis.reasons[0].startswith("median log-probability: too few samples")


def test_feedback_is_not_needed_when_its_minimum_is_zero():
    bare = replace(HEALTHY, feedback=0, thumbs_up_rate=None)
    analysis = verdict(bare, stable=bare, min_feedback=0)
    assert analysis.verdict is Verdict.PROMOTE
    assert [s.status for s in analysis.signals][-1] is Status.SKIPPED


def test_the_json_object_carries_the_verdict_and_every_signal():
    body = verdict(replace(HEALTHY, error_ratio=0.05)).to_dict()
    assert body["verdict"] == "rollback" and body["exit_code"] == 4
    assert [s["name"] for s in body["signals"]] == [
        "requests",
        "5xx ratio",
        "429 ratio",
        "p99 latency",
        "median log-probability",
        "thumbs-up rate",
    ]
    assert body["signals"][1]["status"] == "fail" and body["metrics"]["canary"]["requests"] == 1000


def test_the_service_queries_join_model_info_on_the_target():
    q = Queries("v2", "10m", "/v1/captions")
    join = "on (job, instance) group_left (version) max by (job, instance, version) ("
    assert join + 'captioner_model_info{version="v2"})' in q.requests()
    assert q.ratio("5..").startswith(
        '(sum(rate(captioner_requests_total{route=~"/v1/captions", status=~"5.."}[10m]) * on'
    )
    assert q.thumbs_up_rate().startswith(
        '(sum(rate(captioner_feedback_total{model_version="v2", rating="up"}[10m])) or vector(0))'
    )
    assert quote('a"b\\c') == '"a\\"b\\\\c"'


def test_settings_refuse_a_window_prometheus_would_not_take():
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        RolloutSettings(window="ten minutes")


def test_every_rollout_setting_is_documented():
    doc = (REPO / "docs" / "deploy.md").read_text()
    missing = [
        n for n in RolloutSettings.model_fields if f"`CAPTIONER_ROLLOUT_{n.upper()}`" not in doc
    ]
    assert not missing


def run(*args: str):
    return CliRunner().invoke(main, ["rollout", "analyze", "--stable", "1", "--canary", "2", *args])


def test_an_unreachable_prometheus_is_a_clear_error_exit_1():
    url = f"http://127.0.0.1:{free_port()}"
    result = run("--prometheus", url)
    assert result.exit_code == 1, result.output
    assert f"Error: Prometheus at {url} is unreachable" in result.output


def test_a_prometheus_that_answers_with_an_error_is_exit_1():
    with ArchiveServer({}) as server:
        server.status = 503
        result = run("--prometheus", server.url)
    assert result.exit_code == 1, result.output
    assert f"Prometheus at {server.url} answered 503" in result.output


def test_usage_errors_are_exit_2_and_bad_settings_exit_1():
    same = CliRunner().invoke(main, ["rollout", "analyze", "--stable", "1", "--canary", "1"])
    assert same.exit_code == 2 and "another version than stable" in same.output
    assert run("--window", "soon").exit_code == 1
