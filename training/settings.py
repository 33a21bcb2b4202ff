"""Training settings: typed, read once from ``CAPTIONER_*`` variables at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.datasets.spec import DatasetSpec, parse_spec

# The checkout this module runs from; ``../shared/data`` beside it is where a team
# keeps the real photos and weights that are never committed.
_CHECKOUT = Path(__file__).resolve().parents[1]


def default_data_root() -> Path:
    """``../shared/data`` beside the checkout when that folder exists, else ``data``.

    ``CAPTIONER_DATA_ROOT`` (or ``--data-root``) overrides it.
    """
    shared = _CHECKOUT.parent / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


def data_root_field() -> Any:
    """The one definition of every settings class's ``data_root`` field."""
    return Field(
        default_factory=default_data_root,
        description="where real datasets live; default ../shared/data beside the checkout, or data",
    )


class DataSettings(BaseSettings):
    """Where datasets live and where ``captioner data fetch`` gets them; ``CAPTIONER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_", extra="ignore")

    data_root: Path = data_root_field()
    data_mirror: str | None = Field(
        None,
        description="a base URL or a local folder holding the archives under their file names, "
        "used instead of the sources table's URLs (a proxy, a company copy)",
    )
    data_sources: Path | None = Field(
        None, description="another sources table in the form of training/datasets/sources.toml"
    )
    fetch_retries: int = Field(
        3, ge=0, description="further attempts per URL after a dropped connection or a 5xx"
    )
    keep_archives: bool = Field(
        False, description="keep downloaded archives in DATA_ROOT/.downloads after unpacking"
    )


class EvalSettings(BaseSettings):
    """How ``captioner evaluate`` decodes and what it scores beside the model."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_", extra="ignore")

    data_root: Path = data_root_field()
    beam_size: int | None = Field(
        default=None,
        ge=1,
        description="default: the beam size chosen on validation (decoding.json beside the "
        "model), else captioner.decoding.UNTUNED_BEAM_SIZE",
    )
    length_penalty: float | None = Field(
        default=None,
        ge=0.0,
        description="default: the one chosen on validation, else the core's default",
    )
    baseline: bool = Field(
        default=True,
        description="score the constant and nearest-neighbour baselines beside the model",
    )


class TrainSettings(BaseSettings):
    """How to train one model. Every field is also a ``CAPTIONER_<FIELD>`` variable."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_", extra="ignore")

    dataset: str = Field(
        "shapes[train]", description="training split spec (docs/architecture.md, dataset specs)"
    )
    val_dataset: str | None = Field(
        None, description="validation spec; default: the same dataset's val split"
    )
    data_root: Path = data_root_field()
    extra_dataset: str | None = Field(
        None,
        description="a second training spec mixed into every epoch, e.g. feedback[train] "
        "(docs/training.md, training from feedback)",
    )
    extra_weight: float = Field(
        1.0,
        gt=0.0,
        le=16.0,
        description="how often an extra image is shown per epoch against once for a "
        "dataset image: 2 twice, 0.5 every other epoch on average",
    )
    extra_data_root: Path | None = Field(
        None, description="where the extra dataset lives; default: data_root"
    )
    init_from: Path | None = Field(
        None,
        description="fine-tune from this run, model directory or package (its source "
        "model): same vocabulary and model settings, a lower learning rate, early stopping",
    )
    init_member: int = Field(
        0, ge=0, description="the parent's decoder a member starts from (set per member)"
    )
    fine_tune_lr_scale: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="with init_from and no learning_rate given: the parent's rate times this",
    )
    run_dir: Path = Field(Path("runs/demo"), description="checkpoints, vocabulary, reports")

    architecture: Literal["merge", "attention"] = "attention"
    encoder: str = "small_cnn"
    encoder_weights: str | None = Field(
        None, description="None/'random', a weights file, or 'imagenet' from the Keras cache"
    )
    input_size: int | None = Field(
        None, ge=32, description="encoder input size; default: the encoder's own"
    )
    train_encoder: bool | None = Field(
        None, description="default: True for small_cnn, False (cached features) otherwise"
    )

    # Decoder sizes: unset means the architecture's own default (merge: the
    # seed's 256/256/0.5; attention: 128/256/0.2).
    embed_dim: int | None = Field(None, ge=8)
    units: int | None = Field(None, ge=8)
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    image_dim: int | None = Field(None, ge=8, description="merge: size of the image projection")
    alpha_regularization: float | None = Field(
        None, ge=0.0, description="attention: doubly stochastic weight"
    )

    min_count: int = Field(1, ge=1, description="words rarer than this become <unk>")
    max_length_quantile: float = Field(1.0, gt=0.0, le=1.0)

    epochs: int = Field(24, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0.0)
    patience: int = Field(
        4, ge=1, description="epochs without a better validation CIDEr before stopping"
    )
    selection: Literal["best", "last"] = Field(
        "best",
        description="keep the epoch with the best val CIDEr (early stopping), or the last epoch "
        "of a fixed schedule",
    )
    all_captions: bool = Field(
        False, description="an epoch shows every caption once (default: one caption per image)"
    )
    rerank: bool = Field(
        False,
        description="let the decoding chosen on validation re-rank the beam by consensus with "
        "the nearest training photos",
    )
    members: int = Field(1, ge=1, le=16, description="decoders in the ensemble, one seed each")
    val_images: int = Field(200, ge=1, description="validation images decoded per epoch for CIDEr")
    max_train_seconds: float | None = Field(
        None, gt=0, description="stop after the epoch that passes this budget"
    )
    seed: int = 1
    mixed_precision: Literal["auto", "on", "off"] = "auto"

    mlflow_tracking_uri: str | None = Field(
        None, description="default: a file store under the run's parent"
    )
    mlflow_experiment: str = "captioner"

    @field_validator("dataset", "val_dataset", "extra_dataset")
    @classmethod
    def _spec_is_valid(cls, value: str | None) -> str | None:
        if value is not None:
            parse_spec(value)
        return value

    def extra_spec(self) -> DatasetSpec | None:
        """The spec of the dataset mixed into training, if any."""
        from training.datasets.registry import DATASETS

        return parse_spec(self.extra_dataset, DATASETS) if self.extra_dataset else None

    def specs(self) -> tuple[DatasetSpec, DatasetSpec]:
        """The training spec and the validation spec (default: the same dataset's val)."""
        from training.datasets.registry import DATASETS

        train = parse_spec(self.dataset, DATASETS)
        val = (
            parse_spec(self.val_dataset, DATASETS) if self.val_dataset else train.with_split("val")
        )
        return train, val

    @property
    def encoder_trainable(self) -> bool:
        return self.encoder == "small_cnn" if self.train_encoder is None else self.train_encoder

    def decoder_config(self) -> dict[str, float | int]:
        """Decoder constructor arguments that were set; the rest keep the class defaults."""
        names = ["embed_dim", "units", "dropout"]
        names.append("alpha_regularization" if self.architecture == "attention" else "image_dim")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return (self.run_dir.resolve().parent / "mlruns").as_uri()

    def identity(self) -> dict[str, object]:
        """The settings that must match for a run to resume (not budgets or evaluation)."""
        skip = {
            "epochs",
            "max_train_seconds",
            "patience",
            "mlflow_tracking_uri",
            "run_dir",
            "data_root",
            "extra_data_root",
        }
        identity = {k: v for k, v in self.model_dump(mode="json").items() if k not in skip}
        # Left out at their defaults, so that runs begun before they existed still resume.
        for name in _OPTIONAL_IDENTITY:
            if getattr(self, name) == type(self).model_fields[name].default:
                identity.pop(name)
        return identity


_OPTIONAL_IDENTITY = (
    "extra_dataset",
    "extra_weight",
    "init_from",
    "init_member",
    "fine_tune_lr_scale",
)
