"""What route handlers receive, as ``Annotated`` dependencies.

``create_app`` puts the settings, the model, the metrics and the tracer on
``app.state``; handlers declare what they need (``SettingsDep``, ``ReadyModel``, ...)
and tests swap any of them with ``app.dependency_overrides``. The checks that several
routes share (ready, loaded, the model's name) are written here once.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def``
dependency on its thread pool, and the four a caption request needs cost four thread
hand-offs (about 1 ms each on a busy 2-core host; benchmarks/peers, docs/inference.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.trace import Tracer

from inference.errors import ModelNotFound, NotReady
from inference.metrics import ServiceMetrics
from inference.model import ServedModel
from inference.settings import ServeSettings


async def get_settings(request: Request) -> ServeSettings:
    """The settings the app was built with."""
    return request.app.state.settings


async def get_model(request: Request) -> ServedModel:
    """The served model, ready or not."""
    return request.app.state.model


async def get_metrics(request: Request) -> ServiceMetrics:
    """Where the service records its Prometheus metrics."""
    return request.app.state.metrics


async def get_tracer(request: Request) -> Tracer:
    """The tracer for the stage spans of a request."""
    return request.app.state.tracer


SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
ModelDep = Annotated[ServedModel, Depends(get_model)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
TracerDep = Annotated[Tracer, Depends(get_tracer)]


async def ready_model(model: ModelDep) -> ServedModel:
    """The model, once it is loaded and warmed up.

    Raises:
        NotReady: still loading, failed to load, or shutting down (the reason says which).
    """
    if not model.ready:
        raise NotReady(model.reason)
    return model


async def loaded_model(model: ModelDep) -> ServedModel:
    """The model once its package is open, ready or not (metadata needs no sessions).

    Raises:
        NotReady: no package is open yet, or it failed to open.
    """
    if model.package is None:
        raise NotReady(model.reason)
    return model


async def known_name(name: str, model: ModelDep) -> str:
    """The ``{name}`` of a V2 model path, once it is the served model's name.

    Before a package is open the served name is not known yet, so any name passes
    (and the readiness check that follows answers).

    Raises:
        ModelNotFound: a package is open and serves another name.
    """
    if model.package is not None and name != model.name:
        raise ModelNotFound(f"no model {name!r}; this service serves {model.name!r}")
    return name


ReadyModel = Annotated[ServedModel, Depends(ready_model)]
LoadedModel = Annotated[ServedModel, Depends(loaded_model)]
KnownName = Annotated[str, Depends(known_name)]
