"""The registry on MLflow: register a package as a model version, move aliases, look up.

Every call here goes through ``MlflowClient`` with the settings' URI, never through
MLflow's process-wide tracking URI, so nothing else in the process is redirected. MLflow
is imported on the first call; its errors come out as :class:`RegistryError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from captioner.package import MANIFEST, PackageError, open_package, sha256
from registry.errors import RegistryError
from registry.settings import RegistrySettings
from registry.uri import SCHEME, ModelUri
from registry.version import (
    ARTIFACT_PATH,
    TAG_DATASETS,
    TAG_PACKAGE_NAME,
    TAG_PACKAGE_SHA256,
    TAG_PACKAGE_VERSION,
    TAG_PARENT,
    TAG_SCORES,
    RegisteredVersion,
)

INSTALL_HINT = "pip install 'captioner[registry]'"
_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
# What MLflow answers for an unknown version or alias (the file store says the latter).
_UNKNOWN = (_NOT_FOUND, "INVALID_PARAMETER_VALUE")


def client(settings: RegistrySettings) -> Any:
    """An ``MlflowClient`` on the settings' store, for tracking and registry alike.

    Raises:
        RegistryError: MLflow is not installed.
    """
    uri = settings.store_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps the file store in maintenance mode behind this opt-out; its
        # SQLite store needs SQLAlchemy and Alembic, which mlflow-skinny leaves out.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise RegistryError(f"the model registry needs MLflow: {INSTALL_HINT}") from exc
    with _errors(f"cannot open the registry at {settings.display_uri()}"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """MLflow's exceptions (one class, an error code) as RegistryError saying WHAT failed."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            raise RegistryError(f"{what}: {exc.message}") from exc
        raise


def _code(exc: BaseException) -> str | None:
    return getattr(exc.__cause__, "error_code", None)


def versions(*, settings: RegistrySettings) -> list[RegisteredVersion]:
    """Every version of the registered model, oldest first (none if it is not registered)."""
    mlflow = client(settings)
    with _errors(f"cannot list the versions of {settings.registry_model}"):
        found = mlflow.search_model_versions(f"name = '{settings.registry_model}'")
    return sorted((RegisteredVersion.from_mlflow(v) for v in found), key=lambda v: v.version)


def get_version(ref: str | int, *, settings: RegistrySettings) -> RegisteredVersion:
    """The version REF names: a number, an alias, or a ``models:/`` URI.

    Raises:
        RegistryError: no such model, version or alias (the message lists what exists).
    """
    name, ref = settings.registry_model, str(ref)
    if ref.startswith(SCHEME):
        uri = ModelUri.parse(ref)
        name, ref = uri.name, uri.ref
    mlflow = client(settings)
    try:
        with _errors(f"{name} {ref}"):
            if ref.isdigit():
                found = mlflow.get_model_version(name, ref)
            else:
                found = mlflow.get_model_version_by_alias(name, ref)
    except RegistryError as exc:
        if _code(exc) not in _UNKNOWN:
            raise
        raise _unknown(mlflow, name, ref, settings) from exc
    return RegisteredVersion.from_mlflow(found)


def _unknown(mlflow: Any, name: str, ref: str, settings: RegistrySettings) -> RegistryError:
    """The error for a REF that is not there, saying what is."""
    try:
        with _errors(name):
            model = mlflow.get_registered_model(name)
    except RegistryError as exc:
        if _code(exc) != _NOT_FOUND:
            return exc
        return RegistryError(
            f"no registered model {name!r} in the registry at {settings.display_uri()}"
        )
    aliases = ", ".join(f"{a} → {v}" for a, v in sorted(model.aliases.items())) or "none"
    if ref.isdigit():
        return RegistryError(f"{name} has no version {ref} (its aliases: {aliases})")
    return RegistryError(f"{name} has no version with the alias {ref!r} (its aliases: {aliases})")


def get_alias(alias: str, *, settings: RegistrySettings) -> RegisteredVersion:
    """The version ALIAS points at.

    Raises:
        RegistryError: no version carries ALIAS.
    """
    if alias.isdigit():
        raise RegistryError(f"{alias!r} is a version number, not an alias")
    return get_version(alias, settings=settings)


def set_alias(alias: str, version: str | int, *, settings: RegistrySettings) -> RegisteredVersion:
    """Point ALIAS at VERSION (a number, or another alias: ``champion`` ← ``challenger``).

    Returns:
        The version ALIAS now points at.

    Raises:
        RegistryError: an unknown version, or an alias MLflow reserves (``latest``, ``v1``).
    """
    target = get_version(version, settings=settings)
    mlflow = client(settings)
    with _errors(f"cannot point {alias!r} at {target.name} {target.version}"):
        mlflow.set_registered_model_alias(target.name, alias, str(target.version))
    return get_version(target.version, settings=settings)


def register_package(
    package_dir: str | Path,
    *,
    settings: RegistrySettings,
    scores: Mapping[str, Any] | None = None,
    datasets: Mapping[str, str] | None = None,
    parent: str | int | None = None,
    alias: str | None = None,
) -> RegisteredVersion:
    """Register a package (directory or ``.tar.gz``) as a new version of the model.

    The package is opened and checked first, then logged as the artifacts of an MLflow
    run and made a model version carrying its tags. A package already registered (the
    same manifest digest) is not registered twice: its version is returned, and ALIAS,
    if given, is moved to it.

    Args:
        package_dir: the package, as ``captioner export`` wrote it.
        settings: the registry's settings.
        scores: evaluation scores (default: the manifest's), e.g. CIDEr with its interval.
        datasets: dataset specs by role (``train``, ``extra``, ``val``); default: the
            manifest's training dataset and its lineage's extra dataset.
        parent: the version (number, alias or ``models:/`` URI) this model was fine-tuned
            from; default: the registered version whose package the manifest's lineage
            names as its parent, if there is one.
        alias: an alias to point at the new version (``challenger``).

    Raises:
        RegistryError: the package does not open, PARENT is unknown, or MLflow fails.
    """
    try:
        package = open_package(package_dir)
    except PackageError as exc:
        raise RegistryError(f"cannot register {package_dir}: {exc}") from exc
    digest = sha256(package.root / MANIFEST)
    known = versions(settings=settings)
    existing = [v for v in known if v.package_sha256 == digest]
    if existing:
        found = existing[0]
        return set_alias(alias, found.version, settings=settings) if alias else found
    manifest = package.manifest
    lineage = getattr(manifest, "lineage", None)
    scores = dict(manifest.scores if scores is None else scores)
    if datasets is None:
        recorded = {"train": manifest.dataset, "extra": getattr(lineage, "extra_dataset", None)}
        datasets = {role: spec for role, spec in recorded.items() if spec}
    if parent is None:
        # The manifest names its parent by package version; tag it when that is registered.
        parent_package = getattr(lineage, "parent", None)
        parent = next((v.version for v in known if v.package_version == parent_package), None)
    tags = {
        TAG_PACKAGE_NAME: package.name,
        TAG_PACKAGE_VERSION: package.version,
        TAG_PACKAGE_SHA256: digest,
        TAG_SCORES: json.dumps(scores, sort_keys=True),
        TAG_DATASETS: json.dumps(dict(datasets), sort_keys=True),
    }
    if parent is not None:
        tags[TAG_PARENT] = str(get_version(parent, settings=settings).version)
    name, mlflow = settings.registry_model, client(settings)
    with _errors(f"cannot register {package.name} {package.version} as {name}"):
        _ensure_model(mlflow, name)
        run_id, source = _log_run(mlflow, package.root, tags, scores, settings)
        created = mlflow.create_model_version(
            name, source, run_id=run_id, tags=tags, description=f"{package.name} {package.version}"
        )
    if alias:
        return set_alias(alias, created.version, settings=settings)
    return get_version(created.version, settings=settings)


def _ensure_model(mlflow: Any, name: str) -> None:
    try:
        with _errors(name):
            mlflow.get_registered_model(name)
    except RegistryError as exc:
        if _code(exc) != _NOT_FOUND:
            raise
        mlflow.create_registered_model(name, description="captioner model packages")


def _log_run(
    mlflow: Any,
    root: Path,
    tags: dict[str, str],
    scores: Mapping[str, Any],
    settings: RegistrySettings,
) -> tuple[str, str]:
    """A finished run holding the package under ARTIFACT_PATH: (run id, artifact URI)."""
    experiment = mlflow.get_experiment_by_name(settings.registry_experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else mlflow.create_experiment(settings.registry_experiment)
    )
    run = mlflow.create_run(
        experiment_id,
        run_name=f"register {tags[TAG_PACKAGE_NAME]} {tags[TAG_PACKAGE_VERSION]}",
        tags=tags,
    )
    run_id = run.info.run_id
    try:
        for key, value in _numbers(scores).items():
            mlflow.log_metric(run_id, key, value)
        mlflow.log_artifacts(run_id, str(root), ARTIFACT_PATH)
    except BaseException:
        mlflow.set_terminated(run_id, "FAILED")
        raise
    mlflow.set_terminated(run_id, "FINISHED")
    return run_id, f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"


def _numbers(scores: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers in SCORES, nested keys joined by dots (``CIDEr.low``)."""
    flat: dict[str, float] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_numbers(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                flat[name] = float(value)
    return flat


def download(version: RegisteredVersion, dst: Path, *, settings: RegistrySettings) -> Path:
    """Download VERSION's package into the folder DST; returns the package directory."""
    client(settings)  # MLflow importable, the file store allowed
    import mlflow.artifacts

    with _errors(f"cannot download {version.uri} from {version.source}"):
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=version.source, dst_path=str(dst), tracking_uri=settings.store_uri()
        )
    return Path(path)
