"""The registry's one error: what the user asked for is not there, or cannot be done."""


class RegistryError(RuntimeError):
    """An unknown alias or version, a URI that is not ``models:/``, an unusable store,
    a package that does not open, or MLflow missing: the message says which."""
