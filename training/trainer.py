"""The training loop: epochs of teacher forcing, validation CIDEr, checkpoints, resume.

Run it twice with the same settings and the second run continues where the
first stopped (after Ctrl-C, a kill, or a finished budget); a run that has
finished is not trained again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from captioner.decoding import DecodeOptions
from captioner.text import Vocabulary
from training.checkpoints import (
    CheckpointError,
    TrainState,
    load_state,
    restore_checkpoint,
    save_checkpoint,
    write_json,
)
from training.datasets.base import CaptionDataset
from training.datasets.registry import load_dataset
from training.decode import caption_dataset
from training.distribute import choose_strategy, set_precision
from training.metrics import score_captions
from training.models.captioner import CaptionModel, ModelConfig, count_params
from training.pipeline import masked_cross_entropy, preprocess_images, teacher_forcing_data
from training.schedule import BudgetCosine, epochs_that_fit
from training.settings import TrainSettings
from training.tracking import Tracker

log = logging.getLogger(__name__)

MODEL_DIR = "model"


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    state: TrainState


def _inputs(
    settings: TrainSettings, config: ModelConfig, dataset: CaptionDataset, progress: bool
) -> tuple[np.ndarray, str]:
    """Preprocessed images for end-to-end training, cached features for a frozen encoder."""
    spec = config.preprocessing()
    if settings.encoder_trainable:
        return preprocess_images(dataset, spec, progress), "images"
    from training.encoders import build_encoder, weights_id
    from training.features import FeatureCache

    encoder = build_encoder(
        config.encoder, config.feature_output, config.input_size, settings.encoder_weights
    )
    cache = FeatureCache(
        settings.run_dir.parent / "features",
        config.encoder,
        weights_id(config.encoder, settings.encoder_weights, config.input_size),
        spec,
        config.feature_output,
    )
    return np.asarray(cache.extract(dataset, encoder, progress=progress)), "features"


def _check_resumable(run_dir: Path, settings: TrainSettings) -> None:
    saved = run_dir / "settings.json"
    if saved.is_file():
        before = json.loads(saved.read_text())
        now = settings.identity()
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise CheckpointError(
                f"{run_dir} holds a run with other settings ({', '.join(changed)}); "
                "choose another --run-dir or delete it to start over"
            )


def _planned_epochs(settings: TrainSettings, state: TrainState) -> int:
    """The epochs that fit the time budget at the pace so far, refitted after every epoch.

    The first epoch pays for tracing, so the pace is that of the epochs after it.
    """
    assert settings.max_train_seconds is not None
    first = state.history[0]["seconds"] if state.history else state.train_seconds
    later = state.epoch - 1
    pace = (state.train_seconds - first) / later if later else state.train_seconds
    fit = epochs_that_fit(state.epoch, state.train_seconds, pace, settings.max_train_seconds)
    return max(state.epoch, min(settings.epochs, fit))


def train(settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Train (or resume) the model the settings describe.

    The best model by validation CIDEr lands in ``run_dir/model`` with its vocabulary.
    """
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_resumable(run_dir, settings)
    write_json(run_dir / "settings.json", settings.identity())
    state = load_state(run_dir) or TrainState()
    model_dir = run_dir / MODEL_DIR
    if state.stopped:
        log.info("run in %s already finished (%s); nothing to train", run_dir, state.stopped)
        return TrainResult(run_dir, model_dir, state)

    keras.utils.set_random_seed(settings.seed)
    policy = set_precision(settings.mixed_precision)
    train_spec, val_spec = settings.specs()
    train_set = load_dataset(train_spec, settings.data_root)
    val_set = load_dataset(val_spec, settings.data_root)
    val_set.examples = val_set.examples[: settings.val_images]

    vocab_path = run_dir / "vocab.json"
    if vocab_path.is_file():
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.build(
            train_set.all_captions(), settings.min_count, settings.max_length_quantile
        )
        vocab.save(vocab_path)
    log.info(
        "vocabulary %d tokens, max length %d; %d train / %d val images",
        len(vocab),
        vocab.max_length,
        len(train_set),
        len(val_set),
    )

    config = ModelConfig(
        architecture=settings.architecture,
        vocab_size=len(vocab),
        encoder=settings.encoder,
        input_size=settings.input_size,
        train_encoder=settings.encoder_trainable,
        decoder=settings.decoder_config(),
    )
    inputs, key = _inputs(settings, config, train_set, progress)
    data = teacher_forcing_data(train_set, vocab, inputs, key)
    per_epoch = len(data.caption_image) if settings.all_captions else len(train_set)
    steps_per_epoch = int(np.ceil(per_epoch / settings.batch_size))

    strategy = choose_strategy()
    with strategy.scope():
        model = CaptionModel(config, encoder_weights=settings.encoder_weights)
        model.build_all()
        schedule = BudgetCosine(
            settings.learning_rate, steps_per_epoch, state.planned_epochs or settings.epochs
        )
        optimizer = keras.optimizers.Adam(schedule, clipnorm=5.0)
        model.compile(optimizer=optimizer, loss=masked_cross_entropy)
    restore_checkpoint(run_dir, model, optimizer, state)
    if state.epoch:
        log.info(
            "resuming after epoch %d (best val CIDEr %.3f at epoch %d)",
            state.epoch,
            state.best_score,
            state.best_epoch,
        )

    tracker = Tracker(
        settings.tracking_uri(), settings.mlflow_experiment, run_dir.name, state.mlflow_run_id
    )
    state.mlflow_run_id = tracker.run_id
    tracker.params(
        {
            **settings.identity(),
            "parameters": count_params(model),
            "vocab_size": len(vocab),
            "precision": policy,
        }
    )
    greedy = DecodeOptions(beam_size=1, max_length=vocab.max_length)
    status = "KILLED"
    try:
        while state.epoch < settings.epochs and not state.stopped:
            started = time.monotonic()
            epoch = state.epoch
            history = model.fit(
                data.epoch(epoch, settings.seed, settings.batch_size, settings.all_captions),
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,  # the pipeline shuffles, seeded per epoch
                verbose=1 if progress else 2,
            )
            hypotheses = caption_dataset(model, vocab, val_set, greedy, batch_size=128)
            cider = score_captions(
                val_set.references(), hypotheses, metrics=("CIDEr",), tokenize=False
            ).corpus["CIDEr"]
            state.epoch = epoch + 1
            state.train_seconds += time.monotonic() - started
            if settings.max_train_seconds:
                state.planned_epochs = _planned_epochs(settings, state)
                schedule.fit(state.planned_epochs)
            loss = float(history.history["loss"][-1])
            state.history.append(
                {
                    "epoch": state.epoch,
                    "loss": loss,
                    "val_cider": cider,
                    "seconds": state.train_seconds,
                }
            )
            if cider > state.best_score:
                state.best_score, state.best_epoch, state.wait = cider, state.epoch, 0
            else:
                state.wait += 1
            # "last" trains a fixed schedule: validation CIDEr on a few dozen photos
            # jumps by more than the differences between epochs, so picking the best
            # epoch by it selects noise.
            if settings.selection == "last" or state.wait == 0:
                model.save_dir(model_dir)
                vocab.save(model_dir / "vocab.json")
            if settings.selection == "best" and state.wait >= settings.patience:
                state.stopped = f"early stop: no better val CIDEr for {state.wait} epochs"
            elif state.epoch >= settings.epochs:
                state.stopped = f"finished {settings.epochs} epochs"
            elif state.planned_epochs and state.epoch >= state.planned_epochs:
                state.stopped = (
                    f"finished the {state.planned_epochs} epochs that fit the time budget of "
                    f"{settings.max_train_seconds:.0f} s"
                )
            elif settings.max_train_seconds and state.train_seconds >= settings.max_train_seconds:
                state.stopped = f"time budget of {settings.max_train_seconds:.0f} s reached"
            save_checkpoint(run_dir, model, optimizer, state)
            tracker.metrics(
                {"loss": loss, "val_CIDEr": cider, "train_seconds": state.train_seconds},
                step=state.epoch,
            )
            log.info(
                "epoch %d: loss %.4f, val CIDEr %.3f (best %.3f at %d), %.0f s so far",
                state.epoch,
                loss,
                cider,
                state.best_score,
                state.best_epoch,
                state.train_seconds,
            )
        status = "FINISHED"
    finally:
        tracker.close(status)
    if not (model_dir / "model.weights.h5").is_file():
        raise CheckpointError(f"training in {run_dir} produced no model")
    return TrainResult(run_dir, model_dir, state)
