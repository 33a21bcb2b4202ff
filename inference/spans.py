"""Stage spans of a request, recorded with the times the stages really ran.

The encoder and decoder run on the scheduler's thread for many requests at
once, so their spans are written after the fact, as children of each request's
span, with the batch they rode in as attributes (``batch.id`` is shared by every
request of one encoder batch).
"""

from __future__ import annotations

from opentelemetry.trace import Tracer

from inference.model import Prepared
from inference.scheduler import StageTimes


def record_stages(tracer: Tracer, prepared: Prepared, times: StageTimes) -> None:
    """Child spans of the current span: decode_image, preprocess, queue, encoder, decoder."""
    queued_ns = times.encoder_start_ns - int(times.queue_wait * 1e9)
    mean_rows = times.decoder_rows / times.decoder_steps if times.decoder_steps else 0.0
    stages: tuple[tuple[str, int, int, dict[str, str | int | float]], ...] = (
        (
            "decode_image",
            prepared.started_ns,
            prepared.decoded_ns,
            {"image.format": prepared.format, "image.bytes": prepared.size_bytes},
        ),
        (
            "preprocess",
            prepared.decoded_ns,
            prepared.done_ns,
            {"image.width": prepared.width, "image.height": prepared.height},
        ),
        ("queue", queued_ns, times.encoder_start_ns, {}),
        (
            "encoder",
            times.encoder_start_ns,
            times.encoder_end_ns,
            {"batch.id": times.batch_id, "batch.size": times.encoder_batch},
        ),
        (
            "decoder",
            times.decoder_start_ns,
            times.decoder_end_ns,
            {"decoder.steps": times.decoder_steps, "decoder.mean_rows": mean_rows},
        ),
    )
    for name, start, end, attributes in stages:
        span = tracer.start_span(name, start_time=start, attributes=attributes)
        span.end(end_time=max(end, start))
