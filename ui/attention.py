"""Attention maps drawn over the image, with Pillow and numpy (no plotting library)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from captioner.images import decode_image

SIDE = 224


def attention_maps(image: bytes, grid: list[int], weights: list[list[float]]) -> list[Image.Image]:
    """One picture per word: the image dimmed where the word's attention is low."""
    base = decode_image(image).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(base, dtype=np.float32)
    rows, columns = grid
    pictures = []
    for alpha in weights:
        heat = np.asarray(alpha, dtype=np.float32).reshape(rows, columns)
        heat = heat / max(float(heat.max()), 1e-8)
        mask = Image.fromarray((heat * 255).astype(np.uint8)).resize(
            (SIDE, SIDE), Image.Resampling.BICUBIC
        )
        light = 0.25 + 0.75 * np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        pictures.append(Image.fromarray((pixels * light).clip(0, 255).astype(np.uint8)))
    return pictures
