"""UI settings: typed, read once from the environment when the page's resources are built."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    """What the Streamlit page reads from ``CAPTIONER_*`` variables (and ``MONGODB_URI``)."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_", extra="ignore")

    service_url: str = Field(
        default="http://127.0.0.1:8000", description="the inference service's base URL"
    )
    service_timeout_seconds: float = Field(default=30.0, gt=0, description="per request")
    service_retries: int = Field(
        default=2, ge=0, le=10, description="retries on connection errors, 429 and 503"
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
    store_images: bool = Field(default=False, description="store uploaded images with feedback")
    ui_host: str = Field(default="127.0.0.1", description="Streamlit listen address")
    ui_port: int = Field(default=8501, ge=1, le=65535, description="Streamlit port")
    ui_metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="Prometheus metrics of the UI (0: off)"
    )
    max_upload_mb: int = Field(default=10, ge=1, le=200, description="largest upload")
