import io

import numpy as np
import pytest
from PIL import Image

from captioner.images import ImageError, Preprocessing, decode_image, preprocess, preprocess_bytes


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_scalings():
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[0, 0] = 255
    assert preprocess(pixels, Preprocessing(4, 4, "tf"))[0, 0, 0] == pytest.approx(1.0)
    assert preprocess(pixels, Preprocessing(4, 4, "tf"))[1, 1, 0] == pytest.approx(-1.0)
    assert preprocess(pixels, Preprocessing(4, 4, "unit"))[0, 0, 0] == pytest.approx(1.0)
    caffe = preprocess(pixels, Preprocessing(4, 4, "caffe"))
    assert caffe[1, 1].tolist() == pytest.approx([-103.939, -116.779, -123.68])


def test_resize_and_dtype():
    out = preprocess(np.full((30, 50, 3), 128, np.uint8), Preprocessing(16, 20, "unit"))
    assert out.shape == (16, 20, 3) and out.dtype == np.float32


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_modes_become_rgb(mode):
    image = Image.new("RGB", (8, 6), (200, 30, 30))
    if mode == "I;16":
        image = Image.fromarray(np.full((6, 8), 60000, np.uint16))
    else:
        image = image.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    decoded = decode_image(encoded(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (8, 6)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (8, 4), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(encoded(image, "JPEG", exif=exif))
    assert decoded.size == (4, 8)


def test_garbage_is_a_clear_error():
    with pytest.raises(ImageError, match="not a decodable image"):
        decode_image(b"definitely not an image")


def test_file_and_array_paths_are_bit_identical():
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    spec = Preprocessing(24, 24, "tf")
    png = encoded(Image.fromarray(pixels), "PNG")
    assert np.array_equal(preprocess(pixels, spec), preprocess_bytes(png, spec))


LIMITS = {"max_bytes": 1 << 20, "max_pixels": 1_000_000}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_read_image_accepts_web_formats(fmt):
    from captioner.images import read_image

    image, kind = read_image(encoded(Image.new("RGB", (9, 7), (10, 200, 30)), fmt), **LIMITS)
    assert kind == fmt and image.mode == "RGB" and image.size == (9, 7)


def test_read_image_takes_the_first_gif_frame():
    from captioner.images import read_image

    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    image, _ = read_image(data, **LIMITS)
    assert image.getpixel((0, 0))[0] > 200 and image.getpixel((0, 0))[2] < 50


def test_read_image_errors_name_the_problem():
    from captioner.images import (
        CorruptImage,
        EmptyImage,
        ImageTooLarge,
        UnsupportedImage,
        read_image,
    )

    photo = encoded(Image.effect_noise((64, 64), 40).convert("RGB"), "JPEG")
    cases = [
        (b"", EmptyImage, "empty"),
        (b"x" * (LIMITS["max_bytes"] + 1), ImageTooLarge, "bytes"),
        (encoded(Image.new("1", (2000, 1000)), "PNG"), ImageTooLarge, "2000x1000"),
        (b"GIF89a not really", UnsupportedImage, "supported format"),
        (encoded(Image.new("RGB", (4, 4)), "TIFF"), UnsupportedImage, "TIFF"),
        (photo[: len(photo) // 2], CorruptImage, "truncated or corrupt"),
    ]
    for data, error, words in cases:
        with pytest.raises(error, match=words):
            read_image(data, **LIMITS)


def test_read_image_matches_the_training_decoder():
    """The service's bounded reader and training's decode_image give the same pixels."""
    from captioner.images import read_image

    data = encoded(Image.effect_noise((40, 30), 60).convert("RGBA"), "PNG")
    served, _ = read_image(data, **LIMITS)
    assert np.array_equal(np.asarray(served), np.asarray(decode_image(data)))
