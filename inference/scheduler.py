"""Dynamic batching: images that arrive together are encoded together, and every
hypothesis in flight, across requests and beams, advances in one decoder step.

One worker thread owns the ONNX Runtime sessions (they release the GIL while
they compute). Between decoder steps it admits new images: an encoder batch
starts when ``max_batch_size`` images wait or the first has waited
``max_queue_delay``; when decodes are already running, waiting images join at
the next step without delay (continuous batching). The queue is bounded and
every image has a deadline.

Written here rather than taken from a library because the batching is across
decoder *steps* with state per hypothesis; general request batchers (Triton's
dynamic batcher, Ray Serve's ``@serve.batch``) batch whole calls.

One concern, so over 300 lines: admission, batching and stepping share one lock and one
thread, and splitting them would spread that lock's invariants over modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from captioner.decoding import BatchStepper, Candidate, DecodeOptions, Search, new_search
from captioner.runtime import OnnxCaptioner
from inference.errors import DeadlineExceeded, NotReady, QueueFull
from inference.metrics import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """What happened to one image inside the scheduler (wall clock in ns for spans)."""

    queue_wait: float = 0.0
    encoder_start_ns: int = 0
    encoder_end_ns: int = 0
    encoder_batch: int = 0
    batch_id: int = 0
    decoder_start_ns: int = 0
    decoder_end_ns: int = 0
    decoder_steps: int = 0
    decoder_rows: int = 0  # summed over steps: mean batch rows = rows / steps

    @property
    def encoder(self) -> float:
        return (self.encoder_end_ns - self.encoder_start_ns) / 1e9

    @property
    def decoder(self) -> float:
        return (self.decoder_end_ns - self.decoder_start_ns) / 1e9


@dataclass
class Result:
    candidates: list[Candidate]
    times: StageTimes
    feature: np.ndarray | None = field(default=None, repr=False)  # the image's encoder row


@dataclass
class _Job:
    image: np.ndarray
    options: DecodeOptions
    deadline: float
    future: Future[Result]
    enqueued: float = field(default_factory=time.monotonic)
    times: StageTimes = field(default_factory=StageTimes)
    search: Search | None = None


class Reservation:
    """Places in the queue held for images still being decoded (:meth:`Scheduler.reserve`).

    As a context manager, gives back on exit the places that were not submitted.
    """

    def __init__(self, scheduler: Scheduler, images: int):
        self.scheduler = scheduler
        self.left = images

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.scheduler.release(self)


class Scheduler:
    """Admits images, batches the encoder and the decoder steps, resolves futures.

    Args:
        runtime: the ONNX sessions.
        start_id, end_id: the vocabulary's special tokens.
        max_batch_size: most images per encoder batch.
        max_queue_delay: seconds the first waiting image waits for company.
        max_decode_rows: most hypotheses per decoder step.
        max_queue: most images admitted (waiting plus decoding); beyond, QueueFull.
        join_per_step: most images encoded between two decoder steps while captions
            are decoding (0: up to ``max_batch_size``).
        retry_after: seconds suggested to refused clients.
        metrics: where batch sizes, queue wait and depth are recorded.
    """

    def __init__(
        self,
        runtime: OnnxCaptioner,
        start_id: int,
        end_id: int,
        *,
        max_batch_size: int,
        max_queue_delay: float,
        max_decode_rows: int,
        max_queue: int,
        retry_after: int,
        metrics: ServiceMetrics,
        join_per_step: int = 0,
    ):
        self.runtime = runtime
        self.start_id, self.end_id = start_id, end_id
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.max_decode_rows = max_decode_rows
        self.max_queue = max_queue
        self.join_per_step = join_per_step
        self.retry_after = retry_after
        self.metrics = metrics
        self._reserved = 0  # places held for images still being decoded
        self._pending: deque[_Job] = deque()
        self._encoding: list[_Job] = []  # taken from _pending, not yet in _active
        self._active: list[_Job] = []
        self._cond = threading.Condition()
        self._closing = False
        self._batches = 0
        self._stepper = BatchStepper(runtime)
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Images admitted and not yet answered: reserved (their bytes still being decoded),
        waiting, being encoded, or decoding."""
        return self._reserved + len(self._pending) + len(self._encoding) + len(self._active)

    def reserve(self, images: int) -> Reservation:
        """Hold room for ``images`` before they are decoded, so that a refusal costs nothing.

        Room is taken under the lock, so concurrent requests cannot all see the last free
        place and decode only to be refused at :meth:`submit`. Give back what was not
        submitted with :meth:`release` (``Reservation`` is a context manager that does).

        Raises:
            QueueFull: fewer than ``images`` places are free.
            NotReady: the scheduler is draining.
        """
        with self._cond:
            self._refuse_if_closing()
            self._check_room(images)
            self._reserved += images
        self.metrics.queue_depth.inc(images)
        return Reservation(self, images)

    def release(self, reservation: Reservation) -> None:
        """Give back the places of a reservation that were not submitted."""
        with self._cond:
            unused, reservation.left = reservation.left, 0
            self._reserved -= unused
        if unused:
            self.metrics.queue_depth.dec(unused)

    def submit(
        self,
        image: np.ndarray,
        options: DecodeOptions,
        timeout: float,
        reservation: Reservation | None = None,
    ) -> Future[Result]:
        """Queue one preprocessed image; the future resolves with its ranked candidates.

        With a ``reservation`` that has a place left, the image takes that place; without
        one, it needs a free place now.

        Raises:
            QueueFull: ``max_queue`` images are already admitted.
            NotReady: the scheduler is draining.
        """
        job = _Job(image, options, time.monotonic() + timeout, Future())
        with self._cond:
            self._refuse_if_closing()
            if reservation is not None and reservation.left > 0:
                reservation.left -= 1
                self._reserved -= 1
            else:
                self._check_room(1)
                self.metrics.queue_depth.inc()
            self._pending.append(job)
            self._cond.notify()
        return job.future

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise NotReady("the service is shutting down")

    def _check_room(self, images: int) -> None:
        """Under the lock: refuse unless ``images`` more fit in the queue."""
        self._purge()
        if self.depth + images > self.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(
                f"the queue is full ({self.max_queue} images in flight); retry later",
                self.retry_after,
            )

    def stop(self, timeout: float) -> bool:
        """Refuse new images, finish every admitted one, stop; False if time ran out."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._active:
                    if self._closing:
                        return
                    self._cond.wait()
                if not self._active:
                    self._gather()
                admitted = self._admit()
                self._encoding = admitted
            try:
                if admitted:
                    self._encode(admitted)
                if self._active:
                    self._step()
            except Exception as exc:  # a failing session must not strand waiting clients
                log.exception("model call failed")
                failed = self._active + [j for j in admitted if j not in self._active]
                for job in failed:
                    self._finish(job, exc)
                with self._cond:
                    self._active, self._encoding = [], []

    def _purge(self) -> None:
        """Forget waiting images whose clients gave up or whose deadline passed."""
        now = time.monotonic()
        for job in [j for j in self._pending if j.future.done() or now >= j.deadline]:
            self._pending.remove(job)
            if job.future.done():
                self._finish(job, None)
            else:
                self.metrics.rejected.labels("deadline").inc()
                self._finish(job, DeadlineExceeded("the request waited past its deadline"))

    def _gather(self) -> None:
        """Idle: let the oldest image wait up to ``max_queue_delay`` for a fuller batch.

        Images whose deadline passes meanwhile are answered and the window goes on
        for the others.
        """
        while not self._closing:
            self._purge()
            if not self._pending or len(self._pending) >= self.max_batch_size:
                return
            window_end = self._pending[0].enqueued + self.max_queue_delay
            first_deadline = min(job.deadline for job in self._pending)
            now = time.monotonic()
            if now >= window_end:
                return
            if now < first_deadline:  # else: loop, and _purge answers the expired one
                self._cond.wait(min(window_end, first_deadline) - now)

    def _admit(self) -> list[_Job]:
        """Take waiting images up to the batch size and the decoder row budget.

        While captions are decoding, at most ``join_per_step`` images (one encoder run's
        worth) join between two steps: a full batch of 16 would pause every
        caption in progress for 16 encodings, and under a steady stream of arrivals the
        captions already started would hardly step (p99 5 s at 64 clients, was 2 s).
        """
        room = self.max_decode_rows - sum(j.search.rows for j in self._active if j.search)
        taken: list[_Job] = []
        now = time.monotonic()
        most = self.max_batch_size
        if self._active and self.join_per_step:
            most = min(most, self.join_per_step)
        while self._pending and len(taken) < most:
            job = self._pending[0]
            if job.future.done():  # the client gave up (cancelled)
                self._pending.popleft()
                self._finish(job, None)
                continue
            if now >= job.deadline:
                self._pending.popleft()
                self.metrics.rejected.labels("deadline").inc()
                self._finish(job, DeadlineExceeded("the request waited past its deadline"))
                continue
            if job.options.beam_size > room and (taken or self._active):
                break
            self._pending.popleft()
            room -= job.options.beam_size
            job.times.queue_wait = now - job.enqueued
            self.metrics.queue_wait.observe(job.times.queue_wait)
            taken.append(job)
        return taken

    def _encode(self, jobs: list[_Job]) -> None:
        self._batches += 1
        start = time.time_ns()
        features, state = self.runtime.encode(np.stack([j.image for j in jobs]))
        end = time.time_ns()
        self.metrics.batch_size.labels("encoder").observe(len(jobs))
        for i, job in enumerate(jobs):
            job.times.encoder_start_ns, job.times.encoder_end_ns = start, end
            job.times.encoder_batch, job.times.batch_id = len(jobs), self._batches
            job.times.decoder_start_ns = end
            job.search = new_search(
                features[i : i + 1],
                [s[i : i + 1] for s in state],
                self.start_id,
                self.end_id,
                job.options,
            )
        with self._cond:
            self._active.extend(jobs)
            self._encoding = []

    def _step(self) -> None:
        rows = self._stepper.step([j.search for j in self._active if j.search])
        self.metrics.batch_size.labels("decoder").observe(rows)
        now, still = time.monotonic(), []
        for job in self._active:
            assert job.search is not None
            job.times.decoder_steps += 1
            job.times.decoder_rows += rows
            if job.search.done:
                job.times.decoder_end_ns = time.time_ns()
                self._finish(job, Result(job.search.result(), job.times, job.search.feature))
            elif now > job.deadline or job.future.done():
                self.metrics.rejected.labels("deadline").inc()
                self._finish(job, DeadlineExceeded("the caption was not ready within the deadline"))
            else:
                still.append(job)
        self._active = still

    def _finish(self, job: _Job, outcome: Result | BaseException | None) -> None:
        self.metrics.queue_depth.dec()
        if outcome is None or job.future.done():
            return
        try:
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        except InvalidStateError:  # cancelled by the client between the check and now
            pass
