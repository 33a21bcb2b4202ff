"""The served model's life cycle: load, warm up, ready; preprocess, predict, postprocess.

Shaped like KServe's ``Model``: ``load()`` opens the package and the ONNX
sessions, warms them up and only then reports ready; each request goes through
preprocess (decode and scale the image), predict (the scheduler's batches) and
postprocess (words and scores), each stage timed.

One class and one concern, so over 300 lines: each stage keeps its error mapping and
its metrics beside it, and the readiness the stages share is this object's lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from captioner.consensus import ConsensusReranker
from captioner.decoding import Candidate, DecodeOptions
from captioner.images import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    preprocess,
    read_image,
)
from captioner.package import FEATURES, Decoding, Package, PackageError, open_package
from captioner.runtime import OnnxCaptioner
from inference.errors import (
    BadRequest,
    DeadlineExceeded,
    InvalidOptions,
    NotAnImage,
    NotReady,
    PayloadTooLarge,
    Undecodable,
)
from inference.metrics import ServiceMetrics
from inference.scheduler import Reservation, Result, Scheduler
from inference.settings import ServeSettings

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass
class Prepared:
    """One decoded and preprocessed image, with what the response reports about it."""

    pixels: np.ndarray
    width: int
    height: int
    format: str
    size_bytes: int
    started_ns: int
    decoded_ns: int
    done_ns: int

    @property
    def decode_seconds(self) -> float:
        return (self.decoded_ns - self.started_ns) / 1e9

    @property
    def preprocess_seconds(self) -> float:
        return (self.done_ns - self.decoded_ns) / 1e9


@dataclass
class Caption:
    """A finished caption: ranked candidates as text, and what it cost."""

    candidates: list[dict[str, Any]]
    attention: list[list[float]] | None
    result: Result


class ServedModel:
    """A model package behind the scheduler. Thread-safe; one per process."""

    def __init__(self, settings: ServeSettings, metrics: ServiceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.package: Package | None = None
        self.runtime: OnnxCaptioner | None = None
        self.scheduler: Scheduler | None = None
        self.ready = False
        self.reason = "the model is loading"
        self._lock = threading.Lock()
        # Images are decoded on a few threads of their own, not the request thread pool
        # (40 threads): there, as many images at the pixel limit could be decoded at once,
        # each holding its RGB(A) copies, and every thread's malloc arena would keep the
        # memory it once held. A fixed few threads bound both.
        self._decoders = ThreadPoolExecutor(
            settings.decode_concurrency, thread_name_prefix="decode-image"
        )

    @property
    def name(self) -> str:
        if self.settings.model_name:
            return self.settings.model_name
        return self.package.name if self.package else "captioner"

    @property
    def version(self) -> str:
        return self.package.version if self.package else ""

    @property
    def provider(self) -> str:
        return self.runtime.provider if self.runtime else ""

    def load(self) -> None:
        """Open the package, start sessions, warm up, then become ready; never raises.

        A failure leaves the service live but not ready, with the reason in the
        readiness answer and in the log.
        """
        settings = self.settings
        try:
            started = time.perf_counter()
            package = open_package(settings.model_dir)
            if settings.variant not in package.variants():
                raise PackageError(
                    f"the package has no {settings.variant} variant (it has {package.variants()})"
                )
            runtime = OnnxCaptioner(
                package,
                settings.variant,
                providers=settings.provider_order(),
                threads=settings.intra_op_threads,
                inter_op_threads=settings.inter_op_threads,
                optimization=settings.graph_optimization,
                spinning=settings.thread_spinning,
                encoder_chunk=settings.encoder_chunk,
            )
            self.package, self.runtime = package, runtime
            requested = settings.provider_order()[0]
            self.metrics.model_info.labels(
                self.name, self.version, settings.variant, package.architecture,
                runtime.provider, requested,
            ).set(1)  # fmt: skip
            self.metrics.provider_fallback.set(int(runtime.provider != requested))
            log.info(
                "model %s version %s (%s, %s) on execution provider %s; requested %s",
                self.name, self.version, package.architecture, settings.variant,
                runtime.provider, settings.provider_order(),
            )  # fmt: skip
            if settings.require_gpu and runtime.provider not in GPU_PROVIDERS:
                raise PackageError(
                    f"require_gpu is set but the active execution provider is {runtime.provider}"
                    f" (available here: {runtime.providers})"
                )
            self._warm_up(runtime, package)
            scheduler = Scheduler(
                runtime,
                package.vocab.start_id,
                package.vocab.end_id,
                max_batch_size=settings.max_batch_size,
                max_queue_delay=settings.max_queue_delay_ms / 1000,
                max_decode_rows=settings.max_decode_rows,
                max_queue=settings.max_queue,
                retry_after=settings.retry_after_seconds,
                metrics=self.metrics,
                join_per_step=settings.encoder_chunk,
            )
            scheduler.start()
            self.metrics.queue_capacity.set(settings.max_queue)
            with self._lock:
                self.scheduler = scheduler
                self.ready, self.reason = True, ""
            self.metrics.model_ready.set(1)
            log.info("ready after %.2f s (loaded and warmed up)", time.perf_counter() - started)
        except Exception as exc:  # any load failure is a readiness answer, not a crash
            with self._lock:
                self.ready, self.reason = False, f"the model failed to load: {exc}"
            self.metrics.model_ready.set(0)
            log.error("not ready: %s", self.reason)

    def _warm_up(self, runtime: OnnxCaptioner, package: Package) -> None:
        """Run every batch shape class once, so the first client does not pay for it."""
        spec = package.preprocessing()
        for batch in sorted({1, min(self.settings.max_batch_size, 8)}):
            images = np.zeros((batch, spec.height, spec.width, 3), np.float32)
            beam = min(2, self.settings.max_beam_size)
            runtime.caption(images, DecodeOptions(beam_size=beam, max_length=3))

    def close(self, timeout: float) -> None:
        """Stop admitting, finish what is in flight (up to ``timeout`` seconds)."""
        with self._lock:
            self.ready, self.reason = False, "the service is shutting down"
            scheduler = self.scheduler
        self.metrics.model_ready.set(0)
        self._decoders.shutdown(wait=False, cancel_futures=True)
        if scheduler and not scheduler.stop(timeout):
            log.warning("stopped with images still in flight after %.0f s", timeout)

    def options(self, beam_size: Any = None, max_length: Any = None) -> DecodeOptions:
        """Validated search options; ``None`` takes the defaults.

        Raises:
            InvalidOptions: a value of the wrong type or out of range.
        """
        limit = self.max_length
        chosen = self.package.decoding() if self.package else Decoding()
        beam = _integer("beam_size", beam_size, self.default_beam_size)
        length = _integer("max_length", max_length, limit)
        if not 1 <= beam <= self.settings.max_beam_size:
            raise InvalidOptions(f"beam_size must be 1..{self.settings.max_beam_size}, got {beam}")
        if not 1 <= length <= limit:
            raise InvalidOptions(f"max_length must be 1..{limit}, got {length}")
        return DecodeOptions(beam, length, chosen.length_penalty)

    @property
    def default_beam_size(self) -> int:
        """The setting, else the package's choice (capped by ``max_beam_size``), else 1."""
        if self.settings.default_beam_size is not None:
            return self.settings.default_beam_size
        chosen = self.package.decoding().beam_size if self.package else 1
        return min(chosen, self.settings.max_beam_size)

    @property
    def max_length(self) -> int:
        if self.settings.max_length:
            return self.settings.max_length
        return self.package.vocab.max_length if self.package else 20

    def admit(self, images: int = 1) -> Reservation:
        """Hold places for ``images`` in the queue before any of them is decoded.

        Under overload most requests are refused: decoding their images first would
        spend on them the CPU the admitted ones need. Use it as a context manager around
        decoding and :meth:`predict`; on exit the places not used are given back.

        Raises:
            NotReady: the model is not loaded, or the service is shutting down.
            QueueFull: fewer than ``images`` places are free (``max_queue``).
        """
        with self._lock:
            if not self.ready or self.scheduler is None:
                raise NotReady(self.reason)
            scheduler = self.scheduler
        return scheduler.reserve(images)

    async def decode(self, data: bytes) -> Prepared:
        """:meth:`prepare` on one of the ``decode_concurrency`` image decoding threads."""
        return await asyncio.wrap_future(self._decoders.submit(self.prepare, data))

    def prepare(self, data: bytes) -> Prepared:
        """Decode and preprocess one image; client mistakes become 4xx errors."""
        if self.package is None:
            raise NotReady(self.reason)
        started = time.time_ns()
        try:
            image, kind = read_image(
                data, self.settings.max_image_bytes, self.settings.max_image_pixels
            )
        except EmptyImage as exc:
            raise BadRequest(str(exc)) from exc
        except ImageTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except UnsupportedImage as exc:
            raise NotAnImage(str(exc)) from exc
        except (CorruptImage, ImageError) as exc:
            raise Undecodable(str(exc)) from exc
        decoded = time.time_ns()
        pixels = preprocess(image, self.package.preprocessing())
        width, height = image.size
        del image  # only the small encoder input outlives the call
        prepared = Prepared(
            pixels, width, height, kind, len(data), started, decoded, time.time_ns()
        )
        self.metrics.image_bytes.observe(len(data))
        self.metrics.image_pixels.observe(width * height)
        self.metrics.stage_duration.labels("decode_image").observe(prepared.decode_seconds)
        self.metrics.stage_duration.labels("preprocess").observe(prepared.preprocess_seconds)
        return prepared

    async def predict(
        self,
        images: list[Prepared],
        options: DecodeOptions,
        reservation: Reservation | None = None,
    ) -> list[Result]:
        """Captions for already prepared images, through the shared batches.

        With the ``reservation`` from :meth:`admit`, the images take the places held for
        them; without one, they need free places now.
        """
        with self._lock:
            if not self.ready or self.scheduler is None:
                raise NotReady(self.reason)
            scheduler = self.scheduler
        timeout = self.settings.request_timeout_seconds
        futures: list[Future[Result]] = []
        try:
            # All or nothing: if the queue fills midway, the finally clause withdraws
            # the images already queued.
            for prepared in images:
                futures.append(scheduler.submit(prepared.pixels, options, timeout, reservation))
            # A little past the deadline: the scheduler itself answers DeadlineExceeded.
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), timeout + 1.0
            )
        except TimeoutError as exc:
            raise DeadlineExceeded("the caption was not ready within the deadline") from exc
        finally:
            for future in futures:
                future.cancel()
        if self.reranker is not None and options.beam_size > 1:
            # Off the event loop and off the scheduler's thread, which steps every decoder.
            await asyncio.wrap_future(self._decoders.submit(self._rerank, results))
        return results

    @property
    def reranker(self) -> ConsensusReranker | None:
        """The package's consensus reranker when the settings let it re-rank."""
        if not self.settings.rerank or self.runtime is None:
            return None
        return self.runtime.reranker

    def _rerank(self, results: list[Result]) -> None:
        reranker, vocab = self.reranker, self.package.vocab if self.package else None
        if reranker is None or vocab is None:
            return
        for result in results:
            if result.feature is not None:
                result.candidates = reranker.rerank(result.feature, result.candidates, vocab)

    def postprocess(self, result: Result, attention: bool = False) -> Caption:
        """Words, scores and (for attention models, when asked) the best caption's weights."""
        assert self.package is not None
        vocab = self.package.vocab
        candidates = [
            {
                "caption": vocab.decode(c.tokens),
                "log_probability": round(c.log_prob, 6),
                "score": round(c.score, 6),
                **({} if c.consensus is None else {"consensus": round(c.consensus, 6)}),
            }
            for c in result.candidates
        ]
        best: Candidate = result.candidates[0]
        self.metrics.caption_length.observe(len(best.tokens))
        self.metrics.caption_log_prob.observe(best.log_prob)
        times = result.times
        self.metrics.stage_duration.labels("encoder").observe(times.encoder)
        self.metrics.stage_duration.labels("decoder").observe(times.decoder)
        weights = None
        if attention and best.attention:
            weights = [np.round(a.astype(np.float64), 5).tolist() for a in best.attention]
        return Caption(candidates, weights, result)

    def attention_grid(self) -> list[int] | None:
        """[rows, columns] of the attention grid, or None for merge models."""
        if self.package is None or self.package.architecture != "attention":
            return None
        positions = int(self.package.manifest.encoder.shape(FEATURES)[1] or 0)
        side = math.isqrt(positions)
        return [side, side] if side * side == positions else [1, positions]


def _integer(name: str, value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidOptions(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise InvalidOptions(f"{name} must be an integer, got {str(value)[:40]!r}")
