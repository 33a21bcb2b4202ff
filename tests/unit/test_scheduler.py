"""The scheduler's batching with a toy model: same answers as decoding alone, bounded queue."""

import time

import numpy as np
import pytest

from captioner.decoding import DecodeOptions, decode
from inference.errors import NotReady, QueueFull
from inference.metrics import ServiceMetrics
from inference.scheduler import Scheduler
from tests.helpers import MarkovStep, metric_value

END = 2


class ToyRuntime(MarkovStep):
    """MarkovStep plus an encoder: the image's index is written in its first pixel."""

    def __init__(self):
        super().__init__(vocab_size=8, images=6, seed=5)
        self.batches: list[int] = []

    def encode(self, images):
        self.batches.append(len(images))
        index = images[:, 0, 0, :1]
        return index, [index[:, 0].astype(np.int64)]


def pixels(index):
    return np.full((2, 2, 3), index, np.float32)


def scheduler(runtime, metrics, **overrides):
    settings = {
        "max_batch_size": 8,
        "max_queue_delay": 0.2,
        "max_decode_rows": 64,
        "max_queue": 16,
        "retry_after": 2,
    } | overrides
    return Scheduler(runtime, 1, END, metrics=metrics, **settings)


def test_batched_answers_equal_decoding_each_image_alone():
    runtime, metrics = ToyRuntime(), ServiceMetrics()
    plans = [DecodeOptions(beam_size=1 + i % 3, max_length=4 + i % 2) for i in range(6)]
    work = scheduler(runtime, metrics)
    work.start()
    futures = [work.submit(pixels(i), plans[i], timeout=10) for i in range(6)]
    results = [f.result(10) for f in futures]
    assert work.stop(5)
    for i, result in enumerate(results):
        alone = decode(runtime, np.array([[i]], np.float32), [np.array([i])], 1, END, plans[i])[0]
        assert [c.tokens for c in result.candidates] == [c.tokens for c in alone]
        assert result.times.decoder_steps >= 1 and result.times.queue_wait >= 0
    # All six arrived within the batch window: one encoder batch.
    assert runtime.batches == [6]
    assert {r.times.batch_id for r in results} == {1}
    text = metrics.exposition().decode()
    assert metric_value(text, "captioner_batch_size_count", stage="encoder") == 1
    assert metric_value(text, "captioner_queue_depth") == 0


def test_decoder_rows_respect_the_budget():
    runtime, metrics = ToyRuntime(), ServiceMetrics()
    work = scheduler(runtime, metrics, max_decode_rows=4, max_queue_delay=0.05)
    work.start()
    futures = [work.submit(pixels(i), DecodeOptions(beam_size=3), timeout=10) for i in range(4)]
    for future in futures:
        future.result(10)
    work.stop(5)
    # Four 3-beam searches never fit 4 rows together, so encoder batches stay small.
    assert max(runtime.batches) <= 2 and sum(runtime.batches) == 4


def test_while_captions_decode_only_join_per_step_images_are_encoded_between_steps():
    """Images arriving while others decode join a few at a time, so the captions in
    progress keep stepping; an idle scheduler still encodes a whole batch at once."""

    class Slow(ToyRuntime):
        """Steps take 5 ms and never end a caption early: the first one is still
        decoding when the others arrive."""

        def step(self, features, tokens, state):
            time.sleep(0.005)
            logp, state, alpha = super().step(features, tokens, state)
            logp[:, END] = -1e9
            return logp, state, alpha

    runtime, metrics = Slow(), ServiceMetrics()
    work = scheduler(runtime, metrics, max_queue_delay=0.0, join_per_step=2)
    work.start()
    first = work.submit(pixels(0), DecodeOptions(max_length=20), timeout=10)
    while not runtime.batches:  # the first image is encoded and decoding
        time.sleep(0.001)
    later = [work.submit(pixels(i), DecodeOptions(max_length=20), timeout=10) for i in range(6)]
    for future in [first, *later]:
        future.result(10)
    work.stop(5)
    assert runtime.batches[0] == 1 and sum(runtime.batches) == 7
    assert max(runtime.batches[1:]) <= 2  # joined while the first was decoding


def test_a_full_queue_refuses_and_stop_finishes_what_was_admitted():
    runtime, metrics = ToyRuntime(), ServiceMetrics()
    work = scheduler(runtime, metrics, max_queue=2, max_queue_delay=30.0)
    work.start()
    admitted = [work.submit(pixels(i), DecodeOptions(), timeout=60) for i in range(2)]
    with pytest.raises(QueueFull) as refused:
        work.submit(pixels(2), DecodeOptions(), timeout=60)
    assert refused.value.retry_after == 2
    assert work.stop(10)  # drains: the 30 s window does not hold up shutdown
    assert all(f.result(0).candidates for f in admitted)
    with pytest.raises(NotReady):
        work.submit(pixels(0), DecodeOptions(), timeout=60)
    text = metrics.exposition().decode()
    assert metric_value(text, "captioner_rejected_total", reason="queue_full") == 1


def test_images_being_encoded_count_against_the_queue_bound():
    import threading

    class SlowEncoder(ToyRuntime):
        def __init__(self):
            super().__init__()
            self.encoding, self.release = threading.Event(), threading.Event()

        def encode(self, images):
            self.encoding.set()
            assert self.release.wait(10)
            return super().encode(images)

    runtime, metrics = SlowEncoder(), ServiceMetrics()
    work = scheduler(runtime, metrics, max_queue=2, max_queue_delay=0.0)
    work.start()
    first = [work.submit(pixels(i), DecodeOptions(), timeout=30) for i in range(2)]
    assert runtime.encoding.wait(10)  # both taken off the queue, inside the encoder
    assert work.depth == 2
    with pytest.raises(QueueFull):
        work.submit(pixels(2), DecodeOptions(), timeout=30)
    runtime.release.set()
    for future in first:
        future.result(10)
    assert work.stop(5)
    assert metric_value(metrics.exposition().decode(), "captioner_queue_depth") == 0


def test_a_reservation_holds_places_while_images_decode_and_gives_back_the_rest():
    runtime, metrics = ToyRuntime(), ServiceMetrics()
    work = scheduler(runtime, metrics, max_queue=3, max_queue_delay=0.0)
    work.start()

    def metric(name: str, **labels: str) -> float:
        return metric_value(metrics.exposition().decode(), name, **labels)

    with work.reserve(2) as held:
        # Nothing is queued yet, but the two places are taken: a third request of two is
        # refused before it decodes anything, one of one still fits.
        assert work.depth == 2 and metric("captioner_queue_depth") == 2
        with pytest.raises(QueueFull):
            work.reserve(2)
        with work.reserve(1):
            with pytest.raises(QueueFull):
                work.submit(pixels(5), DecodeOptions(), timeout=10)  # no place without one
        # The held places are used even with the queue counted full.
        future = work.submit(pixels(0), DecodeOptions(), timeout=10, reservation=held)
        assert held.left == 1
    # Leaving gave back the unused place; the submitted image keeps its own.
    assert held.left == 0
    assert future.result(10).candidates
    assert work.depth == 0 and metric("captioner_queue_depth") == 0
    assert metric("captioner_rejected_total", reason="queue_full") == 2
    assert work.stop(5)
