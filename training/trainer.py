"""The training loop: epochs of teacher forcing, validation CIDEr, checkpoints, resume.

Run it twice with the same settings and the second run continues where the
first stopped (after Ctrl-C, a kill, or a finished budget); a run that has
finished is not trained again. :func:`train` composes the pieces: the run is
prepared (:mod:`training.prepare`), trained one epoch at a time (:func:`run_epoch`)
until its stop policy says so (:mod:`training.stopping`), and tracked in MLflow
(:mod:`training.tracking`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from training.checkpoints import CheckpointError, TrainState, save_checkpoint
from training.finetune import write_lineage
from training.models.captioner import count_params
from training.prepare import PreparedRun, open_run, prepare_run
from training.reference_decoder import caption_dataset
from training.scoring import score_captions
from training.settings import TrainSettings
from training.stopping import StopPolicy
from training.tracking import start_tracking

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    state: TrainState


def run_epoch(
    run: PreparedRun, state: TrainState, settings: TrainSettings, progress: bool = True
) -> dict[str, float]:
    """Train one epoch and score greedy captions of the validation images.

    Advances ``state`` (epochs, seconds, history) and returns the epoch's history entry:
    ``epoch``, ``loss``, ``val_cider`` (fast CIDEr) and ``seconds`` (training time so far).
    """
    started = time.monotonic()
    epoch = state.epoch
    history = run.model.fit(
        run.data.epoch(epoch, settings.seed, settings.batch_size, settings.all_captions),
        epochs=epoch + 1,
        initial_epoch=epoch,
        shuffle=False,  # the pipeline shuffles, seeded per epoch
        verbose=1 if progress else 2,
    )
    cider = validation_cider(run)
    state.epoch = epoch + 1
    state.train_seconds += time.monotonic() - started
    entry = {
        "epoch": state.epoch,
        "loss": float(history.history["loss"][-1]),
        "val_cider": cider,
        "seconds": state.train_seconds,
    }
    state.history.append(entry)
    return entry


def validation_cider(run: PreparedRun) -> float:
    """Fast CIDEr of the model's greedy captions of the validation images."""
    hypotheses = caption_dataset(run.model, run.vocab, run.val_set, run.greedy, batch_size=128)
    return score_captions(
        run.val_set.references(), hypotheses, metrics=("CIDEr",), tokenize=False
    ).corpus["CIDEr"]


def score_parent(run: PreparedRun, state: TrainState, settings: TrainSettings) -> None:
    """A fine-tuning starts from the parent's own validation score and keeps the parent
    as its model until an epoch beats it (training/finetune.py)."""
    state.best_score = validation_cider(run)
    state.best_epoch = 0
    run.run_dir.save_model(run.model, run.vocab)
    log.info("parent %s: val CIDEr %.3f to beat", settings.init_from, state.best_score)


def train(settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Train (or resume) the model the settings describe.

    The model the stop policy keeps lands in ``run_dir/model`` with its vocabulary.

    Raises:
        CheckpointError: the run directory holds another run, or training kept no model.
    """
    run_dir, state = open_run(settings)
    if state.stopped:
        log.info("run in %s already finished (%s); nothing to train", run_dir.path, state.stopped)
        return TrainResult(run_dir.path, run_dir.model_dir, state)
    run = prepare_run(settings, run_dir, state, progress)
    write_lineage(settings, run_dir)
    if settings.init_from is not None and not state.history:
        score_parent(run, state, settings)
    stop = StopPolicy.from_settings(settings)
    tracker = start_tracking(
        settings,
        state,
        run_dir.path.name,
        {
            "parameters": count_params(run.model),
            "vocab_size": len(run.vocab),
            "precision": run.precision,
        },
    )
    status = "KILLED"
    try:
        while stop.running(state):
            entry = run_epoch(run, state, settings, progress)
            planned = stop.plan(state)
            if planned is not None:
                state.planned_epochs = planned
                run.schedule.fit(planned)
            if stop.record(state, entry["val_cider"]):
                run_dir.save_model(run.model, run.vocab)
            state.stopped = stop.reason(state)
            save_checkpoint(run_dir, run.model, run.optimizer, state)
            tracker.log_epoch(entry)
            log.info(
                "epoch %d: loss %.4f, val CIDEr %.3f (best %.3f at %d), %.0f s so far",
                state.epoch,
                entry["loss"],
                entry["val_cider"],
                state.best_score,
                state.best_epoch,
                state.train_seconds,
            )
        status = "FINISHED"
    finally:
        tracker.close(status)
    if not run_dir.has_model():
        raise CheckpointError(f"training in {run_dir.path} produced no model")
    return TrainResult(run_dir.path, run_dir.model_dir, state)
