"""Request and response bodies as pydantic models for the OpenAPI document.

The API is described in docs/architecture.md, "The HTTP API of the inference service".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: bad_request, too_large, not_an_image, ...")
    message: str = Field(description="what was wrong, fit to show a person")


class ErrorBody(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


class CaptionRequest(BaseModel):
    """JSON form of ``POST /v1/captions`` (the multipart form has the same fields)."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str = Field(description="the encoded image (JPEG, PNG, WebP, BMP, GIF), base64")
    beam_size: int | None = Field(
        None,
        description="1 is greedy; default the package's choice (or CAPTIONER_DEFAULT_BEAM_SIZE)",
    )
    max_length: int | None = Field(None, description="most words; default the model's maximum")
    attention: bool = Field(False, description="return the best caption's attention weights")


class CandidateOut(BaseModel):
    caption: str
    log_probability: float = Field(description="summed log-probability of the words and <end>")
    score: float = Field(description="rank score: log_probability / steps**length_penalty")
    consensus: float | None = Field(
        None,
        description="CIDEr-D against the captions of the nearest training photos, when the "
        "package re-ranks the beam by it (candidates are then ordered by consensus)",
    )


class ModelRef(BaseModel):
    name: str
    version: str
    variant: str
    execution_provider: str


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str
    bytes: int


class Timings(BaseModel):
    """Seconds spent in each stage for this request."""

    decode_image: float
    preprocess: float
    queue: float
    encoder: float
    decoder: float
    total: float
    encoder_batch_size: int = Field(description="images in the encoder batch this one rode in")
    decoder_steps: int


class Attention(BaseModel):
    grid: list[int] = Field(description="[rows, columns] of the image regions")
    weights: list[list[float]] = Field(
        description="per word of the best caption, one weight per region"
    )


class CaptionResponse(BaseModel):
    request_id: str
    caption: str = Field(description="the best candidate")
    candidates: list[CandidateOut] = Field(description="best first")
    model: ModelRef
    image: ImageInfo
    timings: Timings
    attention: Attention | None = None


class V2Tensor(BaseModel):
    """A tensor of the Open Inference Protocol (JSON form)."""

    model_config = ConfigDict(extra="allow")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2RequestedOutput] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2Tensor]


class V2TensorMeta(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMeta]
    outputs: list[V2TensorMeta]
    parameters: dict[str, Any] = Field(
        description="architecture, variant and the execution provider actually active"
    )


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: Literal[True] = True


class Ready(BaseModel):
    ready: bool
