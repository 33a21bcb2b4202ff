"""The page's client for the inference service: retries, plain-word errors, trace context."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import propagate, trace

# What each answer of the service means to a person using the page.
PLAIN_WORDS = {
    400: "The service could not read that request.",
    413: "That image is too large. Try a smaller one.",
    415: "That file is not an image the service reads (JPEG, PNG, WebP, BMP or GIF).",
    422: "That image could not be decoded: it may be truncated or damaged.",
    429: "The service is busy right now. Please try again in a moment.",
    503: "The captioning model is not ready yet. Please try again shortly.",
    504: "The caption took too long. Please try again.",
}
UNREACHABLE = "The captioning service cannot be reached. Please try again later."
RETRIED = {429, 502, 503}


class CaptionError(Exception):
    """A failed caption request, with a message fit for the page."""

    def __init__(self, message: str, status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail


@dataclass
class CaptionResult:
    body: dict[str, Any]
    seconds: float
    trace_id: str = ""

    @property
    def request_id(self) -> str:
        return str(self.body["request_id"])

    @property
    def caption(self) -> str:
        return str(self.body["caption"])


class CaptionClient:
    """Calls ``POST /v1/captions``; retries what is worth retrying; propagates the trace."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        retries: int = 2,
        tracer: trace.Tracer | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.tracer = tracer or trace.get_tracer("captioner.ui")
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def caption(
        self, image: bytes, filename: str, beam_size: int | None = None, attention: bool = True
    ) -> CaptionResult:
        """Caption one image.

        Args:
            beam_size: alternatives to search; None leaves the model's own choice.

        Raises:
            CaptionError: with the service's answer in plain words.
        """
        with self.tracer.start_as_current_span("ui.caption") as span:
            headers: dict[str, str] = {}
            propagate.inject(headers)  # traceparent: the service continues this trace
            started = time.perf_counter()
            answer = self._post(image, filename, beam_size, attention, headers)
            span.set_attribute("http.response.status_code", answer.status_code)
            if answer.status_code != 200:
                raise _error(answer)
            elapsed = time.perf_counter() - started
            return CaptionResult(answer.json(), elapsed, answer.headers.get("X-Trace-Id", ""))

    def _post(self, image, filename, beam_size, attention, headers) -> httpx.Response:
        files = {"image": (filename or "image", image, "application/octet-stream")}
        data = {"attention": "1" if attention else "0"}
        if beam_size is not None:
            data["beam_size"] = str(beam_size)
        for attempt in range(self.retries + 1):
            try:
                answer = self._http.post(
                    f"{self.base_url}/v1/captions", files=files, data=data, headers=headers
                )
            except httpx.TimeoutException as exc:
                raise CaptionError(PLAIN_WORDS[504], None, str(exc)) from exc
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise CaptionError(UNREACHABLE, None, str(exc)) from exc
                time.sleep(0.5 * 2**attempt)
                continue
            if answer.status_code not in RETRIED or attempt == self.retries:
                return answer
            time.sleep(min(_retry_after(answer), 5.0))
        raise AssertionError("unreachable")  # the loop always returns or raises

    def close(self) -> None:
        self._http.close()


def _retry_after(answer: httpx.Response) -> float:
    try:
        return max(0.1, float(answer.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _error(answer: httpx.Response) -> CaptionError:
    try:
        detail = str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        detail = answer.text[:200]
    message = PLAIN_WORDS.get(answer.status_code, "The service could not caption that image.")
    return CaptionError(message, answer.status_code, detail)
