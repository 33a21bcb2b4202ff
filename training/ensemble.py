"""Train several decoders on their own seeds and join them into one ensemble model.

Each member is an ordinary run under ``RUN/members/mI`` (so each resumes on its
own), all reading the same cached encoder features; the ensemble is then saved in
``RUN/model`` like any model, one decoder that averages the members' probabilities.
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.checkpoints import CheckpointError
from training.finetune import fine_tune_settings, write_lineage
from training.models.captioner import CaptionModel
from training.run_dir import RunDir, TrainedModel
from training.settings import TrainSettings
from training.trainer import TrainResult, train

log = logging.getLogger(__name__)


def member_settings(settings: TrainSettings, index: int) -> TrainSettings:
    """The settings of member INDEX: its own seed and run directory, one decoder."""
    return settings.model_copy(
        update={
            "members": 1,
            "seed": settings.seed + index,
            "run_dir": RunDir(settings.run_dir).member(index).path,
            **({"init_member": index} if settings.init_from else {}),
        }
    )


def train_model(settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Train, then choose the decoding on validation (:func:`training.tune.choose_decoding`).

    One decoder is one :func:`train` run; for ``members > 1`` every member is, and then
    they are joined into the ensemble. A time budget is shared among the members. With
    ``init_from`` the run fine-tunes (:func:`training.finetune.fine_tune_settings`),
    member I from the parent's decoder I.
    """
    settings = fine_tune_settings(settings)
    if settings.members == 1:
        result = train(settings, progress=progress)
    else:
        budget = settings.max_train_seconds
        results = [
            train(
                member_settings(settings, i).model_copy(
                    update={"max_train_seconds": budget / settings.members if budget else None}
                ),
                progress=progress,
            )
            for i in range(settings.members)
        ]
        model_dir = RunDir(settings.run_dir).model_dir
        assemble([r.model_dir for r in results], model_dir)
        write_lineage(settings, RunDir(settings.run_dir))
        result = TrainResult(settings.run_dir, model_dir, results[-1].state)
    tune(settings, result.model_dir)
    return result


def tune(settings: TrainSettings, model_dir: Path) -> None:
    """Choose beam size, length penalty (and re-ranking, if allowed) on the val split."""
    from training.datasets.registry import load_dataset
    from training.prepare import training_set
    from training.tune import choose_decoding

    chosen, weights = model_dir / RunDir.DECODING_FILE, model_dir / RunDir.WEIGHTS_FILE
    if chosen.is_file() and chosen.stat().st_mtime >= weights.stat().st_mtime:
        return  # chosen for these very weights already (a finished run run again)
    _, val_spec = settings.specs()
    val_set = load_dataset(val_spec, settings.data_root)
    val_set.examples = val_set.examples[: settings.val_images]
    train_set = training_set(settings)[0] if settings.rerank else None
    choose_decoding(model_dir, train_set, val_set)


def assemble(member_dirs: list[Path], out_dir: Path) -> Path:
    """One ensemble model from saved single models of one configuration and vocabulary.

    Raises:
        CheckpointError: the members differ in configuration or vocabulary.
    """
    members = [TrainedModel.load(d) for d in member_dirs]
    models, vocabs = [m.model for m in members], [m.vocab for m in members]
    first = models[0].config
    for directory, model, vocab in zip(member_dirs, models, vocabs, strict=True):
        if model.config != first or vocab != vocabs[0]:
            raise CheckpointError(
                f"{directory} differs from {member_dirs[0]} in configuration or vocabulary; "
                "an ensemble needs members of one kind"
            )
    config = type(first)(**{**first.__dict__, "members": len(models)})
    ensemble = CaptionModel(config)
    ensemble.build_all()
    ensemble.encoder.set_weights(models[0].encoder.get_weights())
    for member, model in zip(ensemble.decoder.members, models, strict=True):
        member.set_weights(model.decoder.get_weights())
    TrainedModel(ensemble, vocabs[0]).save(out_dir)
    log.info("ensemble of %d decoders saved in %s", len(models), out_dir)
    return out_dir
