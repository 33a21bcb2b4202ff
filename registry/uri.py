"""``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``: MLflow's model URIs, parsed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.settings import NAME_PATTERN

SCHEME = "models:/"
_URI = re.compile(rf"^models:/(?P<name>{NAME_PATTERN})(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


@dataclass(frozen=True)
class ModelUri:
    """One registered version, named by its number or by an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelUri:
        """Parse URI.

        Raises:
            RegistryError: not a ``models:/`` URI, or one with a stage or no version.
        """
        if not uri.startswith(SCHEME):
            raise RegistryError(
                f"{uri!r} is not a registry URI: expected models:/NAME/VERSION or "
                "models:/NAME@ALIAS"
            )
        found = _URI.match(uri)
        if found is None:
            raise RegistryError(
                f"{uri!r} names no version: expected models:/NAME/VERSION (a number) or "
                "models:/NAME@ALIAS (stages are not used)"
            )
        version = found["version"]
        return cls(found["name"], int(version) if version else None, found["alias"])

    @property
    def ref(self) -> str:
        """The version number or the alias, as ``get_version`` takes it."""
        return self.alias if self.alias is not None else str(self.version)

    def __str__(self) -> str:
        tail = f"@{self.alias}" if self.alias is not None else f"/{self.version}"
        return f"{SCHEME}{self.name}{tail}"
