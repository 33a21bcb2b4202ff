"""Security: secrets stay out of reprs and logs, no debug pages, CORS off by default,
user text shown as text.

Elsewhere: request size limits are in the hostile corpus (test_hostile_images.py:
bodies declared and streamed over ``MAX_BODY_BYTES``, images over ``MAX_IMAGE_BYTES``
and ``MAX_IMAGE_PIXELS``); feedback bounds and validation in tests/ui/test_feedback.py;
markup in a correction shown as typed on the page in tests/ui/test_page.py
(``test_markup_in_a_correction_is_stored_and_shown_as_text``).
"""

from __future__ import annotations

import ast
import html
import os
import subprocess
import sys
import time
import typing

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from pydantic import SecretStr

from feedback.outbox import Outbox
from inference.app import create_app
from inference.settings import ServeSettings
from tests.helpers import REAL_PHOTOS, REPO, ProcessServer, ThreadServer, free_port, wait_until
from ui.markup import escape_markdown
from ui.settings import UISettings

PASSWORD = "Pa55-w0rd-never-logged"
SECRET_WORDS = ("password", "secret", "token", "uri", "key", "credential")


@pytest.mark.parametrize("settings_class", [ServeSettings, UISettings])
def test_every_secret_looking_setting_is_a_secret_str(settings_class):
    secret_like = [n for n in settings_class.model_fields if any(w in n for w in SECRET_WORDS)]
    for name in secret_like:
        annotation = settings_class.model_fields[name].annotation
        assert SecretStr in (annotation, *typing.get_args(annotation)), name


def test_the_database_password_is_masked_in_settings(monkeypatch):
    monkeypatch.setenv("MONGODB_URI", f"mongodb://captioner:{PASSWORD}@db.example:27017/")
    settings = UISettings()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(vars(settings))):
        assert PASSWORD not in shown
    assert settings.mongodb_uri is not None
    assert PASSWORD in settings.mongodb_uri.get_secret_value()  # still usable


@pytest.mark.server
def test_the_ui_never_logs_the_database_password(tmp_path):
    """`captioner -v ui` against a database that refuses: the failures are logged (debug
    level, pymongo included), the password is not."""
    dead = free_port()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    from feedback.record import make_feedback

    outbox.put(
        make_feedback(
            request_id="req-secret-1", model_name="m", model_version="v", caption="a cat",
            rating="up", image_sha256="0" * 64, ui_version="0.1.0",
        )
    )  # fmt: skip
    outbox.close()
    env = {
        **os.environ,
        "MONGODB_URI": f"mongodb://captioner:{PASSWORD}@127.0.0.1:{dead}/?authSource=admin",
        "CAPTIONER_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
        "CAPTIONER_FLUSH_SECONDS": "0.2",
        "CAPTIONER_MONGODB_TIMEOUT_MS": "200",
        "CAPTIONER_UI_METRICS_PORT": "0",
    }
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from cli.main import main; main()", "-v", "ui",
             "--port", str(free_port()), "--service-url", "http://127.0.0.1:9"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # Positive control: delivery was tried against that database, and logged.
            wait_until(lambda: log.read_text().count(f"127.0.0.1:{dead}") >= 3, 60, what="failures")
        finally:
            process.terminate()
            process.wait(30)
    text = log.read_text()
    assert "outbox delivery paused" in text
    assert PASSWORD not in text


@pytest.mark.server
def test_the_service_never_logs_secrets_from_its_environment(served_package, tmp_path):
    """An OTLP exporter token in the environment, debug logging, an exporter that fails."""
    server = ProcessServer(served_package, tmp_path / "log", log_level="debug")
    server.env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {PASSWORD}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    with server:
        server.wait_ready()
        photo = sorted(REAL_PHOTOS.glob("*.jpg"))[0].read_bytes()
        assert server.caption(photo).status_code == 200
        time.sleep(1.5)  # a few export attempts
        server.stop()
    text = server.log_path.read_text()
    assert "execution provider" in text and "/v1/captions" in text
    assert PASSWORD not in text


PROBES = [
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/swagger",
    "/swagger-ui.html",
    "/debug",
    "/debug/pprof",
    "/debug/vars",
    "/admin",
    "/console",
    "/env",
    "/config",
    "/settings",
    "/server-status",
    "/actuator",
    "/.env",
    "/.git/config",
    "/v2/repository/index",
    "/v2/repository/models/x/load",
    "/v2/logging",
    "/v2/trace/setting",
]


@pytest.fixture(scope="module")
def bare_service(tmp_path_factory):
    """The app without a model: routes and headers need no package."""
    settings = ServeSettings(model_dir=tmp_path_factory.mktemp("none") / "missing")
    with ThreadServer(create_app(settings)) as server:
        yield server


@pytest.mark.server
def test_no_debug_or_admin_endpoints_on_the_public_port(bare_service):
    for path in PROBES:
        for method in ("GET", "POST"):
            answer = httpx.request(method, f"{bare_service.url}{path}")
            assert answer.status_code == 404, (method, path, answer.status_code)
            assert answer.json()["error"]["code"] == "not_found"
    # The API description is public on purpose (docs/inference.md), the pages are not.
    spec = httpx.get(f"{bare_service.url}/openapi.json")
    assert spec.status_code == 200 and "/v1/captions" in spec.json()["paths"]
    assert not [p for p in spec.json()["paths"] if p in PROBES]
    assert httpx.request("TRACE", f"{bare_service.url}/v1/captions").status_code == 405


@pytest.mark.server
def test_cors_is_off_unless_configured(bare_service, tmp_path):
    origin = {"Origin": "https://ui.example"}
    preflight = {
        **origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    plain = httpx.get(f"{bare_service.url}/v2/health/live", headers=origin)
    assert plain.status_code == 200
    assert not [h for h in plain.headers if h.lower().startswith("access-control-")]
    asked = httpx.options(f"{bare_service.url}/v1/captions", headers=preflight)
    assert asked.status_code == 405 and "access-control-allow-origin" not in asked.headers

    settings = ServeSettings(model_dir=tmp_path / "missing", cors_origins=["https://ui.example"])
    with ThreadServer(create_app(settings)) as server:
        allowed = httpx.get(f"{server.url}/v2/health/live", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
        asked = httpx.options(f"{server.url}/v1/captions", headers=preflight)
        assert asked.status_code == 200
        assert asked.headers["access-control-allow-origin"] == "https://ui.example"
        other = httpx.get(
            f"{server.url}/v2/health/live", headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_the_page_has_no_raw_html():
    """No ``unsafe_allow_html``, ``st.html`` or HTML components anywhere in the UI."""
    offenders = []
    for path in sorted((REPO / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "unsafe_allow_html":
                offenders.append(f"{path.name}:{node.value.lineno} unsafe_allow_html")
            if isinstance(node, ast.Attribute) and node.attr in ("html", "components"):
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not offenders


# One line of printable text, as a caption or a model name is; markdown-it's CommonMark
# is the reference renderer (Streamlit's adds directives, which the escaping covers too).
line = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=80
).map(str.strip)


@given(line)
def test_escaped_text_renders_as_exactly_the_characters_given(text):
    rendered = MarkdownIt("commonmark").render(escape_markdown(text))
    expected = f"<p>{html.escape(text, quote=False)}</p>\n" if text else ""
    assert rendered == expected.replace('"', "&quot;")


@pytest.mark.parametrize(
    "hostile",
    ["<script>alert(1)</script>", "[x](javascript:alert(1))", "![x](http://e.x/t.png)",
     "&lt;b&gt;", "**bold** _it_ `code`", "# heading", "1. list", "$x^2$", ":red[alert]",
     ":smile:", "<img src=x onerror=alert(1)>"],
)  # fmt: skip
def test_hostile_markup_is_inert(hostile):
    rendered = MarkdownIt("commonmark").render(escape_markdown(hostile))
    assert rendered == f"<p>{html.escape(hostile, quote=False)}</p>\n".replace('"', "&quot;")
    for directive in ("$", ":"):  # Streamlit's own syntax, unknown to CommonMark
        assert directive not in escape_markdown(hostile).replace("\\" + directive, "")
