"""Request bodies: read within limits, and the three forms of ``POST /v1/captions``.

A caption request carries its image as a multipart ``image`` file, as
``image_base64`` in a JSON body, or as the raw body with an ``image/*`` type; options
come from the query string or the body. :data:`CaptionBody` parses any of the three
into one :class:`CaptionInput`, and :func:`caption_openapi` documents the same forms.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import TypeAdapter, ValidationError
from starlette.formparsers import MultiPartException, MultiPartParser

from inference.deps import SettingsDep
from inference.errors import BadRequest, BodyTimeout, InvalidOptions, NotAnImage, PayloadTooLarge
from inference.schemas import CaptionRequest


async def read_body(request: Request, limit: int, deadline: float) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes or ``deadline`` seconds.

    uvicorn has no timeout of its own for a body that trickles in, so a client sending
    a byte now and then (slowloris) would hold its connection and buffer for ever.

    Raises:
        PayloadTooLarge: declared or streamed over ``limit`` bytes.
        BodyTimeout: not all there after ``deadline`` seconds.
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
    """Form fields of a multipart body; a file field's value is its bytes.

    Raises:
        BadRequest: a malformed body, or a field given more than once.
    """

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


def caption_openapi() -> dict[str, Any]:
    """The request body of ``POST /v1/captions`` for the OpenAPI document."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": CAPTION_FORM},
                "application/json": {"schema": CaptionRequest.model_json_schema()},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


@dataclass
class CaptionInput:
    """One caption request, whichever form it came in.

    ``options`` holds ``beam_size`` and ``max_length`` as given (``None`` when not),
    for the model to validate against its own limits.
    """

    image: bytes
    options: dict[str, Any]
    attention: bool


async def caption_input(
    request: Request,
    settings: SettingsDep,
    beam_size: Annotated[int | None, Query(ge=1)] = None,
    max_length: Annotated[int | None, Query(ge=1)] = None,
    attention: bool = False,
) -> CaptionInput:
    """The image and options of a caption request, body options over query ones.

    Raises:
        PayloadTooLarge, BodyTimeout: the body is over its limits.
        BadRequest: a malformed form or JSON body, or no image in it.
        NotAnImage: a content type that is none of the three forms.
        InvalidOptions: an option in the body of the wrong type.
    """
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
        options.update(parsed.model_dump(include={"beam_size", "max_length"}, exclude_none=True))
        attention = attention or parsed.attention
    elif kind.startswith("image/"):
        data = body
    else:
        raise NotAnImage(
            f"content type {kind or 'missing'!r}: send multipart/form-data with an 'image' "
            "file, application/json with 'image_base64', or the image itself as image/*"
        )
    return CaptionInput(data, options, attention)


CaptionBody = Annotated[CaptionInput, Depends(caption_input)]


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
