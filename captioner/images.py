"""Image decoding and preprocessing: the one implementation training and serving share.

numpy and Pillow only. Training feeds the model exactly what :func:`preprocess`
returns, and so does the inference service, which is what makes train-time and
serve-time inputs bit-identical for the same image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

Scaling = Literal["tf", "torch", "caffe", "unit"]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


class ImageError(ValueError):
    """Bytes that are not a decodable image."""


class EmptyImage(ImageError):
    """Zero bytes where an image was expected."""


class ImageTooLarge(ImageError):
    """An image over the byte or pixel limit (decompression bombs included)."""


class UnsupportedImage(ImageError):
    """Bytes in no image format that is read (or in one that is not accepted)."""


class CorruptImage(ImageError):
    """An image in a known format whose data is truncated or damaged."""


# What the service accepts. Each format is one more parser exposed to the
# internet, so the list is what cameras and browsers produce, not all Pillow reads.
WEB_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO"})


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes an encoder input.

    Attributes:
        height, width: encoder input size; images are resized to it (bilinear).
        scaling: pixel scaling of the backbone (``tf``: [-1, 1] as Xception wants;
            ``torch``: ImageNet mean/std; ``caffe``: BGR minus ImageNet mean;
            ``unit``: [0, 1]).
    Layout is always NHWC, float32.
    """

    height: int
    width: int
    scaling: Scaling = "tf"

    def key(self) -> str:
        """A stable string for cache keys and manifests."""
        return f"{self.height}x{self.width}-{self.scaling}-nhwc-bilinear"

    def to_dict(self) -> dict[str, object]:
        return {
            "height": self.height,
            "width": self.width,
            "scaling": self.scaling,
            "layout": "NHWC",
        }


def decode_image(data: bytes) -> Image.Image:
    """Decode bytes into an RGB image, honouring EXIF orientation.

    Palette, grayscale, RGBA (composited on white), CMYK and 16-bit images become
    8-bit RGB; animated images give their first frame.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises many types for bad input
        raise ImageError(f"not a decodable image: {exc}") from exc
    return to_rgb(image)


def read_image(
    data: bytes,
    max_bytes: int,
    max_pixels: int,
    formats: frozenset[str] = WEB_FORMATS,
) -> tuple[Image.Image, str]:
    """Decode untrusted bytes into an RGB image within limits; returns it and its format.

    The header is read first, so an oversized image (a decompression bomb) is
    refused by its declared size before any pixel is decoded.

    Raises:
        EmptyImage, ImageTooLarge, UnsupportedImage, CorruptImage: with a message
            fit to show the sender.
    """
    if not data:
        raise EmptyImage("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the image has {len(data)} bytes, the limit is {max_bytes}")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except Exception as exc:  # UnidentifiedImageError and parser errors on the header
        raise UnsupportedImage(
            "the bytes are not an image in a supported format "
            f"({', '.join(sorted(formats - {'MPO'}))})"
        ) from exc
    kind = str(image.format)
    if kind not in formats:
        raise UnsupportedImage(f"{kind} images are not accepted; send JPEG, PNG, WebP, BMP or GIF")
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage(f"the image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}"
        )
    try:
        image.load()
        rgb = to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad data
        raise CorruptImage(f"the {kind} data is truncated or corrupt: {exc}") from exc
    return rgb, kind


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB, upright per its EXIF orientation."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def preprocess(image: Image.Image | np.ndarray, spec: Preprocessing) -> np.ndarray:
    """An encoder input (float32, HxWx3) from an RGB image or a uint8 HxWx3 array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageError(f"expected a uint8 HxWx3 array, got {image.dtype} {image.shape}")
        pil = Image.fromarray(image)
    else:
        pil = image if image.mode == "RGB" else to_rgb(image)
    if pil.size != (spec.width, spec.height):
        pil = pil.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(pil, dtype=np.float32)
    return scale_pixels(pixels, spec.scaling)


def scale_pixels(pixels: np.ndarray, scaling: Scaling) -> np.ndarray:
    """Scale float32 RGB pixels in [0, 255] the way a backbone was trained."""
    if scaling == "tf":
        return pixels / np.float32(127.5) - np.float32(1.0)
    if scaling == "unit":
        return pixels / np.float32(255.0)
    if scaling == "torch":
        return (pixels / np.float32(255.0) - _IMAGENET_MEAN) / _IMAGENET_STD
    if scaling == "caffe":
        return pixels[..., ::-1] - _CAFFE_MEAN_BGR
    raise ValueError(f"unknown pixel scaling {scaling!r}")


def preprocess_bytes(data: bytes, spec: Preprocessing) -> np.ndarray:
    """Decode and preprocess in one call: the serving path."""
    return preprocess(decode_image(data), spec)
