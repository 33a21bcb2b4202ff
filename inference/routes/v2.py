"""The Open Inference Protocol (KServe/Triton "V2"): health, metadata and ``infer``.

The wire format of an infer body, JSON or binary, is ``inference/v2_body.py``'s.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from captioner import __version__
from inference import v2_body
from inference.body import read_body
from inference.deps import KnownName, LoadedModel, ReadyModel, SettingsDep, TracerDep
from inference.handlers import ERRORS
from inference.schemas import (
    Live,
    Ready,
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    V2ServerMetadata,
)
from inference.spans import record_stages

router = APIRouter()


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


@router.get("/v2", response_model=V2ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    """Server metadata (Open Inference Protocol)."""
    return {"name": "captioner", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live", response_model=Live)
async def live() -> dict[str, bool]:
    """Live whenever the process answers."""
    return {"live": True}


@router.get("/v2/health/ready", response_model=Ready, responses={503: ERRORS[503]})
async def ready(model: ReadyModel) -> dict[str, bool]:
    """Ready once the model is loaded and warmed up; 503 with the reason otherwise."""
    return {"ready": True}


@router.get("/v2/models/{name}", response_model=V2ModelMetadata, responses=ERRORS)
@router.get(
    "/v2/models/{name}/versions/{version}",
    response_model=V2ModelMetadata,
    responses=ERRORS,
)
async def model_metadata(
    model: LoadedModel, name: KnownName, settings: SettingsDep
) -> dict[str, Any]:
    """Model metadata, with the execution provider actually active."""
    assert model.package is not None  # LoadedModel
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": v2_body.INPUT, "datatype": "BYTES", "shape": [-1]}],
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


# The name is checked first: a wrong name is a 404 even while the model is not ready.
@router.get("/v2/models/{name}/ready", response_model=Ready, responses=ERRORS)
@router.get("/v2/models/{name}/versions/{version}/ready", response_model=Ready, responses=ERRORS)
async def model_ready(name: KnownName, model: ReadyModel) -> dict[str, bool]:
    """Whether this model answers."""
    return {"ready": True}


@router.post(
    "/v2/models/{name}/infer",
    response_model=V2InferResponse,
    responses=ERRORS,
    openapi_extra=_infer_openapi(),
)
@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    response_model=V2InferResponse,
    responses=ERRORS,
    openapi_extra=_infer_openapi(),
)
async def infer(
    request: Request,
    model: ReadyModel,
    name: KnownName,
    settings: SettingsDep,
    tracer: TracerDep,
) -> Response:
    """Captions for a BYTES tensor of encoded images (JSON base64 or binary extension)."""
    body = await read_body(request, settings.max_body_bytes, settings.request_timeout_seconds)
    call = v2_body.parse_infer(
        body, request.headers.get(v2_body.HEADER_LENGTH), settings.max_images_per_request
    )
    options = model.options(call.option("beam_size"), call.option("max_length"))
    with model.admit(len(call.images)) as reservation:
        prepared = [await model.decode(data) for data in call.images]
        results = await model.predict(prepared, options, reservation)
    captions = [model.postprocess(r) for r in results]
    for p, r in zip(prepared, results, strict=True):
        record_stages(tracer, p, r.times)
    request_id = uuid.uuid4().hex
    content, headers, media = v2_body.infer_response(
        call,
        model.name,
        model.version,
        [c.candidates[0]["caption"] for c in captions],
        [c.candidates[0]["log_probability"] for c in captions],
        {"request_id": request_id, "execution_provider": model.provider},
    )
    headers["X-Request-Id"] = request_id
    return Response(content, media_type=media, headers=headers)
