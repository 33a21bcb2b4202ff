"""The Open Inference Protocol (KServe/Triton "V2") infer body, JSON and binary.

Images travel in one ``BYTES`` input named ``image``: in JSON each element is a
base64 string; with the binary tensor data extension (what ``tritonclient``
sends with ``binary_data=True``) the JSON header is followed by raw bytes, each
element a 4-byte little-endian length and its bytes. Captions come back in a
``BYTES`` output ``caption`` and an ``FP32`` output ``log_probability``, in JSON
or, when asked per output or by ``binary_data_output``, as binary.

The wire format only: the routes that use it are ``routes/v2.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from inference.errors import BadRequest
from inference.schemas import V2InferRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT = "image"
OUTPUTS = ("caption", "log_probability")


@dataclass
class InferCall:
    """A validated infer request: the encoded images, and which outputs go back binary."""

    request: V2InferRequest
    images: list[bytes]
    binary_outputs: set[str]

    def option(self, name: str) -> Any:
        """A request parameter (``beam_size``, ``max_length``), or None."""
        return (self.request.parameters or {}).get(name)


def _split_bytes(raw: bytes) -> list[bytes]:
    """Elements of a binary BYTES tensor: 4-byte little-endian length, then the bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest("binary BYTES tensor: an element length is cut off")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise BadRequest("binary BYTES tensor: an element is shorter than its length says")
        items.append(raw[offset : offset + size])
        offset += size
    return items


def pack_bytes(items: list[bytes]) -> bytes:
    """The binary form of a BYTES tensor."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def parse_infer(body: bytes, header_length: str | None, max_images: int) -> InferCall:
    """Validate an infer body and pull out the encoded images.

    Raises:
        BadRequest: anything malformed, with what and where.
    """
    binary = b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError as exc:
            raise BadRequest(f"{HEADER_LENGTH} must be an integer") from exc
        if not 0 < length <= len(body):
            raise BadRequest(f"{HEADER_LENGTH} {length} does not fit the {len(body)}-byte body")
        body, binary = body[:length], body[length:]
    try:
        request = V2InferRequest.model_validate(json.loads(body))
    # JSONDecodeError is a ValueError; a deeply nested body is a RecursionError.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadRequest(f"infer request: {where}: {first['msg']}") from exc
        raise BadRequest(f"infer request is not valid JSON: {exc}") from exc
    images: list[bytes] | None = None
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input {tensor.name!r}: binary_data_size does not fit the body")
            chunk, offset = binary[offset : offset + size], offset + size
        if tensor.name != INPUT:
            raise BadRequest(f"unknown input {tensor.name!r}; this model takes one BYTES {INPUT!r}")
        if tensor.datatype != "BYTES":
            raise BadRequest(f"input {INPUT!r} must be BYTES, got {tensor.datatype}")
        if size is not None:
            images = _split_bytes(chunk)
        else:
            images = _from_json(tensor.data)
        count = int(np.prod(tensor.shape)) if tensor.shape else 0
        if count != len(images):
            raise BadRequest(f"input {INPUT!r} has shape {tensor.shape} but {len(images)} elements")
    if images is None:
        raise BadRequest(f"no input {INPUT!r}")
    if not images:
        raise BadRequest(f"input {INPUT!r} is empty")
    if len(images) > max_images:
        raise BadRequest(f"{len(images)} images in one request; the limit is {max_images}")
    return InferCall(request, images, _binary_outputs(request))


def _from_json(data: list[Any] | None) -> list[bytes]:
    if not isinstance(data, list):
        raise BadRequest(f"input {INPUT!r} has no data")
    flat: list[Any] = []
    for item in data:
        flat.extend(item if isinstance(item, list) else [item])
    images = []
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise BadRequest(f"input {INPUT!r} element {i} must be a base64 string")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(
                f"input {INPUT!r} element {i} is not base64; in JSON, BYTES images are base64 "
                "(or send them with the binary tensor data extension)"
            ) from exc
    return images


def _binary_outputs(request: V2InferRequest) -> set[str]:
    default = bool((request.parameters or {}).get("binary_data_output", False))
    if not request.outputs:
        return set(OUTPUTS) if default else set()
    chosen = set()
    for output in request.outputs:
        if output.name not in OUTPUTS:
            raise BadRequest(f"unknown output {output.name!r}; outputs are {list(OUTPUTS)}")
        if (output.parameters or {}).get("binary_data", default):
            chosen.add(output.name)
    return chosen


def infer_response(
    call: InferCall,
    model_name: str,
    model_version: str,
    captions: list[str],
    log_probs: list[float],
    parameters: dict[str, Any],
) -> tuple[bytes, dict[str, str], str]:
    """The response body, extra headers and media type."""
    wanted = [o.name for o in call.request.outputs] if call.request.outputs else list(OUTPUTS)
    values: dict[str, tuple[str, list[Any], bytes]] = {
        "caption": (
            "BYTES",
            captions,
            pack_bytes([c.encode() for c in captions]),
        ),
        "log_probability": (
            "FP32",
            log_probs,
            np.asarray(log_probs, dtype="<f4").tobytes(),
        ),
    }
    outputs, blobs = [], []
    for name in wanted:
        datatype, data, raw = values[name]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [len(captions)]}
        if name in call.binary_outputs:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = data
        outputs.append(tensor)
    header = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": outputs,
        "parameters": parameters,
    }
    if call.request.id is not None:
        header["id"] = call.request.id
    text = json.dumps(header).encode()
    if not blobs:
        return text, {}, "application/json"
    return text + b"".join(blobs), {HEADER_LENGTH: str(len(text))}, "application/octet-stream"
