"""The one table from domain errors to HTTP: status codes, the error body, its handlers.

Exceptions in ``errors.py`` know nothing of HTTP; this module alone says which status
each one answers with, documents those statuses for the OpenAPI document, and turns
every failure (domain, validation, routing) into the one error shape of the HTTP API
(docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
from inference.schemas import ErrorBody

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
# The same statuses as route ``responses=``, so the OpenAPI document lists what is answered.
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
    """The one error body, ``{"error": {"code", "message"}}``, with optional headers."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers or None)


async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
    """A domain error at the status the table gives it (400 if it has none)."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFull) else {}
    if isinstance(exc, BodyTimeout | PayloadTooLarge):
        # The rest of that body may still be on its way: closing the connection stops
        # it, where keep-alive would read (and a trickling client hold) it to the end.
        headers["Connection"] = "close"
    return error_response(STATUS.get(type(exc), 400), exc.code, exc.message, **headers)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's parameter validation, as ``invalid_options`` naming the first field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, InvalidOptions.code, f"{where}: {first.get('msg')}")


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (no such path, wrong method) in the same error shape."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


def add_error_handlers(app: FastAPI) -> None:
    """Answer every failure that reaches ``app`` in the one error shape."""
    app.exception_handler(ServiceError)(service_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(StarletteHTTPException)(http_error)
