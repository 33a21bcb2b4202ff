"""The physical limit: the most captions/s the model's graphs allow on this host.

Measured in the driver's process, with the sessions set up as ``captioner serve`` sets
up its own: the bare encoder's best images/s over batch sizes, the decoder's best
captions/s per beam size over batch sizes, and from these the most captions/s per beam
size; also one photo's encode and decode alone per beam size, which ``captioner serve``'s
one-client latency is compared with. The limit counts the graphs only: no JPEG decoding
(measured apart), no re-ranking, no HTTP.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import median_time
from captioner.decoding import DecodeOptions, decode
from captioner.images import preprocess_bytes
from captioner.package import Package, open_package
from captioner.runtime import OnnxCaptioner

CPU = "CPUExecutionProvider"
ENV_PROVIDER = "CAPTIONER_PEER_PROVIDER"  # captioner_peer.environment() reads it
ENCODER_BATCHES = (1, 2, 4, 8, 16, 32)
DECODER_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Limit:
    """What the model's graphs allow on this host, measured in this process."""

    encoder_images_per_s: float
    encoder_batch: int
    decoder_captions_per_s: dict[int, float]  # by beam size, at its best batch
    decoder_rows_steps_per_s: dict[int, float]  # hypothesis rows x steps per s, same batch
    decoder_batch: dict[int, int]
    captions_per_s: dict[int, float]  # 1 / (encoder s per image + decoder s per caption)
    with_preprocess_per_s: dict[int, float]  # the same with the JPEG decode and resize added
    single_ms: dict[int, float]  # one photo alone: encode + decode, median
    preprocess_ms: float  # JPEG decode + resize of one photo (not in the limit)


class _CountingStep:
    """The runtime's step decoder, counting the hypothesis rows it steps."""

    def __init__(self, model: OnnxCaptioner):
        self.model, self.rows = model, 0

    def step(self, features, tokens, state):
        self.rows += features.shape[0]
        return self.model.step(features, tokens, state)


class _Graphs:
    """The package's graphs in this process, as ``captioner serve`` sets up its sessions."""

    def __init__(self, package: Package, photos: Sequence[bytes]):
        self.package, self.vocab = package, package.vocab
        provider = os.environ.get(ENV_PROVIDER, CPU)
        self.runtime = OnnxCaptioner(
            package, providers=list(dict.fromkeys([provider, CPU])), spinning=False
        )
        spec = package.preprocessing()
        self.images = np.stack([preprocess_bytes(p, spec) for p in photos])
        run = lambda: [preprocess_bytes(p, spec) for p in photos]  # noqa: E731
        self.preprocess_s = median_time(run) / len(photos)

    def batch(self, size: int) -> np.ndarray:
        """``size`` images, the photos repeated."""
        return np.concatenate([self.images] * (size // len(self.images) + 1))[:size]

    def encoding(self, size: int) -> Callable[[], object]:
        images = self.batch(size)
        return lambda: self.runtime.encode(images)

    def decoding(self, images: np.ndarray, beam: int, model: Any = None) -> Callable[[], object]:
        """A call that decodes ``images`` (encoded beforehand) to the end."""
        features, state = self.runtime.encode(images)
        options = DecodeOptions(beam, self.vocab.max_length, self.package.decoding().length_penalty)
        start, end = self.vocab.start_id, self.vocab.end_id
        return lambda: decode(model or self.runtime, features, state, start, end, options)

    def single_s(self, beam: int) -> float:
        """Median seconds of one photo's encode and decode, three rounds of the photos."""
        times = []
        for i in [0, *list(range(len(self.images))) * 3]:  # the first is a warm-up
            start = time.perf_counter()
            self.decoding(self.images[i : i + 1], beam)()
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])


def physical_limit(package_dir: Path, photos: Sequence[bytes], beams: Sequence[int]) -> Limit:
    """The encoder's and the decoder's best throughput, their sum per caption, one photo alone."""
    graphs = _Graphs(open_package(package_dir), photos)
    encoder = {b: b / median_time(graphs.encoding(b)) for b in ENCODER_BATCHES}
    enc_batch = max(encoder, key=encoder.__getitem__)
    captions, rows_steps, dec_batch, limit, whole, single = {}, {}, {}, {}, {}, {}
    for beam in beams:
        rates = {
            b: b / median_time(graphs.decoding(graphs.batch(b), beam)) for b in DECODER_BATCHES
        }
        dec_batch[beam] = best = max(rates, key=rates.__getitem__)
        counter = _CountingStep(graphs.runtime)
        graphs.decoding(graphs.batch(best), beam, counter)()
        captions[beam] = rates[best]
        rows_steps[beam] = counter.rows * rates[best] / best
        limit[beam] = 1 / (1 / encoder[enc_batch] + 1 / rates[best])
        whole[beam] = 1 / (1 / limit[beam] + graphs.preprocess_s)
        single[beam] = 1000 * graphs.single_s(beam)
    return Limit(
        encoder[enc_batch], enc_batch, captions, rows_steps, dec_batch, limit, whole, single,
        preprocess_ms=1000 * graphs.preprocess_s,
    )  # fmt: skip
