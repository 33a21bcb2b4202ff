"""ONNX Runtime sessions for a model package: encoder, step decoder, and search.

Tensor names and shapes are checked against the manifest when the sessions are
made, so a package whose graphs were swapped or renamed is refused with the
name that differs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from captioner.decoding import Candidate, DecodeOptions, decode
from captioner.package import (
    ATTENTION_OUTPUT,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    Graph,
    Package,
    PackageError,
)

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _check_io(session: Any, spec: Graph, graph: str) -> None:
    for kind, recorded, actual in (
        ("inputs", spec.inputs, session.get_inputs()),
        ("outputs", spec.outputs, session.get_outputs()),
    ):
        expected = {t.name: t.shape for t in recorded}
        found = {t.name: [d if isinstance(d, int) else None for d in t.shape] for t in actual}
        if set(expected) != set(found):
            missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
            raise PackageError(
                f"{graph} {kind} do not match the manifest: missing {missing}, unexpected {extra}"
            )
        for name, shape in expected.items():
            if len(shape) != len(found[name]) or any(
                e is not None and f is not None and e != f
                for e, f in zip(shape, found[name], strict=False)
            ):
                raise PackageError(
                    f"{graph} tensor {name!r} has shape {found[name]}, the manifest says {shape}"
                )


class OnnxCaptioner:
    """Encoder + step decoder sessions; a :class:`captioner.decoding.StepDecoder`.

    Args:
        package: an opened package.
        variant: ``fp32``, ``fp16`` or ``int8`` (as the package offers).
        providers: execution providers in order of preference; those this
            onnxruntime build lacks are skipped, and the ones actually active are
            read back into ``providers``.
        threads: intra-op threads (0 lets onnxruntime choose).
        inter_op_threads: inter-op threads (0 lets onnxruntime choose).
        optimization: graph optimisation level, one of ``OPTIMIZATION_LEVELS``.
        spinning: let idle intra-op threads spin. Faster for one session alone; in a
            server, where the encoder, the decoder and request threads take turns on
            the same cores, spinning threads steal the cores the next stage needs.
        encoder_chunk: most images per encoder run (0: no limit); a larger batch is
            encoded in parts. ONNX Runtime's arena keeps, for the process's life, what the
            largest run needed: 16 Xception images at 299x299 hold about 1.5 GB, 4 about
            0.6 GB, and on a CPU the parts cost no throughput (docs/inference.md).
    """

    def __init__(
        self,
        package: Package,
        variant: str = "fp32",
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int = 0,
        inter_op_threads: int = 0,
        optimization: str = "all",
        spinning: bool = True,
        encoder_chunk: int = 0,
    ):
        import onnxruntime as ort

        if encoder_chunk < 0:
            raise ValueError(f"encoder_chunk must be 0 (no limit) or more, got {encoder_chunk}")
        self.encoder_chunk = encoder_chunk

        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"optimization must be one of {OPTIMIZATION_LEVELS}")
        self.package = package
        self.variant = variant
        self.requested = list(providers)
        available = set(ort.get_available_providers())
        wanted = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        if wanted[0] != self.requested[0]:
            log.warning(
                "%s was requested but this onnxruntime build offers only %s",
                self.requested[0],
                sorted(available),
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = inter_op_threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        encoder_path, decoder_path = package.graph_files(variant)
        try:
            self.encoder = ort.InferenceSession(str(encoder_path), options, providers=wanted)
            self.decoder = ort.InferenceSession(str(decoder_path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise PackageError(f"onnxruntime cannot load the {variant} graphs: {exc}") from exc
        _check_io(self.encoder, package.manifest.encoder, "encoder")
        _check_io(self.decoder, package.manifest.decoder, "decoder")
        self.providers: list[str] = self.encoder.get_providers()
        self.reranker = package.reranker()
        self._attention = any(o.name == ATTENTION_OUTPUT for o in self.decoder.get_outputs())
        self._step_outputs = [*DECODER_OUTPUTS] + ([ATTENTION_OUTPUT] if self._attention else [])

    @property
    def provider(self) -> str:
        """The execution provider that runs first: the one doing the work."""
        return self.providers[0]

    @property
    def has_attention(self) -> bool:
        return self._attention

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Features and the initial decoder state for a batch of preprocessed images."""
        images = images.astype(np.float32, copy=False)
        chunk = self.encoder_chunk or len(images)
        if len(images) <= chunk:
            features, h, c = self.encoder.run(list(ENCODER_OUTPUTS), {ENCODER_INPUT: images})
            return features, [h, c]
        parts = [
            self.encoder.run(list(ENCODER_OUTPUTS), {ENCODER_INPUT: images[i : i + chunk]})
            for i in range(0, len(images), chunk)
        ]
        features, h, c = (np.concatenate(outputs) for outputs in zip(*parts, strict=True))
        return features, [h, c]

    def step(self, features, tokens, state):
        inputs = (features, tokens.astype(np.int32), state[0], state[1])
        outputs = self.decoder.run(
            self._step_outputs, dict(zip(DECODER_INPUTS, inputs, strict=True))
        )
        alpha = outputs[3] if self._attention else None
        return outputs[0].astype(np.float32), [outputs[1], outputs[2]], alpha

    def caption(
        self, images: np.ndarray, options: DecodeOptions, rerank: bool = True
    ) -> list[list[Candidate]]:
        """Ranked candidates for each preprocessed image of a batch.

        With ``rerank`` and a package that carries a consensus reranker, the beam's
        candidates are re-ranked by it, as the service does.
        """
        features, state = self.encode(images)
        vocab = self.package.vocab
        ranked = decode(self, features, state, vocab.start_id, vocab.end_id, options)
        if rerank and self.reranker is not None:
            ranked = [
                self.reranker.rerank(f, c, vocab) for f, c in zip(features, ranked, strict=True)
            ]
        return ranked
