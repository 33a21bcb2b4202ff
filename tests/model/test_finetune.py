"""Fine-tuning from an existing model with feedback mixed in (training/finetune.py)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from training.checkpoints import CheckpointError
from training.settings import TrainSettings


@pytest.fixture(scope="module")
def feedback_root(tmp_path_factory):
    """An exported feedback dataset: shapes validation scenes as users' photos, their
    captions as corrections, written by the feedback component's own export."""
    from feedback.export import ExportRules, write_dataset
    from feedback.record import make_feedback
    from training.datasets.registry import load_dataset

    val = load_dataset("shapes[val]-40s3")
    made = []
    for n, example in enumerate(val.examples):
        out = io.BytesIO()
        Image.fromarray(val.image(example)).save(out, format="PNG")
        data = out.getvalue()
        made.append(
            make_feedback(
                request_id=f"request-{n:04d}",
                model_name="shapes-merge",
                model_version="v1",
                caption="a shown caption",
                rating="down",
                correction=example.captions[0],
                image_sha256=hashlib.sha256(data).hexdigest(),
                ui_version="test",
                image=data,
            )
        )

    class Listed:
        def scan(self, since=None, *, images=False):
            return iter(made)

    root = tmp_path_factory.mktemp("feedback_export")
    summary = write_dataset(Listed(), None, root, ExportRules(holdout=0.0))
    assert summary["images"] == 40
    return root


@pytest.fixture(scope="module")
def parent_package(trained_merge, tmp_path_factory):
    from export.package import build_package

    return build_package(
        trained_merge.model_dir, tmp_path_factory.mktemp("parent") / "package", version="p1"
    )


def test_a_fine_tuning_starts_from_the_parent_and_mixes_feedback_in(
    trained_merge, parent_package, feedback_root, tmp_path
):
    from captioner.package import open_package
    from training.ensemble import train_model
    from training.run_dir import RunDir

    parent_run = RunDir(trained_merge.run_dir)
    settings = TrainSettings(
        dataset="shapes[train]-300s2",
        extra_dataset="feedback[train]",
        extra_data_root=feedback_root,
        extra_weight=2.0,
        init_from=parent_package,  # a package: training goes back to its source model
        run_dir=tmp_path / "child",
        epochs=2,
        val_images=40,
        mlflow_tracking_uri=(tmp_path / "mlruns").as_uri(),
    )
    result = train_model(settings, progress=False)
    child = RunDir(result.run_dir)
    saved = child.saved_settings()
    parent_saved = parent_run.saved_settings()
    # The parent's model settings, half its learning rate, its own early stopping.
    assert saved["architecture"] == "merge" == parent_saved["architecture"]
    assert saved["learning_rate"] == pytest.approx(parent_saved["learning_rate"] * 0.5)
    assert saved["selection"] == "best"
    # The parent's vocabulary, unchanged.
    assert json.loads(child.vocab_path.read_text()) == json.loads(
        (trained_merge.model_dir / RunDir.VOCAB_FILE).read_text()
    )
    # Validation started from the parent's own score: an epoch is kept only if better.
    state = json.loads(child.state_path.read_text())
    assert state["best_score"] >= 0.0 and state["best_epoch"] in (0, 1, 2)
    assert len(state["history"]) == 2
    lineage = json.loads(child.lineage_path.read_text())
    assert lineage == {
        "init_from": str(parent_package),
        "parent": "p1",
        "extra_dataset": "feedback[train]",
        "extra_weight": 2.0,
    }
    # Exported and registered in one step, its parent found in the registry by lineage.
    from click.testing import CliRunner

    from cli.main import main

    registry = {"CAPTIONER_REGISTRY_URI": str(tmp_path / "mlruns-registry")}
    runner = CliRunner(env=registry)
    parent = runner.invoke(
        main, ["registry", "register", str(parent_package), "--alias", "champion"]
    )
    assert parent.exit_code == 0, parent.output
    exported = runner.invoke(
        main,
        [
            "export", "--checkpoint", str(result.model_dir), "--out", str(tmp_path / "package"),
            "--register", "--alias", "challenger",
        ],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    registered = json.loads(exported.output[exported.output.index("{") :])
    champion = json.loads(parent.output)
    assert registered["parent"] == champion["version"], registered
    assert registered["aliases"] == ["challenger"]
    package = open_package(tmp_path / "package")
    assert package.manifest.lineage.parent == "p1"
    assert package.manifest.lineage.extra_dataset == "feedback[train]"
    assert package.manifest.lineage.model_dir == str(result.model_dir.resolve())


def test_the_parent_weights_are_copied_into_the_new_model(trained_merge):
    from training.finetune import start_from_parent
    from training.models.captioner import CaptionModel
    from training.run_dir import TrainedModel

    parent = TrainedModel.load(trained_merge.model_dir)
    fresh = CaptionModel(parent.model.config)
    fresh.build_all()
    before = [w.copy() for w in fresh.decoder.get_weights()]
    start_from_parent(fresh, parent)
    after = fresh.decoder.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    for mine, theirs in zip(after, parent.model.decoder.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_fine_tuning_that_does_not_fit_the_parent_is_refused(trained_merge, tmp_path):
    from captioner.package import MANIFEST
    from training.finetune import fine_tune_settings, parent_model_dir

    inherited = fine_tune_settings(TrainSettings(init_from=trained_merge.run_dir))
    assert (inherited.dataset, inherited.architecture) == ("shapes[train]-3000s1", "merge")
    assert (inherited.selection, inherited.patience, inherited.epochs) == ("best", 3, 10)
    clash = TrainSettings(init_from=trained_merge.run_dir, architecture="attention")
    with pytest.raises(CheckpointError, match="architecture 'attention'"):
        fine_tune_settings(clash)
    with pytest.raises(CheckpointError, match="not a run directory"):
        parent_model_dir(tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    manifest = {"format_version": 1, "model": {"name": "m", "version": "v9"}}
    (moved / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="lacks"):
        parent_model_dir(moved)


def test_a_package_whose_source_model_is_elsewhere_names_what_to_pass(parent_package, tmp_path):
    import shutil

    from captioner.package import MANIFEST
    from training.finetune import parent_model_dir

    copy = tmp_path / "copy"
    shutil.copytree(parent_package, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["lineage"]["model_dir"] = "/elsewhere/run/model"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="carries no Keras weights.*/elsewhere/run/model"):
        parent_model_dir(copy)


def test_an_extra_dataset_may_not_repeat_the_training_images():
    from training.datasets.base import DatasetError
    from training.prepare import training_set

    same = TrainSettings(dataset="shapes[train]-20s1", extra_dataset="shapes[train]-20s1")
    with pytest.raises(DatasetError, match="share 20 image id"):
        training_set(same)
    mixed, weights = training_set(
        TrainSettings(dataset="shapes[train]-20s1", extra_dataset="shapes[val]-5s1", extra_weight=3)
    )
    assert len(mixed) == 25 and list(weights) == [1.0] * 20 + [3.0] * 5
    assert mixed.image(mixed.examples[-1]).shape[-1] == 3  # each image from its own dataset


def test_compare_keeps_a_challenger_that_is_no_better(parent_package, tmp_path):
    """The same model under another version: the paired difference is exactly zero on every
    image, so the gate keeps the champion, exits 3 and says why."""
    import shutil

    from click.testing import CliRunner

    from captioner.package import read_manifest
    from cli.main import main

    twin = tmp_path / "twin"
    shutil.copytree(parent_package, twin)
    manifest = read_manifest(twin)
    manifest.model.version = "p1-again"
    manifest.write(twin)
    out = tmp_path / "compare"
    args = [
        "compare", "--champion", str(parent_package), "--challenger", str(twin),
        "--dataset", "shapes[test]-40s1", "--out", str(out), "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    verdict = json.loads(result.output[result.output.index("{") :])
    assert verdict["decision"] == "keep" and verdict["challenger"] == "p1-again"
    (split,) = verdict["splits"]
    assert split["images"] == 40 and split["champion"] == split["challenger"] > 0
    assert split["difference"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert "does not lie above +0.000" in verdict["reasons"][0]
    assert json.loads((out / "comparison.json").read_text())["decision"] == "keep"
    captions = json.loads((out / "captions.json").read_text())["shapes[test]-40s1"]
    assert captions["champion"] == captions["challenger"] and len(captions["champion"]) == 40

    result = CliRunner().invoke(main, [*args[:4], str(tmp_path / "nowhere"), *args[5:]])
    assert result.exit_code == 1 and "no model package at" in result.output


def test_an_ensemble_parent_is_described_by_its_members_settings(tmp_path):
    """An ensemble's run records its settings per member; a fine-tuning reads the first."""
    from training.finetune import parent_settings
    from training.run_dir import RunDir

    run = RunDir(tmp_path / "ensemble")
    run.member(0).write_settings({"architecture": "merge", "encoder": "mobilenet_v2"})
    assert parent_settings(run.model_dir)["encoder"] == "mobilenet_v2"
    run.write_settings({"architecture": "attention", "encoder": "small_cnn"})
    assert parent_settings(run.model_dir)["encoder"] == "small_cnn"  # its own, when it has them
    assert parent_settings(tmp_path / "loose" / "model") == {}


def test_the_parents_decoders_are_counted_from_its_saved_model(trained_merge, tmp_path):
    from training.finetune import parent_members
    from training.run_dir import RunDir

    assert parent_members(trained_merge.model_dir) == 1
    saved = json.loads((trained_merge.model_dir / RunDir.MODEL_CONFIG_FILE).read_text())
    saved["config"]["members"] = 3
    (tmp_path / RunDir.MODEL_CONFIG_FILE).write_text(json.dumps(saved))
    assert parent_members(tmp_path) == 3
