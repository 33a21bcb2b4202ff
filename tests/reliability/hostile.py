"""Hostile inputs built at test time from the real photos, and a memory sampler.

Each case is one HTTP request a hostile or broken client could send, with the
status codes the contract allows for it: exact where the bytes decide (a forged
header, zero bytes), a set where a random mutation may still decode.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import psutil
from PIL import Image

from tests.helpers import REAL_PHOTOS

# What a damaged image may legitimately get: decoded anyway (200), or refused.
DAMAGED = frozenset({200, 400, 413, 415, 422})


@dataclass
class Case:
    """One request: ``kind`` names it in failure messages."""

    kind: str
    allowed: frozenset[int]
    path: str = "/v1/captions"
    files: dict[str, Any] | None = None
    content: Any = None  # bytes, or an iterator of chunks (sent chunked)
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, client) -> int:
        return client.post(
            self.path, files=self.files, content=self.content, headers=self.headers
        ).status_code


def multipart(kind: str, data: bytes, allowed=DAMAGED) -> Case:
    return Case(kind, frozenset(allowed), files={"image": ("x", data)})


def raw(kind: str, body: bytes, content_type: str, allowed, path="/v1/captions") -> Case:
    return Case(kind, frozenset(allowed), path=path, content=body,
                headers={"content-type": content_type})  # fmt: skip


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (valid CRCs), with little data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(idat))
        + png_chunk(b"IEND", b"")
    )


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame declare ``width`` x ``height``."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG with its frame header (SOF0/SOF2) patched to declare another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = jpeg.find(marker)
        if at >= 0:
            patched = bytearray(jpeg)
            patched[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(patched)
    raise ValueError("no baseline or progressive frame header")


def flipped(data: bytes, flips: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def over_limit_bomb(max_image_pixels: int) -> bytes:
    """A few-kB PNG of real (blank) pixels, one row and column past the pixel limit."""
    side = int(max_image_pixels**0.5) + 1
    return encoded(Image.new("1", (side, side)), "PNG")


def at_limit_bomb(max_image_pixels: int) -> bytes:
    """A few-kB PNG at the pixel limit whose decoding costs the most memory: a palette
    with a transparent colour goes through RGBA compositing on its way to RGB."""
    side = int(max_image_pixels**0.5)
    return encoded(Image.new("P", (side, side)), "PNG", transparency=0)


def corpus(
    max_image_pixels: int, max_image_bytes: int, max_body_bytes: int, model: str
) -> list[Case]:
    """Every hostile request, built from the real photos."""
    photos = sorted(REAL_PHOTOS.glob("*.jpg"))
    jpeg = photos[0].read_bytes()
    small = Image.open(photos[1]).convert("RGB").resize((160, 120))
    png = encoded(small, "PNG")
    b64_small = base64.b64encode(png).decode()
    formats = {
        "jpeg": jpeg,
        "png": png,
        "gif": encoded(small.convert("P"), "GIF"),
        "webp": encoded(small, "WEBP"),
        "bmp": encoded(small, "BMP"),
    }
    cases: list[Case] = []
    for name, data in formats.items():
        # Truncated at several offsets, header-only included (the first bytes).
        for cut in (1, 2, 8, 16, 64, 200, len(data) // 4, len(data) // 2, len(data) - 1):
            cases.append(multipart(f"{name} truncated at {cut}", data[:cut]))
        for flips in (1, 8, 64, 512):
            for seed in range(3):
                cases.append(multipart(f"{name} {flips} bits flipped (seed {seed})",
                                       flipped(data, flips, seed)))  # fmt: skip
    # The PNG header and nothing else; a JPEG's headers up to the scan and no data.
    cases.append(multipart("png signature and IHDR only", png[:33], {415, 422}))
    scan = jpeg.find(b"\xff\xda")
    cases.append(multipart("jpeg headers without the scan", jpeg[:scan], {422}))
    # Decompression bombs: tiny files that declare (or really hold) huge images.
    bomb = over_limit_bomb(max_image_pixels)
    cases += [
        multipart("png bomb, real pixels over the limit", bomb, {413}),
        multipart(
            "png bomb at the limit, palette with transparency",
            at_limit_bomb(max_image_pixels),
            {200},
        ),  # fmt: skip
        multipart("png declaring 100000x100000", png_declaring(100_000, 100_000), {413}),
        multipart("png declaring 2^31-1 x 1", png_declaring(2**31 - 1, 1), {413, 422}),
        multipart("png declaring 0x0", png_declaring(0, 0), {415, 422}),
        multipart("gif declaring 65535x65535", gif_declaring(65535, 65535), {413}),
        multipart("jpeg declaring 65500x65500", jpeg_declaring(jpeg, 65500, 65500), {413}),
        multipart("jpeg declaring 1x1", jpeg_declaring(jpeg, 1, 1), {200, 422}),
        multipart("zero bytes", b"", {400}),
        multipart("one byte", b"\xff", {415}),
        multipart("text", b"hello, world", {415}),
        multipart("html", b"<html><script>alert(1)</script></html>", {415}),
        multipart("svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', {415}),
        multipart("pdf header", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", {415}),
        multipart("tiff", encoded(small, "TIFF"), {415}),
        multipart("ico", encoded(small, "ICO"), {415}),
        multipart("gzip of a jpeg", zlib.compress(jpeg), {415}),
    ]
    # Wrong content types for good and bad bodies.
    cases += [
        raw("jpeg sent as text/plain", jpeg, "text/plain", {415}),
        raw("jpeg sent as application/json", jpeg, "application/json", {400}),
        raw("jpeg sent as application/octet-stream", jpeg, "application/octet-stream", {415}),
        raw("jpeg sent as image/png", jpeg, "image/png", {200}),
        raw("text sent as image/jpeg", b"not an image", "image/jpeg", {415}),
        raw("jpeg sent as multipart without boundary", jpeg, "multipart/form-data", {400}),
        raw("no content type", jpeg, "", {415}),
    ]
    # Malformed multipart bodies.
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    form = "multipart/form-data; boundary=b"
    text_field = b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc\r\n--b--\r\n'
    cases.append(raw("image field sent as text", text_field, form, {415}))
    many = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(50)
    )

    def field(name: str, value: bytes) -> bytes:
        return b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (
            name.encode(), value)  # fmt: skip

    def with_photo(fields: bytes) -> bytes:
        """Text fields, then the photo as the image part: a whole form but for the fields."""
        return fields + part + jpeg + b"\r\n--b--\r\n"

    cases += [
        raw("multipart, unterminated part", part + jpeg[:500], form, {400, 415, 422}),
        raw(
            "multipart, wrong boundary",
            part + jpeg + b"\r\n--b--\r\n",
            "multipart/form-data; boundary=zzz",
            {400},
        ),  # fmt: skip
        raw("multipart, no part headers", b"--b\r\n\r\n" + jpeg + b"\r\n--b--\r\n", form, {400}),
        raw("multipart, only the closing boundary", b"--b--\r\n", form, {400}),
        raw("multipart, 50 fields", many + b"--b--\r\n", form, {400}),
        raw("multipart, an unknown field", with_photo(field("beam", b"3")), form, {400}),
        raw(
            "multipart, a field given twice", with_photo(field("beam_size", b"3") * 2), form, {400}
        ),
        raw("multipart, two files", (part + jpeg + b"\r\n") * 2 + b"--b--\r\n", form, {400}),
        raw(
            "multipart, 100 kB text field",
            with_photo(field("beam_size", b"1" * 100_000)),
            form,
            {400},
        ),  # fmt: skip
        raw(
            "multipart, header line without a colon",
            b"--b\r\nnot a header\r\n\r\nabc\r\n--b--\r\n",
            form,
            {400},
        ),  # fmt: skip
        raw(
            "multipart, non-UTF-8 field name",
            b'--b\r\nContent-Disposition: form-data; name="\xff\xfe"\r\n\r\nabc\r\n--b--\r\n',
            form,
            {400},
        ),  # fmt: skip
    ]
    # Oversize bodies: declared, and streamed without a declared length.
    over = b"\0" * (max_body_bytes + 1)
    halves = iter([over[: len(over) // 2], over[len(over) // 2 :]])  # no content-length
    # An image over MAX_IMAGE_BYTES in a body under MAX_BODY_BYTES: a real JPEG, padded.
    big_image = jpeg + b"\0" * (max_image_bytes + 1 - len(jpeg))
    cases += [
        multipart("image over the image byte limit", big_image, {413}),
        raw(
            "v2 more images than allowed",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "image",
                            "shape": [17],
                            "datatype": "BYTES",
                            "data": [b64_small] * 17,
                        }
                    ]
                }
            ).encode(),
            "application/json",
            {400},
            path=f"/v2/models/{model}/infer",
        ),  # fmt: skip
        raw("body over the limit", over, "image/jpeg", {413}),
        Case(
            "chunked body over the limit",
            frozenset({413}),
            content=halves,
            headers={"content-type": "image/jpeg"},
        ),  # fmt: skip
        raw(
            "v2 body over the limit",
            over,
            "application/json",
            {413},
            path=f"/v2/models/{model}/infer",
        ),  # fmt: skip
    ]
    # Bad JSON and base64, on both APIs.
    b64 = base64.b64encode(jpeg).decode()
    infer = f"/v2/models/{model}/infer"
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES"}
    for kind, body in {
        "truncated json": b'{"image_base64": "' + b64[:100].encode(),
        "json array": b"[1, 2, 3]",
        "json number": b"42",
        "json null": b"null",
        "json string": b'"x"',
        "json nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
        "json object nested 100000 deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "invalid utf-8": b'{"image_base64": "\xff\xfe"}',
        "image_base64 not a string": json.dumps({"image_base64": 5}).encode(),
        "image_base64 invalid": json.dumps({"image_base64": "!!!"}).encode(),
        "image_base64 cut mid-quantum": json.dumps({"image_base64": b64[:101]}).encode(),
        "image_base64 of text": json.dumps({"image_base64": "aGVsbG8="}).encode(),
        "image_base64 empty": json.dumps({"image_base64": ""}).encode(),
        "beam_size huge": json.dumps({"image_base64": b64, "beam_size": 10**30}).encode(),
        "beam_size a list": json.dumps({"image_base64": b64, "beam_size": [1]}).encode(),
    }.items():
        cases.append(raw(f"/v1/captions {kind}", body, "application/json", {400, 415, 422}))
        if not kind.startswith(("image_base64", "beam_size")):
            cases.append(raw(f"v2 {kind}", body, "application/json", {400}, path=infer))
    cases += [
        raw(
            "v2 data not base64",
            json.dumps({"inputs": [{**tensor, "data": ["!!"]}]}).encode(),
            "application/json",
            {400},
            path=infer,
        ),  # fmt: skip
        raw(
            "v2 negative shape",
            json.dumps({"inputs": [{**tensor, "shape": [-5], "data": []}]}).encode(),
            "application/json",
            {400},
            path=infer,
        ),  # fmt: skip
        raw(
            "v2 a million images declared",
            json.dumps({"inputs": [{**tensor, "shape": [10**6], "data": [b64]}]}).encode(),
            "application/json",
            {400},
            path=infer,
        ),  # fmt: skip
        raw(
            "v2 data of a bomb",
            json.dumps(
                {"inputs": [{**tensor, "data": [base64.b64encode(bomb).decode()]}]}
            ).encode(),
            "application/json",
            {413},
            path=infer,
        ),  # fmt: skip
        Case(
            "v2 binary header longer than the body",
            frozenset({400}),
            path=infer,
            content=b"{}",
            headers={"inference-header-content-length": "999"},
        ),  # fmt: skip
        Case(
            "v2 binary header length negative",
            frozenset({400}),
            path=infer,
            content=b"{}",
            headers={"inference-header-content-length": "-1"},
        ),  # fmt: skip
        Case(
            "v2 binary size past the body",
            frozenset({400}),
            path=infer,
            content=json.dumps(
                {"inputs": [{**tensor, "parameters": {"binary_data_size": 10**9}}]}
            ).encode(),
            headers={"inference-header-content-length": "0"},
        ),  # fmt: skip
    ]
    last = cases[-1]
    header = last.content or b""
    last.headers["inference-header-content-length"] = str(len(header))
    return cases


class RssSampler:
    """The peak resident memory of a process, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
