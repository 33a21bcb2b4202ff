"""A training run's directory: the one place that names its files, and the model saved with
its vocabulary.

Layout of ``RUN`` (every name is a constant of :class:`RunDir`)::

    settings.json           the settings that identify the run; a resume with others is refused
    lineage.json            a fine-tuned run's parent (training/finetune.py)
    state.json              where the run is and why it stopped (training/checkpoints.py)
    vocab.json              the vocabulary, built once from the training captions
    checkpoints/epoch-NNNN/ model.json, model.weights.h5, optimizer.npz
    model/                  the model to export: model.json, model.weights.h5, vocab.json,
                            decoding.json and the consensus files (training/tune.py)
    members/mI/             one run per decoder of an ensemble (training/ensemble.py)
    eval/                   scores.json, per_image.json, captions.json, report.md
    package/                the model package the demo exports
    ../features/            the frozen-encoder feature cache, shared by the runs beside RUN
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioner import consensus
from captioner.text import Vocabulary
from training.atomic import write_json
from training.models import captioner as model_files
from training.models.captioner import CaptionModel, ModelFileError


@dataclass(frozen=True)
class TrainedModel:
    """A caption model and its vocabulary: saved together, loaded together."""

    model: CaptionModel
    vocab: Vocabulary

    def save(self, directory: str | Path) -> Path:
        """Write the model's config and weights, then its vocabulary, into DIRECTORY."""
        directory = self.model.save_dir(directory)
        self.vocab.save(directory / RunDir.VOCAB_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TrainedModel:
        """The model and vocabulary saved in DIRECTORY, checked against each other.

        Raises:
            ModelFileError: a model file is missing or malformed, or the vocabulary is
                not the one the model was built for.
            VocabularyError: the vocabulary file is missing or malformed.
        """
        directory = Path(directory)
        model = CaptionModel.load_dir(directory)
        vocab = Vocabulary.load(directory / RunDir.VOCAB_FILE)
        if len(vocab) != model.config.vocab_size:
            raise ModelFileError(
                f"{directory}: {RunDir.VOCAB_FILE} has {len(vocab)} tokens, "
                f"the model {model.config.vocab_size}"
            )
        return cls(model, vocab)


class RunDir:
    """The directory of one training run (see the module docstring for its layout).

    Args:
        path: the run directory; nothing is created until something is written.
    """

    SETTINGS_FILE = "settings.json"
    STATE_FILE = "state.json"
    VOCAB_FILE = "vocab.json"
    CHECKPOINTS_DIR = "checkpoints"
    OPTIMIZER_FILE = "optimizer.npz"
    MODEL_DIR = "model"
    # A saved model's own pair, written by CaptionModel.save_dir.
    MODEL_CONFIG_FILE = model_files.CONFIG_FILE
    WEIGHTS_FILE = model_files.WEIGHTS_FILE
    DECODING_FILE = "decoding.json"
    LINEAGE_FILE = "lineage.json"
    # The re-ranker chosen on validation, saved by captioner.consensus beside the model.
    CONSENSUS_FILES = (consensus.FEATURES_FILE, consensus.CONFIG_FILE)
    MEMBERS_DIR = "members"
    EVAL_DIR = "eval"
    SCORES_FILE = "scores.json"
    PER_IMAGE_FILE = "per_image.json"
    CAPTIONS_FILE = "captions.json"
    REPORT_FILE = "report.md"
    PACKAGE_DIR = "package"
    FEATURES_DIR = "features"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def of_model(cls, model_dir: str | Path) -> RunDir:
        """The run that a model directory (``RUN/model``) belongs to."""
        return cls(Path(model_dir).parent)

    @property
    def settings_path(self) -> Path:
        return self.path / self.SETTINGS_FILE

    @property
    def lineage_path(self) -> Path:
        return self.path / self.LINEAGE_FILE

    @property
    def state_path(self) -> Path:
        return self.path / self.STATE_FILE

    @property
    def vocab_path(self) -> Path:
        return self.path / self.VOCAB_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS_DIR

    @property
    def model_dir(self) -> Path:
        return self.path / self.MODEL_DIR

    @property
    def members_dir(self) -> Path:
        return self.path / self.MEMBERS_DIR

    @property
    def eval_dir(self) -> Path:
        return self.path / self.EVAL_DIR

    @property
    def scores_path(self) -> Path:
        return self.eval_dir / self.SCORES_FILE

    @property
    def report_path(self) -> Path:
        return self.eval_dir / self.REPORT_FILE

    @property
    def package_dir(self) -> Path:
        return self.path / self.PACKAGE_DIR

    @property
    def features_root(self) -> Path:
        """The feature cache beside the run, so runs side by side share their features."""
        return self.path.parent / self.FEATURES_DIR

    def checkpoint_dir(self, name: str) -> Path:
        return self.checkpoints_dir / name

    def member(self, index: int) -> RunDir:
        """The run of member INDEX of an ensemble."""
        return RunDir(self.members_dir / f"m{index}")

    def saved_settings(self) -> dict[str, Any] | None:
        """The settings identity the run was started with, or None before its first start."""
        if not self.settings_path.is_file():
            return None
        return json.loads(self.settings_path.read_text())

    def changed_settings(self, identity: dict[str, Any]) -> list[str]:
        """The settings that IDENTITY changes against the saved ones (none for a new run)."""
        before = self.saved_settings()
        if before is None:
            return []
        return sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))

    def write_settings(self, identity: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.settings_path, identity)

    def load_vocabulary(self) -> Vocabulary | None:
        """The run's vocabulary, or None before it is built."""
        return Vocabulary.load(self.vocab_path) if self.vocab_path.is_file() else None

    def save_vocabulary(self, vocab: Vocabulary) -> None:
        vocab.save(self.vocab_path)

    def save_model(self, model: CaptionModel, vocab: Vocabulary) -> Path:
        """Write the model to export, with its vocabulary, into ``model/``."""
        return TrainedModel(model, vocab).save(self.model_dir)

    def load_model(self) -> TrainedModel:
        """The model in ``model/`` and its vocabulary (see :meth:`TrainedModel.load`)."""
        return TrainedModel.load(self.model_dir)

    def has_model(self) -> bool:
        """Whether training wrote a model to export."""
        return (self.model_dir / self.WEIGHTS_FILE).is_file()
