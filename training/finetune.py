"""Fine-tuning from an existing model: ``captioner train --init-from PARENT``.

The parent is a run directory, a model directory, or a package (whose manifest names
the model directory it was exported from: a package carries ONNX graphs, not the
Keras weights training continues from).

The child keeps the parent's **vocabulary** as it is. Words that only new data uses
become ``<unk>``: a word seen in a handful of corrections has no trained embedding
worth starting from, and a fixed vocabulary keeps the two models' graphs alike, so the
challenger serves wherever the champion does and the two are compared on equal terms.
A word that matters shows up again in the next full training, whose vocabulary is
rebuilt from all the data.

What the run inherits unless set explicitly: the parent's datasets (training and
validation: new data comes in through ``extra_dataset``), its model settings (architecture,
encoder and its weights, decoder sizes, vocabulary rules, caption sampling, ensemble
size, re-ranking), a learning rate ``fine_tune_lr_scale`` times the parent's, and its
own stop policy (:data:`FINE_TUNE`): early stopping on validation CIDEr, starting from
the parent's own score, so a fine-tuning that never beats the parent keeps the parent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from captioner.package import MANIFEST, read_manifest
from training.checkpoints import CheckpointError
from training.models.captioner import CaptionModel
from training.run_dir import RunDir, TrainedModel
from training.settings import TrainSettings

log = logging.getLogger(__name__)

# The parent's settings a fine-tuning keeps unless it sets them: what makes it the same model.
INHERITED = (
    "dataset",
    "val_dataset",
    "architecture",
    "encoder",
    "encoder_weights",
    "input_size",
    "train_encoder",
    "embed_dim",
    "units",
    "dropout",
    "image_dim",
    "alpha_regularization",
    "min_count",
    "max_length_quantile",
    "all_captions",
    "members",
    "rerank",
    "mixed_precision",
)
# A fine-tuning's own stop policy: a few epochs, kept only while validation improves.
FINE_TUNE: dict[str, Any] = {"selection": "best", "patience": 3, "epochs": 10}


def parent_model_dir(path: Path) -> tuple[Path, str | None]:
    """The model directory PATH names, and the parent's model version when it is a package.

    Raises:
        CheckpointError: PATH is none of a run, a model directory or a package, or the
            package's source model is not on this machine.
    """
    path = Path(path)
    if (path / RunDir.WEIGHTS_FILE).is_file():
        return path, None
    run = RunDir(path)
    if (run.model_dir / RunDir.WEIGHTS_FILE).is_file():
        exported = run.package_dir / MANIFEST
        version = read_manifest(run.package_dir).model.version if exported.is_file() else None
        return run.model_dir, version
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        source = manifest.lineage.model_dir
        if source and (Path(source) / RunDir.WEIGHTS_FILE).is_file():
            return Path(source), manifest.model.version
        raise CheckpointError(
            f"{path} is a package of {manifest.model.version}; it carries no Keras weights, "
            f"and the model it was exported from ({source or 'not recorded'}) is not here: "
            "pass that run directory to --init-from"
        )
    raise CheckpointError(
        f"--init-from {path}: not a run directory, a model directory or a model package"
    )


def parent_settings(model_dir: Path) -> dict[str, Any]:
    """The settings the parent's run recorded (empty when the model has no run around it).

    An ensemble's run records them per member: the first member's say how all were made.
    """
    run = RunDir.of_model(model_dir)
    saved = run.saved_settings() or run.member(0).saved_settings()
    return dict(saved or {})


def parent_members(model_dir: Path) -> int:
    """How many decoders the parent has (its saved model config says)."""
    saved = json.loads((model_dir / RunDir.MODEL_CONFIG_FILE).read_text())
    return int(saved.get("config", saved).get("members", 1))


def fine_tune_settings(settings: TrainSettings) -> TrainSettings:
    """SETTINGS with what a fine-tuning inherits filled in (see the module docstring).

    Settings given explicitly win; a model setting given explicitly that differs from the
    parent's is refused when it changes the model's shape.

    Raises:
        CheckpointError: the parent cannot be found, or an explicit setting makes a model
            the parent's weights do not fit.
    """
    if settings.init_from is None:
        return settings
    model_dir, _ = parent_model_dir(settings.init_from)
    parent = parent_settings(model_dir)
    given = settings.model_fields_set
    update: dict[str, Any] = {
        k: parent[k] for k in INHERITED if k in parent and k not in given and k != "members"
    }
    if "members" not in given:
        update["members"] = parent_members(model_dir)
    update.update({k: v for k, v in FINE_TUNE.items() if k not in given})
    if "learning_rate" not in given:
        base = float(parent.get("learning_rate", settings.learning_rate))
        update["learning_rate"] = base * settings.fine_tune_lr_scale
    tuned = settings.model_copy(update=update)
    clashes = [
        f"{k} {getattr(tuned, k)!r} (parent: {parent[k]!r})"
        for k in ("architecture", "encoder", "units", "embed_dim", "image_dim", "input_size")
        if k in parent and k in given and getattr(tuned, k) != parent[k]
    ]
    if clashes:
        raise CheckpointError(
            f"--init-from {settings.init_from}: the parent's weights do not fit "
            + ", ".join(clashes)
        )
    log.info(
        "fine-tuning from %s: learning rate %.2g, up to %d epochs, patience %d",
        model_dir,
        tuned.learning_rate,
        tuned.epochs,
        tuned.patience,
    )
    return tuned


def load_parent(settings: TrainSettings) -> TrainedModel:
    """The parent model and vocabulary of a fine-tuning run."""
    assert settings.init_from is not None
    model_dir, _ = parent_model_dir(settings.init_from)
    return TrainedModel.load(model_dir)


def start_from_parent(model: CaptionModel, parent: TrainedModel, member: int = 0) -> None:
    """Copy the parent's weights into MODEL: the encoder, and decoder MEMBER of an ensemble.

    Raises:
        CheckpointError: the two models differ in shape.
    """
    source = parent.model
    decoders = getattr(source.decoder, "members", None)
    if decoders is not None:
        if member >= len(decoders):
            raise CheckpointError(
                f"the parent has {len(decoders)} decoders; member {member} has none to start from"
            )
        decoder = decoders[member]
    else:
        decoder = source.decoder
    try:
        model.encoder.set_weights(source.encoder.get_weights())
        model.decoder.set_weights(decoder.get_weights())
    except ValueError as exc:
        raise CheckpointError(f"the parent's weights do not fit this model: {exc}") from exc


def write_lineage(settings: TrainSettings, run_dir: RunDir) -> None:
    """Record in the run what it was trained from, for export's manifest and the registry."""
    if settings.init_from is None and settings.extra_dataset is None:
        return
    parent_version = None
    if settings.init_from is not None:
        _, parent_version = parent_model_dir(settings.init_from)
    lineage = {
        "init_from": str(settings.init_from) if settings.init_from else None,
        "parent": parent_version,
        "extra_dataset": settings.extra_dataset,
        "extra_weight": settings.extra_weight if settings.extra_dataset else None,
    }
    run_dir.path.mkdir(parents=True, exist_ok=True)
    run_dir.lineage_path.write_text(json.dumps(lineage, indent=1) + "\n")
