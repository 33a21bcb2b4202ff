"""How far two step decoders drift apart: Keras vs ONNX, or fp32 vs a precision variant."""

from __future__ import annotations

import numpy as np

from captioner.decoding import StepDecoder
from captioner.images import Preprocessing, scale_pixels


def probe_images(preprocessing: Preprocessing, count: int = 4, seed: int = 0) -> np.ndarray:
    """Deterministic random pixels, scaled as the encoder expects."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, preprocessing.height, preprocessing.width, 3))
    return scale_pixels(pixels.astype(np.float32), preprocessing.scaling).astype(np.float32)


def compare_steps(
    reference: StepDecoder,
    reference_start: tuple[np.ndarray, list[np.ndarray]],
    candidate: StepDecoder,
    candidate_start: tuple[np.ndarray, list[np.ndarray]],
    start_id: int,
    steps: int = 5,
) -> dict[str, float]:
    """Largest differences over ``steps`` steps, both fed the reference's greedy tokens.

    Each side starts from its own features and initial state, so differences
    accumulate as they would in a real decode.

    Returns:
        ``features``, ``log_probs`` and ``probs``: largest absolute differences;
        ``tokens_agree``: share of (image, step) pairs with the same greedy token.
    """
    r_features, r_state = reference_start
    c_features, c_state = candidate_start
    tokens = np.full(len(r_features), start_id, np.int32)
    worst_logp = worst_prob = 0.0
    agree = []
    for _ in range(steps):
        r_logp, r_state, _ = reference.step(r_features, tokens, r_state)
        c_logp, c_state, _ = candidate.step(c_features, tokens, c_state)
        worst_logp = max(worst_logp, float(np.abs(r_logp - c_logp).max()))
        worst_prob = max(worst_prob, float(np.abs(np.exp(r_logp) - np.exp(c_logp)).max()))
        tokens = np.argmax(r_logp, axis=-1).astype(np.int32)
        agree.append(tokens == np.argmax(c_logp, axis=-1))
    return {
        "features": float(np.abs(r_features - c_features).max()),
        "log_probs": worst_logp,
        "probs": worst_prob,
        "tokens_agree": float(np.mean(agree)),
    }
