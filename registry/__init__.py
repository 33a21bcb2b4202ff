"""The model registry: every exported package can become a version of a registered MLflow
model, with aliases (``champion``, ``challenger``) that say which version serves.

``register_package`` logs a package directory as an MLflow run's artifacts and makes it a
model version, tagged with the package's own version, its digest, its scores, its datasets
and the version it was fine-tuned from; ``resolve`` turns ``models:/captioner@champion``
back into a checked package directory in a local cache. MLflow is imported only when a
function needs it (``pip install 'captioner[registry]'``); see docs/export.md.
"""

from registry.cache import resolve
from registry.errors import RegistryError
from registry.settings import RegistrySettings
from registry.store import get_alias, get_version, register_package, set_alias, versions
from registry.uri import SCHEME, ModelUri
from registry.version import ALIASES, CHALLENGER, CHAMPION, RegisteredVersion

__all__ = [
    "ALIASES",
    "CHALLENGER",
    "CHAMPION",
    "SCHEME",
    "ModelUri",
    "RegisteredVersion",
    "RegistryError",
    "RegistrySettings",
    "get_alias",
    "get_version",
    "register_package",
    "resolve",
    "set_alias",
    "versions",
]
