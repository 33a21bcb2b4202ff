"""The inference service as a client sees it: `captioner serve` on loopback, real HTTP."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from inference.schemas import CaptionResponse
from tests.helpers import REAL_PHOTOS, ProcessServer, metric_value

pytestmark = pytest.mark.server

PHOTOS = sorted(REAL_PHOTOS.glob("*.jpg"))


@pytest.fixture(scope="module")
def server(served_package, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ProcessServer(served_package, log, max_image_pixels=4_000_000) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_the_seven_real_photos_get_captions(client, served_package):
    assert len(PHOTOS) == 7
    vocab = set(json.loads((served_package / "vocab.json").read_text())["tokens"])
    ids = set()
    for photo in PHOTOS:
        answer = client.post(
            "/v1/captions", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}
        )
        assert answer.status_code == 200, answer.text
        body = CaptionResponse.model_validate(answer.json())
        words = body.caption.split()
        assert 1 <= len(words) <= 15 and set(words) <= vocab
        assert body.model.execution_provider == "CPUExecutionProvider"
        assert body.image.format == "JPEG" and body.image.bytes == photo.stat().st_size
        assert answer.headers["X-Request-Id"] == body.request_id
        assert len(answer.headers["X-Trace-Id"]) == 32
        ids.add(body.request_id)
    assert len(ids) == 7


def test_beam_candidates_are_ranked_and_json_matches_multipart(client):
    data = PHOTOS[0].read_bytes()
    multipart = client.post(
        "/v1/captions", files={"image": ("a.jpg", data)}, data={"beam_size": "3"}
    ).json()
    as_json = client.post(
        "/v1/captions", json={"image_base64": base64.b64encode(data).decode(), "beam_size": 3}
    ).json()
    raw = client.post(
        "/v1/captions?beam_size=3", content=data, headers={"content-type": "image/jpeg"}
    ).json()
    scores = [c["score"] for c in multipart["candidates"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert multipart["caption"] == multipart["candidates"][0]["caption"]
    assert multipart["candidates"] == as_json["candidates"] == raw["candidates"]


def test_attention_weights_come_back_per_word(client):
    body = client.post(
        "/v1/captions", files={"image": ("a.jpg", PHOTOS[1].read_bytes())}, data={"attention": "1"}
    ).json()
    grid, weights = body["attention"]["grid"], body["attention"]["weights"]
    # One row per word and one for <end>, each a distribution over the grid's regions.
    assert len(weights) == len(body["caption"].split()) + 1
    assert all(len(w) == grid[0] * grid[1] for w in weights)
    assert all(abs(sum(w) - 1) < 1e-3 for w in weights)


@pytest.mark.parametrize(
    ("fmt", "mode", "kwargs"),
    [
        ("PNG", "RGBA", {}),
        ("PNG", "P", {}),
        ("PNG", "L", {}),
        ("PNG", "I;16", {}),
        ("WEBP", "RGB", {}),
        ("BMP", "RGB", {}),
        ("GIF", "P", {"save_all": True}),
        ("JPEG", "CMYK", {}),
        ("JPEG", "L", {}),
    ],
)
def test_every_web_format_and_mode_is_captioned(client, fmt, mode, kwargs):
    photo = Image.open(PHOTOS[2]).convert("RGB").resize((120, 90))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257)
    else:
        image = photo.convert(mode)
    if fmt == "GIF":
        kwargs = {**kwargs, "append_images": [photo.convert("P").rotate(90)]}
    answer = client.post("/v1/captions", files={"image": ("x", encoded(image, fmt, **kwargs))})
    assert answer.status_code == 200, answer.text
    assert answer.json()["image"]["format"] == fmt


def model_name(package) -> str:
    return json.loads((package / "manifest.json").read_text())["model"]["name"]


def error_of(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["message"]


def test_client_mistakes_get_the_contract_codes(client):
    photo = PHOTOS[0].read_bytes()
    post = client.post
    # 400: malformed requests.
    error_of(post("/v1/captions", files={"picture": ("a.jpg", photo)}), 400, "bad_request")
    error_of(post("/v1/captions", files={"image": ("a.jpg", b"")}), 400, "bad_request")
    error_of(post("/v1/captions", json={"image_base64": "not base64!"}), 400, "bad_request")
    error_of(post("/v1/captions", json={"picture": "AAAA"}), 400, "bad_request")
    bad_json = post("/v1/captions", content=b"{", headers={"content-type": "application/json"})
    error_of(bad_json, 400, "bad_request")
    broken_multipart = post(
        "/v1/captions",
        content=b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\nabc",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert broken_multipart.status_code in (400, 415), broken_multipart.text
    # 404: an unknown model.
    error_of(post("/v2/models/nope/infer", json={"inputs": []}), 404, "model_not_found")
    # 413: too many bytes, too many pixels (a small file that decodes huge).
    huge = post("/v1/captions", content=b"0" * (17 << 20), headers={"content-type": "image/jpeg"})
    error_of(huge, 413, "too_large")
    bomb = encoded(Image.new("1", (6000, 6000)), "PNG")
    assert len(bomb) < 100_000
    message = error_of(post("/v1/captions", files={"image": ("b.png", bomb)}), 413, "too_large")
    assert "6000x6000" in message
    # 415: not an image, or not an accepted format.
    error_of(post("/v1/captions", files={"image": ("a.txt", b"hello")}), 415, "not_an_image")
    tiff = encoded(Image.new("RGB", (8, 8)), "TIFF")
    error_of(post("/v1/captions", files={"image": ("a.tif", tiff)}), 415, "not_an_image")
    text = post("/v1/captions", content=b"hi", headers={"content-type": "text/plain"})
    error_of(text, 415, "not_an_image")
    # 422: undecodable images and invalid options.
    truncated = photo[: len(photo) // 3]
    error_of(post("/v1/captions", files={"image": ("t.jpg", truncated)}), 422, "undecodable")
    for options in ({"beam_size": "0"}, {"beam_size": "99"}, {"max_length": "x"}):
        answer = post("/v1/captions", files={"image": ("a.jpg", photo)}, data=options)
        error_of(answer, 422, "invalid_options")
    error_of(post("/v1/captions?beam_size=abc", content=photo), 422, "invalid_options")
    # Unknown routes and methods keep the one error shape.
    error_of(client.get("/nope"), 404, "not_found")
    error_of(client.get("/v1/captions"), 405, "method_not_allowed")
    # Nothing a client sent was a 500, and the service is still ready.
    assert client.get("/v2/health/ready").status_code == 200
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "captioner_requests_total", status="500") == 0


def test_v2_infer_with_bytes_in_json_and_binary(client, server, served_package):
    import tritonclient.http as triton

    name = model_name(served_package)
    data = [p.read_bytes() for p in PHOTOS[:3]]
    as_json = client.post(
        f"/v2/models/{name}/infer",
        json={
            "id": "r1",
            "inputs": [
                {
                    "name": "image",
                    "shape": [3],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(d).decode() for d in data],
                }
            ],
        },
    )
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert body["id"] == "r1" and body["model_name"] == name
    captions = next(o for o in body["outputs"] if o["name"] == "caption")
    assert captions["datatype"] == "BYTES" and captions["shape"] == [3]
    # The standard Triton client, unchanged, with the binary tensor extension both ways.
    triton_client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready(name)
    metadata = triton_client.get_model_metadata(name)
    assert metadata["parameters"]["execution_provider"] == "CPUExecutionProvider"
    tensor = triton.InferInput("image", [3], "BYTES")
    tensor.set_data_from_numpy(np.array(data, dtype=object), binary_data=True)
    result = triton_client.infer(
        name, [tensor], outputs=[triton.InferRequestedOutput("caption", binary_data=True)]
    )
    assert [c.decode() for c in result.as_numpy("caption")] == captions["data"]
    # V2 mistakes keep the error shape.
    wrong = {"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}
    error_of(client.post(f"/v2/models/{name}/infer", json=wrong), 400, "bad_request")
    mismatch = {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["AA=="]}]}
    error_of(client.post(f"/v2/models/{name}/infer", json=mismatch), 400, "bad_request")


def test_metrics_contract_after_one_request(client):
    client.post("/v1/captions", files={"image": ("a.jpg", PHOTOS[3].read_bytes())})
    text = client.get("/metrics").text
    expected = {
        "captioner_requests_total",
        "captioner_request_duration_seconds_bucket",
        "captioner_stage_duration_seconds_bucket",
        "captioner_queue_wait_seconds_bucket",
        "captioner_batch_size_bucket",
        "captioner_requests_in_flight",
        "captioner_queue_depth",
        "captioner_queue_capacity",
        "captioner_caption_length_words_bucket",
        "captioner_caption_log_probability_bucket",
        "captioner_image_size_bytes_bucket",
        "captioner_image_pixels_bucket",
        "captioner_model_info",
        "captioner_model_ready",
        "captioner_provider_fallback",
    }
    present = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert expected <= present, expected - present
    for stage in ("decode_image", "preprocess", "encoder", "decoder"):
        assert metric_value(text, "captioner_stage_duration_seconds_count", stage=stage) >= 1
    assert metric_value(text, "captioner_model_info", provider="CPUExecutionProvider") == 1
    assert metric_value(text, "captioner_model_ready") == 1
    # CUDA was asked for first and is not here: the fallback is visible.
    assert metric_value(text, "captioner_provider_fallback") == 1


def test_openapi_documents_every_route_and_error(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/captions",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/metrics",
    ):
        assert path in paths, path
    post = paths["/v1/captions"]["post"]
    assert {"400", "413", "415", "422", "429", "503"} <= set(post["responses"])
    assert {"multipart/form-data", "application/json"} <= set(post["requestBody"]["content"])
    error_ref = post["responses"]["415"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorBody")
    assert client.get("/docs").status_code == 404  # no interactive pages on the public port


def test_the_start_up_log_names_the_provider(server):
    lines = server.logs()
    start = [e for e in lines if "execution provider" in e["message"]]
    assert start and "CPUExecutionProvider" in start[0]["message"]
    access = [e for e in lines if e["logger"] == "inference.access"]
    assert access and all(len(e["trace_id"]) == 32 for e in access)


def test_overload_and_deadline(served_package, tmp_path):
    """A full queue answers 429 with Retry-After at once; a request past its deadline, 504."""
    settings = {
        "max_queue": 2,
        "max_queue_delay_ms": 4000,  # admitted images wait for a batch that never fills
        "request_timeout_seconds": 1.5,
        "retry_after_seconds": 3,
    }
    with ProcessServer(served_package, tmp_path / "log", **settings) as server:
        server.wait_ready()
        photo = PHOTOS[0].read_bytes()
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(server.caption, photo) for _ in range(2)]
            server.wait_in_flight(2)
            refused = server.caption(photo)
            assert refused.headers["Retry-After"] == "3"
            error_of(refused, 429, "overloaded")
            for future in waiting:
                error_of(future.result(), 504, "deadline_exceeded")
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert metric_value(metrics, "captioner_rejected_total", reason="queue_full") == 1
        assert metric_value(metrics, "captioner_rejected_total", reason="deadline") == 2
        assert metric_value(metrics, "captioner_queue_depth") == 0
        # Three images in one V2 request, two slots: refused whole, and the two it had
        # queued are withdrawn rather than left to hold the queue.
        name = model_name(served_package)
        tensor = {"name": "image", "shape": [3], "datatype": "BYTES"}
        tensor["data"] = [base64.b64encode(photo).decode()] * 3
        batch = httpx.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": [tensor]})
        error_of(batch, 429, "overloaded")
        server.wait_in_flight(0)
