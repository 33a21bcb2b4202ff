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
