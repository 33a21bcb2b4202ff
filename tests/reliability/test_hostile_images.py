"""Hostile images: the decoder only ever succeeds or raises its typed errors, and the
running service answers every hostile request with a 4xx, stays ready, and keeps its
memory under a stated bound."""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from captioner.images import (
    WEB_FORMATS,
    CorruptImage,
    EmptyImage,
    ImageTooLarge,
    UnsupportedImage,
    read_image,
)
from tests.helpers import REAL_PHOTOS, ProcessServer
from tests.reliability.hostile import RssSampler, at_limit_bomb, corpus, encoded

MiB = 1 << 20
FUZZ_PIXELS = 1_000_000
EXTREMES = [b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff", b"\0\0\xff\xff"]
TYPED = (EmptyImage, ImageTooLarge, UnsupportedImage, CorruptImage)


def decode_or_refuse(data: bytes) -> str:
    """What ``read_image`` may do with any bytes: an RGB image within limits, or a typed error."""
    try:
        image, kind = read_image(data, max_bytes=MiB, max_pixels=FUZZ_PIXELS)
    except TYPED as exc:
        return type(exc).__name__
    assert image.mode == "RGB" and kind in WEB_FORMATS
    assert 1 <= image.width * image.height <= FUZZ_PIXELS
    return "decoded"


@functools.cache
def seeds() -> dict[str, bytes]:
    """A small real photo in every accepted format, and a few modes the decoder converts."""
    photo = Image.open(sorted(REAL_PHOTOS.glob("*.jpg"))[0]).convert("RGB").resize((32, 24))
    return {
        "jpeg": encoded(photo, "JPEG", quality=80),
        "jpeg-progressive": encoded(photo, "JPEG", progressive=True),
        "png": encoded(photo, "PNG"),
        "png-palette-alpha": encoded(photo.convert("P"), "PNG", transparency=0),
        "png-16bit": encoded(Image.new("I;16", (16, 12), 300), "PNG"),
        "gif": encoded(photo.convert("P"), "GIF"),
        "webp": encoded(photo, "WEBP"),
        "bmp": encoded(photo, "BMP"),
    }


@st.composite
def mutated_images(draw) -> bytes:
    """A real image in one of the accepted formats, then flips, overwrites, cuts and splices."""
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["flip", "byte", "insert", "delete", "truncate", "int"]))
        if edit == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "byte" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        elif edit == "truncate":
            del data[at:]
        elif edit == "int" and at + 4 <= len(data):
            # Sizes and lengths are 16- and 32-bit fields: extreme values find their checks.
            data[at : at + 4] = draw(st.sampled_from(EXTREMES))
    return bytes(data)


def test_every_seed_decodes():
    """The fuzzers start from images that decode: a mutation, not the seed, is what fails."""
    assert {decode_or_refuse(data) for data in seeds().values()} == {"decoded"}


@given(st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes_decode_or_raise_typed_errors(data):
    event(decode_or_refuse(data))


@given(mutated_images())
def test_fuzz_mutated_images_decode_or_raise_typed_errors(data):
    event(decode_or_refuse(data))


@pytest.fixture(scope="module")
def server(served_package, tmp_path_factory):
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    limits = {
        "max_image_pixels": 4_000_000,
        "max_image_bytes": MiB,
        "max_body_bytes": 2 * MiB,
        "decode_concurrency": 2,
    }
    with ProcessServer(served_package, log, **limits) as running:
        running.wait_ready()
        running.limits = limits
        yield running


def model_name(package) -> str:
    return json.loads((package / "manifest.json").read_text())["model"]["name"]


@pytest.mark.server
def test_the_hostile_corpus_gets_4xx_and_the_service_stays_ready(server, served_package):
    limits = server.limits
    cases = corpus(
        limits["max_image_pixels"],
        limits["max_image_bytes"],
        limits["max_body_bytes"],
        model_name(served_package),
    )
    results = []

    # The server's own count of 5xx answers, before and after: readiness probes answered
    # 503 while the model loaded (as they should), so only the difference counts.
    def server_errors() -> dict[str, float]:
        codes = ("500", "502", "503", "504")
        return {code: server.metric("captioner_requests_total", status=code) for code in codes}

    before = server_errors()
    with RssSampler(process_of(server)) as rss, httpx.Client(base_url=server.url, timeout=60) as c:
        for case in cases:
            results.append((case.kind, case.send(c), case.allowed))
    unexpected = [(kind, status) for kind, status, allowed in results if status not in allowed]
    assert not unexpected, unexpected
    assert max(status for _, status, _ in results) < 500
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    photo = sorted(REAL_PHOTOS.glob("*.jpg"))[0].read_bytes()
    assert server.caption(photo).status_code == 200
    assert server_errors() == before
    # One request at a time: at most one image at the pixel limit is decoded at once.
    growth = rss.peak - rss.start
    bound = decode_bound(server.limits["max_image_pixels"], 1)
    assert growth < bound, f"RSS grew {growth / MiB:.0f} MB, bound {bound / MiB:.0f} MB"
    print(f"\n{len(cases)} hostile requests; RSS {rss.start / MiB:.0f} MB at the start, "
          f"peak {rss.peak / MiB:.0f} MB (bound: +{bound / MiB:.0f} MB)")  # fmt: skip


def decode_bound(max_pixels: int, decodes: int) -> int:
    """RSS growth allowed: 17 bytes per pixel per image decoded at once (a palette PNG with
    transparency at the limit: the palette image, its RGBA copy, the white background,
    the composite and the RGB result; measured 16.9), plus 120 MB for what is not an
    image (thread stacks, allocator arenas, request and response buffers)."""
    return decodes * 17 * max_pixels + 120 * MiB


def process_of(server) -> int:
    assert server.process is not None
    return server.process.pid


@pytest.mark.server
def test_many_bombs_at_once_decode_a_bounded_number_at_a_time(server):
    """24 clients send an image at the pixel limit together. Decoded all at once they
    would take 24 x 68 MB; ``decode_concurrency`` (2 here) bounds the memory instead."""
    bomb = at_limit_bomb(server.limits["max_image_pixels"])
    assert len(bomb) < 10_000

    def send(_):
        return httpx.post(f"{server.url}/v1/captions", files={"image": ("b.png", bomb)},
                          timeout=60).status_code  # fmt: skip

    with RssSampler(process_of(server)) as rss, ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(send, range(24)))
    assert statuses == [200] * 24
    growth = rss.peak - rss.start
    bound = decode_bound(server.limits["max_image_pixels"], server.limits["decode_concurrency"])
    assert growth < bound, f"RSS grew {growth / MiB:.0f} MB, bound {bound / MiB:.0f} MB"
    assert growth < 24 * 17 * server.limits["max_image_pixels"] / 2  # far from all at once
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    print(f"\n24 bombs at once: RSS {rss.start / MiB:.0f} -> peak {rss.peak / MiB:.0f} MB "
          f"(bound +{bound / MiB:.0f} MB)")  # fmt: skip
