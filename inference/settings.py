"""Service settings: typed, read once from ``CAPTIONER_*`` variables at the entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20


class ServeSettings(BaseSettings):
    """Everything the inference service reads from its environment (mirrored in Helm values).

    Attributes are documented by their ``description``; ``captioner serve --help``
    and docs/inference.md list them with their variable names.
    """

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_", extra="ignore")

    model_dir: Path = Field(
        default=Path("runs/demo/package"), description="model package dir or .tar.gz"
    )
    model_name: str | None = Field(
        default=None, description="name served under /v2/models (default: the package's)"
    )
    variant: Literal["fp32", "fp16", "int8"] = Field(
        default="fp32", description="package precision variant"
    )
    providers: list[str] = Field(
        default=["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference",
    )
    tensorrt: bool = Field(
        default=False, description="try TensorrtExecutionProvider before the others"
    )
    require_gpu: bool = Field(
        default=False, description="not ready unless CUDA (or TensorRT) is active"
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads (0: auto)"
    )
    inter_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime inter-op threads (0: auto)"
    )
    thread_spinning: bool = Field(
        default=False,
        description="let idle ONNX Runtime threads spin (off: they yield the cores to the next "
        "stage)",
    )
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"

    host: str = Field(default="127.0.0.1", description="listen address (0.0.0.0 in a container)")
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    drain_seconds: float = Field(
        default=30.0, gt=0, description="SIGTERM: how long to finish in-flight work"
    )
    cors_origins: list[str] = Field(
        default=[], description="CORS allowed origins; empty turns CORS off"
    )
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    max_batch_size: int = Field(
        default=16, ge=1, le=1024, description="most images per encoder batch"
    )
    max_queue_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="how long an image arriving at an idle service waits for others to batch "
        "with (under load, images batch anyway while the encoder is busy)",
    )
    encoder_chunk: int = Field(
        default=4,
        ge=0,
        description="most images per encoder run: a larger batch is encoded in parts, so that "
        "ONNX Runtime's memory arena keeps only what this many need (0: no limit)",
    )
    max_decode_rows: int = Field(
        default=512, ge=1, description="most hypotheses (requests x beams) in one decoder step"
    )
    max_queue: int = Field(
        default=64, ge=1, description="most images waiting or in flight; beyond it, 429"
    )
    retry_after_seconds: int = Field(default=1, ge=1, description="Retry-After sent with 429")
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="deadline of one request"
    )

    max_body_bytes: int = Field(default=16 * MiB, ge=1024, description="largest request body")
    max_image_bytes: int = Field(default=10 * MiB, ge=1024, description="largest encoded image")
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, le=178_000_000, description="largest image in pixels (bomb guard)"
    )
    decode_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="most images decoded at once (each may take about 17 bytes per pixel "
        "allowed by MAX_IMAGE_PIXELS, so this bounds the memory hostile images can claim)",
    )
    max_images_per_request: int = Field(
        default=16, ge=1, description="V2 infer: images in one request"
    )
    max_beam_size: int = Field(default=8, ge=1, le=64)
    default_beam_size: int | None = Field(
        default=None, ge=1, description="default: the beam size the package chose on validation"
    )
    rerank: bool = Field(
        default=True,
        description="re-rank the beam by consensus with the nearest training photos, when the "
        "package carries them and chose it on validation",
    )
    max_length: int | None = Field(
        default=None, ge=1, description="longest caption allowed (default: the package's)"
    )

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one execution provider is needed")
        for name in value:
            if not name.endswith("ExecutionProvider"):
                raise ValueError(f"{name!r} is not an ONNX Runtime execution provider name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.default_beam_size is not None and self.default_beam_size > self.max_beam_size:
            raise ValueError("default_beam_size cannot exceed max_beam_size")
        if self.max_image_bytes > self.max_body_bytes:
            raise ValueError("max_image_bytes cannot exceed max_body_bytes")
        return self

    def provider_order(self) -> list[str]:
        """The providers to ask ONNX Runtime for, TensorRT first when enabled."""
        order = list(self.providers)
        if self.tensorrt and "TensorrtExecutionProvider" not in order:
            order.insert(0, "TensorrtExecutionProvider")
        return order

    def to_env(self) -> dict[str, str]:
        """These settings as ``CAPTIONER_*`` variables, for worker processes."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            env[f"CAPTIONER_{name.upper()}"] = text
        return env
