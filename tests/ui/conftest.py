"""The page's tests queue feedback too: the feedback tests' factory, shared rather than copied."""

from tests.feedback.conftest import make

__all__ = ["make"]
