"""The application factory: the routers of the HTTP API (docs/architecture.md), wired to a
model, metrics and traces.

What each route does is in ``routes/``, what handlers receive in ``deps.py``, how
errors become statuses in ``handlers.py`` and what every request records in
``middleware.py``; this module only puts them together.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from captioner import __version__
from inference.handlers import add_error_handlers
from inference.metrics import ServiceMetrics
from inference.middleware import TelemetryMiddleware
from inference.model import ServedModel
from inference.routes import captions, prometheus, v2
from inference.settings import ServeSettings
from telemetry.tracing import build_tracer_provider


def create_app(
    settings: ServeSettings,
    *,
    model: ServedModel | None = None,
    metrics: ServiceMetrics | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the service. The model loads in the background once the app starts.

    Args:
        settings: the service settings.
        model: a model to serve (tests pass one); default: one made from settings.
        metrics: where to record; default: a fresh registry.
        tracer_provider: default: one configured from the ``OTEL_*`` environment, shut
            down with the app (a provider passed in belongs to the caller).
    """
    metrics = metrics or ServiceMetrics()
    model = model or ServedModel(settings, metrics)
    provider = tracer_provider or build_tracer_provider("captioner-inference")
    app = FastAPI(
        title="captioner inference",
        version=__version__,
        summary="Image captions over REST and the Open Inference Protocol (V2).",
        lifespan=_lifespan(settings, model, provider if tracer_provider is None else None),
        docs_url=None,  # no interactive pages on the public port; /openapi.json documents it
        redoc_url=None,
    )
    # What inference/deps.py hands to the routes (and tests swap with dependency_overrides).
    app.state.settings, app.state.model, app.state.metrics = settings, model, metrics
    app.state.tracer = provider.get_tracer("captioner.inference")
    add_error_handlers(app)
    app.add_middleware(TelemetryMiddleware, metrics=metrics)
    for router in (captions.router, v2.router, prometheus.router):
        app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-Id", "X-Trace-Id", "Retry-After"],
        )
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="metrics,v2/health/live,v2/health/ready"
    )
    return app


def _lifespan(
    settings: ServeSettings, model: ServedModel, own_provider: TracerProvider | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start loading the model on start-up; drain it, and shut an own provider, at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not model.ready:
            threading.Thread(target=model.load, name="model-load", daemon=True).start()
        yield
        await run_in_threadpool(model.close, settings.drain_seconds)
        if own_provider is not None:
            own_provider.shutdown()

    return lifespan
