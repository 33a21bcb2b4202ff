"""A registered model version as this project records it: aliases, tags, the dataclass."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from registry.uri import SCHEME

# The aliases a rollout moves: champion serves, challenger is the canary.
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)

# Where a version's package lies inside the run that carries it.
ARTIFACT_PATH = "package"

# The version's tags: register_package writes them, RegisteredVersion reads them.
TAG_PACKAGE_NAME = "captioner.package.name"
TAG_PACKAGE_VERSION = "captioner.package.version"
TAG_PACKAGE_SHA256 = "captioner.package.sha256"
TAG_SCORES = "captioner.scores"
TAG_DATASETS = "captioner.datasets"
TAG_PARENT = "captioner.parent"


def _json(tags: dict[str, str], key: str) -> dict[str, Any]:
    try:
        value = json.loads(tags.get(key) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of the registered model and what it carries.

    ``package_sha256`` is the sha256 of the package's ``manifest.json``, which itself
    records the sha256 of every other file: one digest for the whole package.
    """

    name: str
    version: int
    package_name: str | None
    package_version: str | None
    package_sha256: str | None
    aliases: tuple[str, ...] = ()
    scores: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    parent: int | None = None
    run_id: str | None = None
    source: str = ""
    created: str | None = None

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.name}/{self.version}"

    @classmethod
    def from_mlflow(cls, found: Any) -> RegisteredVersion:
        """From an ``mlflow.entities.model_registry.ModelVersion``."""
        tags: dict[str, str] = dict(found.tags or {})
        parent = tags.get(TAG_PARENT)
        created = found.creation_timestamp
        return cls(
            name=found.name,
            version=int(found.version),
            package_name=tags.get(TAG_PACKAGE_NAME),
            package_version=tags.get(TAG_PACKAGE_VERSION),
            package_sha256=tags.get(TAG_PACKAGE_SHA256),
            aliases=tuple(sorted(found.aliases or ())),
            scores=_json(tags, TAG_SCORES),
            datasets={str(k): str(v) for k, v in _json(tags, TAG_DATASETS).items()},
            parent=int(parent) if parent and parent.isdigit() else None,
            run_id=found.run_id or None,
            source=found.source or "",
            created=(
                datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="seconds")
                if created
                else None
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The version as JSON-ready values, its URI included."""
        return {"uri": self.uri, **asdict(self), "aliases": list(self.aliases)}
