"""MLflow tracking: a resume continues its MLflow run; a damaged run is linked, not fatal."""

import pytest

from training.tracking import RESUMED_FROM, Tracker


def test_resume_continues_the_same_run(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    first = Tracker(uri, "exp", "run")
    first.metrics({"loss": 1.0}, step=1)
    first.close("KILLED")
    second = Tracker(uri, "exp", "run", run_id=first.run_id)
    second.metrics({"loss": 0.5}, step=2)
    second.close()
    history = second._mlflow.MlflowClient(uri).get_metric_history(first.run_id, "loss")
    assert second.run_id == first.run_id and [m.value for m in history] == [1.0, 0.5]


def test_a_run_damaged_by_a_kill_is_linked_not_fatal(tmp_path, caplog):
    uri = (tmp_path / "mlruns").as_uri()
    first = Tracker(uri, "exp", "run")
    first.metrics({"loss": 1.0}, step=1)
    first.close("KILLED")
    # A kill during a metric write leaves an empty metric file behind.
    (metric,) = (tmp_path / "mlruns").glob(f"*/{first.run_id}/metrics/loss")
    metric.write_text("")
    second = Tracker(uri, "exp", "run", run_id=first.run_id)
    second.close()
    assert second.run_id != first.run_id
    run = second._mlflow.MlflowClient(uri).get_run(second.run_id)
    assert run.data.tags[RESUMED_FROM] == first.run_id
    assert "cannot be resumed" in caplog.text


def test_a_new_run_that_fails_is_not_hidden(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception):  # noqa: B017 - MLflow's own exception types vary
        Tracker((tmp_path / "file" / "mlruns").as_uri(), "exp", "run")


def test_an_epoch_is_logged_under_its_metric_names(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    tracker = Tracker(uri, "exp", "run")
    tracker.log_epoch({"epoch": 2, "loss": 0.5, "val_cider": 0.7, "seconds": 12.0})
    tracker.close()
    client = tracker._mlflow.MlflowClient(uri)
    for name, value in {"loss": 0.5, "val_CIDEr": 0.7, "train_seconds": 12.0}.items():
        (metric,) = client.get_metric_history(tracker.run_id, name)
        assert (metric.step, metric.value) == (2, value)
