"""``captioner registry``: register packages as MLflow model versions, move aliases, resolve.

The ``registry`` component is imported inside the commands only: the serving image has
neither it nor MLflow, and ``captioner serve`` with a plain path must not need them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cli.common import build_settings, fail

if TYPE_CHECKING:
    from registry.settings import RegistrySettings

# registry.uri.SCHEME, spelled here so that a process without the registry package can
# still tell a URI from a path (tests/unit/test_registry.py holds the two equal).
SCHEME = "models:/"
INSTALL_HINT = "pip install 'captioner[registry]'"

T = TypeVar("T")


def resolve_model_arg(value: str | Path, settings: RegistrySettings | None = None) -> Path:
    """A package argument as a local path: a ``models:/`` URI is resolved through the
    registry (downloaded into its cache), anything else is taken as a path.

    For every command that takes a package or a registry URI (serve, train --init-from,
    compare). SETTINGS default to the ``CAPTIONER_REGISTRY_*`` environment.

    Raises:
        click.ClickException: the registry is not installed, or cannot resolve the URI.
    """
    text = str(value)
    if not text.startswith(SCHEME):
        return Path(value)
    try:
        from registry.cache import resolve
        from registry.errors import RegistryError
        from registry.settings import RegistrySettings
    except ImportError as exc:
        raise click.ClickException(
            f"{text} needs the model registry, which is not installed: {INSTALL_HINT}"
        ) from exc
    if settings is None:
        settings = build_settings(RegistrySettings)
    try:
        return resolve(text, settings=settings)
    except RegistryError as exc:
        fail(exc)


def register_exported(package: Path, alias: str | None = None) -> dict[str, Any]:
    """Register a package ``captioner export`` just wrote, its parent found from its lineage;
    the version as a dict."""
    try:
        from registry.settings import RegistrySettings
        from registry.store import register_package
    except ImportError as exc:
        raise click.ClickException(
            f"--register needs the model registry, which is not installed: {INSTALL_HINT}"
        ) from exc
    settings = build_settings(RegistrySettings)
    return _call(register_package, package, settings=settings, alias=alias).to_dict()


def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """FUNCTION from the registry, its RegistryError as a clear command error."""
    from registry.errors import RegistryError

    try:
        return function(*args, **kwargs)
    except RegistryError as exc:
        fail(exc)


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group("registry")
@click.option("--uri", help="MLflow tracking/registry URI [env CAPTIONER_REGISTRY_URI]")
@click.option("--model", help="registered model name [env CAPTIONER_REGISTRY_MODEL]")
@click.pass_context
def registry_group(ctx: click.Context, uri: str | None, model: str | None) -> None:
    """The model registry (MLflow): versions, the champion and challenger aliases."""
    try:
        from registry.settings import RegistrySettings
    except ImportError as exc:
        raise click.ClickException(f"the model registry is not installed: {INSTALL_HINT}") from exc
    ctx.obj = build_settings(RegistrySettings, registry_uri=uri, registry_model=model)


def _datasets(specs: tuple[str, ...]) -> dict[str, str] | None:
    datasets: dict[str, str] = {}
    for item in specs:
        role, sep, spec = item.partition("=")
        if not sep or not role or not spec:
            raise click.BadParameter(f"{item!r}: expected ROLE=SPEC, e.g. train=flickr8k[train]")
        if role in datasets:
            raise click.BadParameter(f"{role!r} is given twice", param_hint="--dataset")
        datasets[role] = spec
    return datasets or None


def _scores(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        scores = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--scores") from exc
    if not isinstance(scores, dict):
        raise click.BadParameter(f"{path} must hold a JSON object", param_hint="--scores")
    return scores


@registry_group.command("register")
@click.argument("package", type=click.Path(path_type=Path, exists=True))
@click.option("--alias", help="point this alias at the new version (e.g. challenger)")
@click.option(
    "--scores",
    "scores_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="JSON object of scores (default: the manifest's)",
)
@click.option(
    "--dataset",
    "dataset_specs",
    multiple=True,
    help="ROLE=SPEC, repeatable: train=..., extra=..., val=... (default: the manifest's)",
)
@click.option("--parent", help="the version (number or alias) this model was fine-tuned from")
@click.pass_obj
def register_command(
    settings: RegistrySettings,
    package: Path,
    alias: str | None,
    scores_file: Path | None,
    dataset_specs: tuple[str, ...],
    parent: str | None,
) -> None:
    """Register a model package as a new version; prints it as JSON."""
    from registry.store import register_package

    version = _call(
        register_package,
        package,
        settings=settings,
        scores=_scores(scores_file),
        datasets=_datasets(dataset_specs),
        parent=parent,
        alias=alias,
    )
    _echo(version.to_dict())


@registry_group.command("alias")
@click.argument("alias")
@click.argument("version")
@click.pass_obj
def alias_command(settings: RegistrySettings, alias: str, version: str) -> None:
    """Point ALIAS at VERSION (a number or another alias); prints the version."""
    from registry.store import set_alias

    _echo(_call(set_alias, alias, version, settings=settings).to_dict())


@registry_group.command("show")
@click.argument("ref", required=False)
@click.pass_obj
def show_command(settings: RegistrySettings, ref: str | None) -> None:
    """One version (number, alias or models:/ URI) as JSON; without REF, the aliases."""
    from registry.store import get_version, versions

    if ref is not None:
        _echo(_call(get_version, ref, settings=settings).to_dict())
        return
    found = _call(versions, settings=settings)
    _echo(
        {
            "name": settings.registry_model,
            "registry": settings.display_uri(),
            "aliases": {a: v.version for v in found for a in v.aliases},
            "versions": len(found),
            "latest": found[-1].to_dict() if found else None,
        }
    )


@registry_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="every version as a JSON list")
@click.pass_obj
def list_command(settings: RegistrySettings, as_json: bool) -> None:
    """Every version: number, package version, aliases, CIDEr, parent."""
    from registry.store import versions

    found = _call(versions, settings=settings)
    if as_json:
        _echo([v.to_dict() for v in found])
        return
    for v in found:
        click.echo(
            f"{v.version:>4}  {v.package_version or '-':<28} {','.join(v.aliases) or '-':<20} "
            f"CIDEr {_score(v.scores.get('CIDEr'))}  parent {v.parent or '-'}"
        )


def _score(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:.3f}"
    return json.dumps(value, separators=(",", ":"))


@registry_group.command("resolve")
@click.argument("uri")
@click.pass_obj
def resolve_command(settings: RegistrySettings, uri: str) -> None:
    """Download (or reuse from the cache) the package URI names; prints its path."""
    from registry.cache import resolve

    click.echo(str(_call(resolve, uri, settings=settings)))
