"""Submitting feedback from the page: to the database, or to the outbox when it is down."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from feedback.store import StoreUnavailable

if TYPE_CHECKING:
    from feedback.metrics import FeedbackMetrics
    from feedback.outbox import Outbox
    from feedback.record import Feedback
    from feedback.store import FeedbackStore

log = logging.getLogger(__name__)


def submit(
    feedback: Feedback,
    store: FeedbackStore,
    outbox: Outbox,
    metrics: FeedbackMetrics | None = None,
) -> str:
    """Store one feedback, or queue it durably when the database cannot be reached.

    Returns:
        ``"stored"`` or ``"queued"``; either way nothing is lost.
    """
    try:
        store.save(feedback)
        outcome = "stored"
    except StoreUnavailable as exc:
        log.warning("feedback %s queued: %s", feedback.request_id, exc)
        outbox.put(feedback)
        outcome = "queued"
        if metrics is not None:
            metrics.store_errors.inc()
    if metrics is not None:
        metrics.feedback.labels(
            model_version=feedback.model_version,
            rating=feedback.rating,
            corrected=str(feedback.correction is not None).lower(),
            outcome=outcome,
        ).inc()
    return outcome
