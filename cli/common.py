"""What every command shares: turning a domain error into a clear message, typed settings."""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, ValidationError

SettingsT = TypeVar("SettingsT", bound=BaseModel)


def fail(exc: Exception) -> NoReturn:
    """End the command with EXC's message as a click error (exit 1, no traceback)."""
    raise click.ClickException(str(exc)) from exc


def given(**options: Any) -> dict[str, Any]:
    """The options the user set: an unset option leaves the settings' own default."""
    return {k: v for k, v in options.items() if v is not None}


def build_settings(cls: type[SettingsT], **options: Any) -> SettingsT:
    """``cls`` from the environment with the options that were given on top.

    Raises:
        click.ClickException: a value that fails validation, with pydantic's message.
    """
    try:
        return cls(**given(**options))
    except ValidationError as exc:
        fail(exc)
