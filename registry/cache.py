"""``models:/...`` to a package directory: downloaded once into the cache, then reused.

A version's artifacts never change in MLflow, so a cached copy that still opens (every
file's sha256 as its manifest says) and whose manifest is the one registered is used as
it is; anything else is downloaded again. A download lands in a hidden folder beside the
cache entry and is renamed into place only once it opens, so a kill halfway leaves no
half package where the next resolve would look.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from captioner.package import MANIFEST, PackageError, open_package, sha256
from registry.errors import RegistryError
from registry.settings import RegistrySettings
from registry.store import download, get_version
from registry.uri import ModelUri
from registry.version import RegisteredVersion

log = logging.getLogger(__name__)


def cache_path(version: RegisteredVersion, settings: RegistrySettings) -> Path:
    """Where VERSION's package is kept: ``CACHE_DIR/NAME/VERSION``."""
    return settings.registry_cache_dir / version.name / str(version.version)


def resolve(uri: str, *, settings: RegistrySettings) -> Path:
    """The local package directory of a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.

    The registry is asked which version URI names (an alias moves); the package is then
    taken from the cache when an intact copy is there, else downloaded and checked.

    Raises:
        RegistryError: not a ``models:/`` URI, an unknown version or alias, MLflow
            missing, or a downloaded package that does not open or is not the one
            registered.
    """
    version = get_version(str(ModelUri.parse(uri)), settings=settings)
    target = cache_path(version, settings)
    problem = _problem(target, version)
    if problem is None:
        log.info("%s is version %d, cached at %s", uri, version.version, target)
        return target
    if target.exists():
        log.warning("cached %s refused (%s); downloading it again", target, problem)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version.version}.partial-", dir=target.parent))
    try:
        fetched = download(version, staging, settings=settings)
        problem = _problem(fetched, version)
        if problem is not None:
            raise RegistryError(f"{version.uri} downloaded from {version.source}: {problem}")
        if target.exists():
            shutil.rmtree(target)
        fetched.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%s is version %d, downloaded to %s", uri, version.version, target)
    return target


def _problem(root: Path, version: RegisteredVersion) -> str | None:
    """Why ROOT is not VERSION's package, or None when it is."""
    if not (root / MANIFEST).is_file():
        return f"no {MANIFEST}"
    try:
        package = open_package(root)
    except PackageError as exc:
        return str(exc)
    if version.package_sha256 and sha256(root / MANIFEST) != version.package_sha256:
        return "its manifest is not the one registered (sha256 differs)"
    if version.package_version and package.version != version.package_version:
        return f"its version is {package.version}, the registry says {version.package_version}"
    return None
