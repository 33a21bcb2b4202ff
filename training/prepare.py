"""Preparing a training run: its directory, data, vocabulary, model and optimizer.

:func:`open_run` is cheap (it reads the run directory and refuses a resume with other
settings); :func:`prepare_run` does the work: datasets, the vocabulary (built once,
then read back on every resume), the encoder inputs, and the compiled model with its
last checkpoint restored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np

from captioner.decoding import DecodeOptions
from captioner.text import Vocabulary
from training.checkpoints import CheckpointError, TrainState, load_state, restore_checkpoint
from training.datasets.base import CaptionDataset, DatasetError
from training.datasets.registry import load_dataset
from training.distribute import choose_strategy, set_precision
from training.finetune import load_parent, start_from_parent
from training.models.captioner import CaptionModel, ModelConfig
from training.pipeline import (
    TeacherForcingData,
    masked_cross_entropy,
    preprocess_images,
    teacher_forcing_data,
)
from training.run_dir import RunDir
from training.schedule import BudgetCosine
from training.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass
class PreparedRun:
    """Everything an epoch needs, built once per process.

    Attributes:
        run_dir: where the run keeps its files.
        train_set, val_set: the training split and the validation images scored per epoch.
        vocab: the run's vocabulary.
        data: teacher-forcing batches of the training split.
        model, optimizer, schedule: the compiled model, its optimizer and learning rate.
        precision: the Keras dtype policy the model computes in.
        greedy: how validation captions are decoded.
    """

    run_dir: RunDir
    train_set: CaptionDataset
    val_set: CaptionDataset
    vocab: Vocabulary
    data: TeacherForcingData
    model: CaptionModel
    optimizer: keras.optimizers.Optimizer
    schedule: BudgetCosine
    precision: str
    greedy: DecodeOptions


def open_run(settings: TrainSettings) -> tuple[RunDir, TrainState]:
    """The run directory, its settings recorded, and the state it was left in.

    Raises:
        CheckpointError: the directory holds a run with other settings.
    """
    run_dir = RunDir(settings.run_dir)
    changed = run_dir.changed_settings(settings.identity())
    if changed:
        raise CheckpointError(
            f"{run_dir.path} holds a run with other settings ({', '.join(changed)}); "
            "choose another --run-dir or delete it to start over"
        )
    run_dir.write_settings(settings.identity())
    return run_dir, load_state(run_dir) or TrainState()


def prepare_run(
    settings: TrainSettings, run_dir: RunDir, state: TrainState, progress: bool = True
) -> PreparedRun:
    """Data, vocabulary and the compiled model, restored from the checkpoint STATE names."""
    keras.utils.set_random_seed(settings.seed)
    precision = set_precision(settings.mixed_precision)
    _, val_spec = settings.specs()
    train_set, weights = training_set(settings)
    val_set = load_dataset(val_spec, settings.data_root)
    val_set.examples = val_set.examples[: settings.val_images]
    parent = load_parent(settings) if settings.init_from is not None else None
    vocab = _vocabulary(settings, run_dir, train_set, parent.vocab if parent else None)
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
    inputs, key = _inputs(settings, run_dir, config, train_set, progress)
    data = teacher_forcing_data(train_set, vocab, inputs, key, weights)
    per_epoch = data.per_epoch(settings.all_captions)
    steps_per_epoch = int(np.ceil(per_epoch / settings.batch_size))

    with choose_strategy().scope():
        model = CaptionModel(config, encoder_weights=settings.encoder_weights)
        model.build_all()
        schedule = BudgetCosine(
            settings.learning_rate, steps_per_epoch, state.planned_epochs or settings.epochs
        )
        optimizer = keras.optimizers.Adam(schedule, clipnorm=5.0)
        model.compile(optimizer=optimizer, loss=masked_cross_entropy)
    if parent is not None and not state.epoch:
        start_from_parent(model, parent, settings.init_member)
    restore_checkpoint(run_dir, model, optimizer, state)
    if state.epoch:
        log.info(
            "resuming after epoch %d (best val CIDEr %.3f at epoch %d)",
            state.epoch,
            state.best_score,
            state.best_epoch,
        )
    greedy = DecodeOptions(beam_size=1, max_length=vocab.max_length)
    return PreparedRun(
        run_dir, train_set, val_set, vocab, data, model, optimizer, schedule, precision, greedy
    )


def training_set(settings: TrainSettings) -> tuple[CaptionDataset, np.ndarray | None]:
    """The training split, with the extra dataset appended, and each image's weight.

    Without an extra dataset the weights are ``None`` (every image once per epoch).

    Raises:
        DatasetError: a split cannot be loaded, or the two share image ids.
    """
    train_spec, _ = settings.specs()
    train_set = load_dataset(train_spec, settings.data_root)
    extra_spec = settings.extra_spec()
    if extra_spec is None:
        return train_set, None
    extra = load_dataset(extra_spec, settings.extra_data_root or settings.data_root)
    shared = {ex.image_id for ex in train_set.examples} & {ex.image_id for ex in extra.examples}
    if shared:
        raise DatasetError(
            f"{train_spec} and {extra_spec} share {len(shared)} image id(s), "
            f"e.g. {sorted(shared)[0]}: an image must be in one of them"
        )
    log.info(
        "training on %d images of %s and %d of %s (weight %g)",
        len(train_set),
        train_spec,
        len(extra),
        extra_spec,
        settings.extra_weight,
    )
    mixed = CaptionDataset(
        f"{train_set.name}+{extra.name}",
        train_spec.split,
        train_set.examples + extra.examples,
        render=train_set.render,
    )
    weights = np.concatenate(
        [np.ones(len(train_set)), np.full(len(extra), settings.extra_weight)]
    ).astype(np.float64)
    return mixed, weights


def _vocabulary(
    settings: TrainSettings,
    run_dir: RunDir,
    train_set: CaptionDataset,
    inherited: Vocabulary | None = None,
) -> Vocabulary:
    """Built from the training captions at the first start (or the parent's, when
    fine-tuning: training/finetune.py says why), read back on every resume."""
    vocab = run_dir.load_vocabulary()
    if vocab is None:
        vocab = inherited or Vocabulary.build(
            train_set.all_captions(), settings.min_count, settings.max_length_quantile
        )
        run_dir.save_vocabulary(vocab)
    return vocab


def _inputs(
    settings: TrainSettings,
    run_dir: RunDir,
    config: ModelConfig,
    dataset: CaptionDataset,
    progress: bool,
) -> tuple[np.ndarray, str]:
    """Preprocessed images for end-to-end training, cached features for a frozen encoder."""
    spec = config.preprocessing()
    if settings.encoder_trainable:
        return preprocess_images(dataset, spec, progress), "images"
    from training.encoder_weights import weights_id
    from training.encoders import build_encoder
    from training.features import FeatureCache

    encoder = build_encoder(
        config.encoder, config.feature_output, config.input_size, settings.encoder_weights
    )
    cache = FeatureCache(
        run_dir.features_root,
        config.encoder,
        weights_id(config.encoder, settings.encoder_weights, config.input_size),
        spec,
        config.feature_output,
    )
    return np.asarray(cache.extract(dataset, encoder, progress=progress)), "features"
