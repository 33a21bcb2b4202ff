"""Registry settings: typed, read once from ``CAPTIONER_REGISTRY_*`` variables."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# MLflow's own rule for registered model names is looser; this keeps names usable in
# ``models:/NAME@ALIAS`` and as a cache folder.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class RegistrySettings(BaseSettings):
    """Where the registry lives and where resolved packages are kept.

    The fields carry a ``registry_`` prefix so that their variables
    (``CAPTIONER_REGISTRY_URI``, ...) cannot collide with the service's
    (``CAPTIONER_MODEL_NAME`` is the name it serves under).
    """

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_", extra="ignore")

    # A server URI may carry a password: SecretStr keeps it out of reprs and errors.
    registry_uri: SecretStr = Field(
        default=SecretStr("runs/mlruns"),
        description="MLflow tracking and registry URI (http(s)://, file:, or a local folder); "
        "default: the file store training writes its runs to",
    )
    registry_model: str = Field(
        default="captioner", pattern=f"^{NAME_PATTERN}$", description="registered model name"
    )
    registry_experiment: str = Field(
        default="captioner-registry",
        min_length=1,
        description="MLflow experiment of the runs that carry registered packages",
    )
    registry_cache_dir: Path = Field(
        default=Path("runs/registry-cache"),
        description="where resolved packages are downloaded to and reused from",
    )

    @field_validator("registry_uri")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the registry URI cannot be empty")
        return value

    def store_uri(self) -> str:
        """The URI MLflow is given: a plain folder becomes an absolute ``file://`` URI, so
        the store does not move with the working directory of whoever reads it."""
        uri = self.registry_uri.get_secret_value().strip()
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri):
            return uri
        return Path(uri).expanduser().resolve().as_uri()

    def display_uri(self) -> str:
        """The store URI without any user name or password, for messages."""
        parts = urlsplit(self.store_uri())
        if parts.username is None and parts.password is None:
            return parts.geturl()
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return parts._replace(netloc=netloc).geturl()
