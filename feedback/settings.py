"""Feedback settings: typed, read once from the environment by whoever builds the component."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeedbackSettings(BaseSettings):
    """Where feedback goes: ``MONGODB_URI`` and ``CAPTIONER_*`` variables.

    The page's settings extend these (one process, one environment), and
    ``captioner feedback export`` builds them on their own.
    """

    # populate_by_name: a command passes its --mongodb-uri as mongodb_uri=..., not
    # under the variable's name.
    model_config = SettingsConfigDict(
        env_prefix="CAPTIONER_", extra="ignore", populate_by_name=True
    )

    # A URI may carry a password: SecretStr keeps it out of reprs, logs and errors.
    mongodb_uri: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MONGODB_URI", "CAPTIONER_MONGODB_URI"),
        description="MongoDB to store feedback in; unset: a local nx-27017 is started",
    )
    mongodb_database: str = Field(default="captioner", description="database name")
    mongodb_timeout_ms: int = Field(default=2000, ge=100, description="server selection timeout")
    local_db_dir: Path = Field(
        default=Path("runs/ui/mongo"), description="data directory of the local nx-27017"
    )
    local_db_port: int = Field(default=27017, ge=1, le=65535, description="its port")
    outbox_path: Path = Field(
        default=Path("runs/ui/outbox.sqlite3"),
        description="durable outbox for feedback the database could not take",
    )
    flush_seconds: float = Field(default=5.0, gt=0, description="outbox delivery interval")
    store_images: bool = Field(
        default=False,
        description="store the rated image with its feedback, so that it can be trained on "
        "(the demo turns it on; in production it is the operator's decision)",
    )
    rate_limit: str = Field(
        default="5/minute;60/hour",
        description="feedback one client may submit, in the limits library's notation "
        "(several windows separated by ;)",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="where the limits' counters live: memory:// per page process, or a "
        "shared store such as mongodb://… or redis://… across replicas",
    )
    proxy_hops: int = Field(
        default=0,
        ge=0,
        le=8,
        description="addresses your proxies append to X-Forwarded-For after the client's "
        "(Google's load balancer: 1); 0 ignores the header, which clients can write",
    )
    trust_iap_header: bool = Field(
        default=False,
        description="key the rate limit by the IAP user header (only behind IAP)",
    )
    export_holdout: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="share of the feedback images the export puts in split test (chosen "
        "by their SHA-256, so an image keeps its split), held out for captioner compare",
    )
    min_correction_words: int = Field(
        default=3, ge=1, description="an exported caption needs at least this many words"
    )
    max_caption_words: int = Field(
        default=40, ge=1, description="an exported caption may have at most this many words"
    )
    max_images_per_caption: int = Field(
        default=3,
        ge=1,
        description="the same caption given to more images than this is dropped from all",
    )
