"""``POST /v1/captions``: one image in, ranked captions with timings out.

The API is described in docs/architecture.md, "The HTTP API of the inference service".
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from inference.body import CaptionBody, caption_openapi
from inference.deps import ReadyModel, SettingsDep, TracerDep
from inference.handlers import ERRORS
from inference.model import Caption, Prepared, ServedModel
from inference.schemas import CaptionResponse
from inference.settings import ServeSettings
from inference.spans import record_stages

router = APIRouter()


# The body is parsed before readiness is checked: a malformed request is the client's
# 4xx whether or not the model is ready.
@router.post(
    "/v1/captions",
    response_model=CaptionResponse,
    responses=ERRORS,
    openapi_extra=caption_openapi(),
)
async def captions(
    request: Request,
    upload: CaptionBody,
    model: ReadyModel,
    settings: SettingsDep,
    tracer: TracerDep,
) -> Response:
    """Caption one image: multipart ``image``, JSON ``image_base64``, or a raw image body."""
    options = model.options(upload.options.get("beam_size"), upload.options.get("max_length"))
    with model.admit(1) as reservation:
        prepared = await model.decode(upload.image)
        [result] = await model.predict([prepared], options, reservation)
    caption = model.postprocess(result, upload.attention)
    record_stages(tracer, prepared, result.times)
    request_id = uuid.uuid4().hex
    total = time.perf_counter() - request.state.started
    response = caption_response(request_id, model, settings, prepared, caption, total)
    return JSONResponse(response.model_dump(), headers={"X-Request-Id": request_id})


def caption_response(
    request_id: str,
    model: ServedModel,
    settings: ServeSettings,
    prepared: Prepared,
    caption: Caption,
    total: float,
) -> CaptionResponse:
    """The response body: candidates, model, image, stage timings, attention if asked."""
    times = caption.result.times
    body: dict[str, Any] = {
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
    return CaptionResponse.model_validate(body)
