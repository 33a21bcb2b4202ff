"""The application factory: routes of contract 3, one error table, telemetry middleware."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware.cors import CORSMiddleware

from captioner import __version__
from inference import v2
from inference.errors import (
    BadRequest,
    BodyTimeout,
    DeadlineExceeded,
    InvalidOptions,
    ModelNotFound,
    NotAnImage,
    NotReady,
    PayloadTooLarge,
    QueueFull,
    ServiceError,
    Undecodable,
)
from inference.metrics import CONTENT_TYPE, ServiceMetrics
from inference.model import Caption, Prepared, ServedModel
from inference.schemas import (
    CaptionRequest,
    CaptionResponse,
    ErrorBody,
    Live,
    Ready,
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    V2ServerMetadata,
)
from inference.settings import ServeSettings
from inference.spans import record_stages
from inference.tracing import build_tracer_provider, current_ids

log = logging.getLogger("inference.access")

STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400,
    ModelNotFound: 404,
    BodyTimeout: 408,
    PayloadTooLarge: 413,
    NotAnImage: 415,
    Undecodable: 422,
    InvalidOptions: 422,
    QueueFull: 429,
    NotReady: 503,
    DeadlineExceeded: 504,
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "bad request (malformed body, no image, bad base64)",
        404: "no such model",
        408: "the body did not arrive within the request deadline",
        413: "body or image over the size or pixel limit",
        415: "not an image in a supported format",
        422: "undecodable image or invalid options",
        429: "queue full; retry after the Retry-After header's seconds",
        503: "not ready (loading, failed, or shutting down)",
        504: "deadline exceeded",
    }.items()
}


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def get_model(request: Request) -> ServedModel:
    return request.app.state.model


ModelDep = Annotated[ServedModel, Depends(get_model)]


async def read_body(request: Request, limit: int, deadline: float) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes or ``deadline`` seconds.

    uvicorn has no timeout of its own for a body that trickles in, so a client sending
    a byte now and then (slowloris) would hold its connection and buffer for ever.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body has {declared} bytes, the limit is {limit}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout(
            f"the body did not arrive within {deadline:g} s ({size} bytes came)"
        ) from exc
    return b"".join(chunks)


async def parse_multipart(request: Request, body: bytes) -> dict[str, Any]:
    """Form fields of a multipart body; a file field's value is its bytes."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(
            request.headers, stream(), max_files=1, max_fields=8, max_part_size=64 * 1024
        ).parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}") from exc
    fields: dict[str, Any] = {}
    try:
        for key, value in form.multi_items():
            if key in fields:  # the last would silently win: say so instead
                raise BadRequest(f"the form field {key[:40]!r} is given more than once")
            fields[key] = value if isinstance(value, str) else await value.read()
    finally:
        await form.close()
    return fields


# The multipart form of POST /v1/captions: documented from here and enforced from here
# (unknown fields are refused, as the JSON body's are).
CAPTION_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "beam_size": {"type": "integer", "minimum": 1},
        "max_length": {"type": "integer", "minimum": 1},
        "attention": {"type": "boolean"},
    },
    "additionalProperties": False,
}


def _caption_openapi() -> dict[str, Any]:
    form = CAPTION_FORM
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": CaptionRequest.model_json_schema()},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


def _infer_openapi() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": V2InferRequest.model_json_schema()},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "binary tensor data extension: JSON header of "
                    "Inference-Header-Content-Length bytes, then the tensors",
                },
            },
        }
    }


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
        tracer_provider: default: one configured from the ``OTEL_*`` environment.
    """
    metrics = metrics or ServiceMetrics()
    model = model or ServedModel(settings, metrics)
    own_provider = tracer_provider is None
    provider = tracer_provider or build_tracer_provider("captioner-inference")
    tracer = provider.get_tracer("captioner.inference")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not model.ready:
            threading.Thread(target=model.load, name="model-load", daemon=True).start()
        yield
        await run_in_threadpool(model.close, settings.drain_seconds)
        if own_provider:
            provider.shutdown()

    app = FastAPI(
        title="captioner inference",
        version=__version__,
        summary="Image captions over REST and the Open Inference Protocol (V2).",
        lifespan=lifespan,
        docs_url=None,  # no interactive pages on the public port; /openapi.json documents it
        redoc_url=None,
    )
    app.state.model = model
    app.state.metrics = metrics
    app.state.settings = settings

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFull) else {}
        if isinstance(exc, BodyTimeout | PayloadTooLarge):
            # The rest of that body may still be on its way: closing the connection stops
            # it, where keep-alive would read (and a trickling client hold) it to the end.
            headers["Connection"] = "close"
        return error_response(STATUS.get(type(exc), 400), exc.code, exc.message, **headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, InvalidOptions.code, f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.middleware("http")
    async def telemetry(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        request.state.started = started
        metrics.in_flight.inc()
        try:
            response = await call_next(request)
        except Exception:  # our bug, not the client's: a 500 in the one error shape
            logging.getLogger(__name__).exception("unhandled error")
            response = error_response(500, "internal", "internal error; see the service log")
        finally:
            metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(template, request.method, str(response.status_code)).inc()
        metrics.request_duration.labels(template).observe(elapsed)
        ids = current_ids()
        if ids:
            response.headers["X-Trace-Id"] = ids[0]
        if template not in ("/metrics", "/v2/health/live", "/v2/health/ready"):
            log.info(
                "%s %s %d",
                request.method,
                template,
                response.status_code,
                extra={"status": response.status_code, "duration_seconds": round(elapsed, 6)},
            )
        return response

    async def caption_one(
        model: ServedModel, data: bytes, options: dict[str, Any], attention: bool
    ) -> tuple[Prepared, Caption, str]:
        if not model.ready:
            raise NotReady(model.reason)
        decode_options = model.options(options.get("beam_size"), options.get("max_length"))
        with model.admit(1) as reservation:
            prepared = await model.decode(data)
            [result] = await model.predict([prepared], decode_options, reservation)
        caption = model.postprocess(result, attention)
        record_stages(tracer, prepared, result.times)
        return prepared, caption, uuid.uuid4().hex

    @app.post(
        "/v1/captions",
        response_model=CaptionResponse,
        responses=ERRORS,
        openapi_extra=_caption_openapi(),
    )
    async def captions(
        request: Request,
        model: ModelDep,
        beam_size: Annotated[int | None, Query(ge=1)] = None,
        max_length: Annotated[int | None, Query(ge=1)] = None,
        attention: bool = False,
    ) -> Response:
        """Caption one image: multipart ``image``, JSON ``image_base64``, or a raw image body."""
        body = await read_body(request, settings.max_body_bytes, settings.request_timeout_seconds)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        options: dict[str, Any] = {"beam_size": beam_size, "max_length": max_length}
        if kind == "multipart/form-data":
            fields = await parse_multipart(request, body)
            unknown = sorted(set(fields) - set(CAPTION_FORM["properties"]))
            if unknown:
                raise BadRequest(
                    f"unknown form field(s) {', '.join(repr(k[:40]) for k in unknown[:3])}; "
                    f"the form takes {', '.join(CAPTION_FORM['properties'])}"
                )
            if "image" not in fields:
                raise BadRequest("the multipart body has no 'image' field")
            data = fields["image"] if isinstance(fields["image"], bytes) else b""
            if isinstance(fields["image"], str):
                raise NotAnImage("the 'image' field is text; send the image as a file part")
            options.update({k: fields[k] for k in ("beam_size", "max_length") if k in fields})
            attention = attention or _form_boolean("attention", fields.get("attention"))
        elif kind == "application/json":
            parsed = _caption_request(body)
            data = _base64(parsed.image_base64, "image_base64")
            options.update(
                parsed.model_dump(include={"beam_size", "max_length"}, exclude_none=True)
            )
            attention = attention or parsed.attention
        elif kind.startswith("image/"):
            data = body
        else:
            raise NotAnImage(
                f"content type {kind or 'missing'!r}: send multipart/form-data with an 'image' "
                "file, application/json with 'image_base64', or the image itself as image/*"
            )
        prepared, caption, request_id = await caption_one(model, data, options, attention)
        times = caption.result.times
        total = time.perf_counter() - request.state.started
        response = CaptionResponse.model_validate(
            {
                "request_id": request_id,
                "caption": caption.candidates[0]["caption"],
                "candidates": caption.candidates,
                "model": {
                    "name": model.name,
                    "version": model.version,
                    "variant": settings.variant,
                    "execution_provider": model.provider,
                },
                "image": {
                    "width": prepared.width,
                    "height": prepared.height,
                    "format": prepared.format,
                    "bytes": prepared.size_bytes,
                },
                "timings": {
                    "decode_image": prepared.decode_seconds,
                    "preprocess": prepared.preprocess_seconds,
                    "queue": times.queue_wait,
                    "encoder": times.encoder,
                    "decoder": times.decoder,
                    "total": total,
                    "encoder_batch_size": times.encoder_batch,
                    "decoder_steps": times.decoder_steps,
                },
                "attention": (
                    {"grid": model.attention_grid(), "weights": caption.attention}
                    if caption.attention
                    else None
                ),
            }
        )
        return JSONResponse(response.model_dump(), headers={"X-Request-Id": request_id})

    @app.get("/v2", response_model=V2ServerMetadata)
    async def server_metadata() -> dict[str, Any]:
        """Server metadata (Open Inference Protocol)."""
        return {"name": "captioner", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", response_model=Live)
    async def live() -> dict[str, bool]:
        """Live whenever the process answers."""
        return {"live": True}

    @app.get("/v2/health/ready", response_model=Ready, responses={503: ERRORS[503]})
    async def ready(model: ModelDep) -> dict[str, bool]:
        """Ready once the model is loaded and warmed up; 503 with the reason otherwise."""
        if not model.ready:
            raise NotReady(model.reason)
        return {"ready": True}

    def _named(model: ServedModel, name: str) -> ServedModel:
        if name != model.name:
            raise ModelNotFound(f"no model {name!r}; this service serves {model.name!r}")
        return model

    @app.get("/v2/models/{name}", response_model=V2ModelMetadata, responses=ERRORS)
    @app.get(
        "/v2/models/{name}/versions/{version}",
        response_model=V2ModelMetadata,
        responses=ERRORS,
    )
    async def model_metadata(name: str, model: ModelDep) -> dict[str, Any]:
        """Model metadata, with the execution provider actually active."""
        if model.package is None:
            raise NotReady(model.reason)
        _named(model, name)
        return {
            "name": model.name,
            "versions": [model.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": v2.INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "caption", "datatype": "BYTES", "shape": [-1]},
                {"name": "log_probability", "datatype": "FP32", "shape": [-1]},
            ],
            "parameters": {
                "architecture": model.package.architecture,
                "variant": settings.variant,
                "execution_provider": model.provider,
                "requested_providers": settings.provider_order(),
                "max_length": model.max_length,
                "max_beam_size": settings.max_beam_size,
                "default_beam_size": model.default_beam_size,
                "reranks": model.reranker is not None,
            },
        }

    @app.get("/v2/models/{name}/ready", response_model=Ready, responses=ERRORS)
    @app.get("/v2/models/{name}/versions/{version}/ready", response_model=Ready, responses=ERRORS)
    async def model_ready(name: str, model: ModelDep) -> dict[str, bool]:
        """Whether this model answers."""
        if model.package is not None:
            _named(model, name)
        if not model.ready:
            raise NotReady(model.reason)
        return {"ready": True}

    @app.post(
        "/v2/models/{name}/infer",
        response_model=V2InferResponse,
        responses=ERRORS,
        openapi_extra=_infer_openapi(),
    )
    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        response_model=V2InferResponse,
        responses=ERRORS,
        openapi_extra=_infer_openapi(),
    )
    async def infer(name: str, request: Request, model: ModelDep) -> Response:
        """Captions for a BYTES tensor of encoded images (JSON base64 or binary extension)."""
        if not model.ready:
            raise NotReady(model.reason)
        _named(model, name)
        body = await read_body(request, settings.max_body_bytes, settings.request_timeout_seconds)
        call = v2.parse_infer(
            body, request.headers.get(v2.HEADER_LENGTH), settings.max_images_per_request
        )
        options = model.options(call.option("beam_size"), call.option("max_length"))
        with model.admit(len(call.images)) as reservation:
            prepared = [await model.decode(data) for data in call.images]
            results = await model.predict(prepared, options, reservation)
        captions = [model.postprocess(r) for r in results]
        for p, r in zip(prepared, results, strict=True):
            record_stages(tracer, p, r.times)
        request_id = uuid.uuid4().hex
        content, headers, media = v2.infer_response(
            call,
            model.name,
            model.version,
            [c.candidates[0]["caption"] for c in captions],
            [c.candidates[0]["log_probability"] for c in captions],
            {"request_id": request_id, "execution_provider": model.provider},
        )
        headers["X-Request-Id"] = request_id
        return Response(content, media_type=media, headers=headers)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition (contract 4)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

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


def _caption_request(body: bytes) -> CaptionRequest:
    try:
        return CaptionRequest.model_validate(json.loads(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if where in ("beam_size", "max_length", "attention"):
            raise InvalidOptions(f"{where}: {first['msg']}") from exc
        raise BadRequest(f"JSON body: {where or 'body'}: {first['msg']}") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested too deep
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc


def _form_boolean(name: str, value: str | bytes | None) -> bool:
    """A boolean form field read as pydantic reads the same query parameter, or 422.

    Anything else ("null", "maybe") is a client's mistake, not a silent false.
    """
    if value is None:
        return False
    try:
        return _BOOLEAN.validate_python(value)
    except ValidationError as exc:
        raise InvalidOptions(f"{name} must be true or false, got {str(value)[:40]!r}") from exc


_BOOLEAN = TypeAdapter(bool)


def _base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{field} is not valid base64") from exc
