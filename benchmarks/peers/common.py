"""What every peer's service shares: the package, the one model call, and its settings.

Each peer module (``benchmarks/peers/<peer>_peer.py``) is two halves:

- the **client half**, imported by the driver in the project's own environment, with no
  peer library: ``NAME``, ``TUNING`` (the batching settings, as its documentation
  advises, in words), ``READY_PATH``, ``command(python, port, workdir)`` (the argv that
  starts the server on loopback), ``request(image, beam)`` (the HTTP request a client
  of that server sends) and ``caption(body)`` (the caption out of its answer);
- the **server half**, run by ``command`` inside the peer's own virtual environment
  (``benchmarks/peers/requirements/<peer>.txt``), which imports the peer library and
  calls :class:`PeerModel` from its batch handler.

So every server runs the same code on a batch: decode and preprocess the JPEG bytes
(``captioner.images``, as ``captioner serve`` does), encode the batch with this
project's ``OnnxCaptioner``, then greedy or beam search of the whole batch to the end
(``OnnxCaptioner.caption``, with the package's re-ranking, as ``captioner serve``
re-ranks), with the same ONNX Runtime session settings as ``captioner serve``'s
defaults. What differs is only the server around it: HTTP, batching, workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# The server halves run from the repository root on PYTHONPATH (the driver sets it),
# so the peer environments need only the runtime's own dependencies, not this project.
ENV_PACKAGE = "CAPTIONER_PEER_PACKAGE"  # the model package every peer serves
ENV_THREADS = "CAPTIONER_PEER_THREADS"  # ONNX Runtime intra-op threads (0: auto)
ENV_MAX_BATCH = "CAPTIONER_PEER_MAX_BATCH"  # the peer's batch limit
ENV_MAX_WAIT_MS = "CAPTIONER_PEER_MAX_WAIT_MS"  # the peer's batch window

# Tuning common to all peers, per their documentation on a 2-core CPU host: one model
# replica (a second would split the two cores between two ONNX Runtime thread pools
# and double the memory), batches of up to 16 images (the encoder's best batch here),
# and a short window so that a lone request is not held back for long.
MAX_BATCH = int(os.environ.get(ENV_MAX_BATCH, "16"))
MAX_WAIT_MS = float(os.environ.get(ENV_MAX_WAIT_MS, "10"))


class PeerModel:
    """The package's encoder and decoder behind one call on a batch of JPEG bytes."""

    def __init__(self, package_dir: str | Path | None = None, threads: int | None = None):
        from captioner.package import open_package
        from captioner.runtime import OnnxCaptioner

        package = open_package(Path(package_dir or os.environ[ENV_PACKAGE]))
        threads = int(os.environ.get(ENV_THREADS, "0")) if threads is None else threads
        # The session settings `captioner serve` runs with by default.
        self.runtime = OnnxCaptioner(
            package, "fp32", providers=["CPUExecutionProvider"], threads=threads, spinning=False
        )
        self.spec = package.preprocessing()
        self.vocab = package.vocab
        self.length_penalty = package.decoding().length_penalty

    def captions(self, images: Sequence[bytes], beams: Sequence[int]) -> list[str]:
        """The best caption of each image, searched with its own beam size.

        Images with the same beam size are encoded and decoded as one batch.
        """
        from captioner.decoding import DecodeOptions
        from captioner.images import preprocess_bytes

        pixels = np.stack([preprocess_bytes(bytes(b), self.spec) for b in images])
        out: list[str] = [""] * len(images)
        for beam in sorted(set(beams)):
            rows = [i for i, b in enumerate(beams) if b == beam]
            options = DecodeOptions(int(beam), self.vocab.max_length, self.length_penalty)
            ranked = self.runtime.caption(pixels[rows], options)
            for i, candidates in zip(rows, ranked, strict=True):
                out[i] = self.vocab.decode(candidates[0].tokens)
        return out
