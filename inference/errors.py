"""Domain errors of the service. They know nothing of HTTP: handlers.py maps them to statuses."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to a client; ``code`` names it in the body."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """A request that is malformed: no image, bad JSON, bad base64, bad multipart."""

    code = "bad_request"


class PayloadTooLarge(ServiceError):
    """A body or an image over the configured byte or pixel limits."""

    code = "too_large"


class NotAnImage(ServiceError):
    """Bytes, or a content type, that are not an image the service reads."""

    code = "not_an_image"


class Undecodable(ServiceError):
    """An image in a known format that cannot be decoded (truncated, corrupt)."""

    code = "undecodable"


class InvalidOptions(ServiceError):
    """Options out of range (``beam_size``, ``max_length``) or of the wrong type."""

    code = "invalid_options"


class BodyTimeout(ServiceError):
    """A body that did not arrive within the request deadline (a slow or stalled client)."""

    code = "body_timeout"


class ModelNotFound(ServiceError):
    """A V2 request for a model name this service does not serve."""

    code = "model_not_found"


class QueueFull(ServiceError):
    """The bounded queue is full; the client should retry after ``retry_after`` seconds."""

    code = "overloaded"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(ServiceError):
    """The model is not loaded or warmed up yet, failed to load, or the service is draining."""

    code = "not_ready"


class DeadlineExceeded(ServiceError):
    """A request that could not be answered within its deadline."""

    code = "deadline_exceeded"
