"""Per-client rate limits on feedback (feedback/limits.py), with the limits library."""

from __future__ import annotations

import pytest

from feedback.limits import FeedbackLimiter, LimitError, client_key


def test_each_window_must_have_room_and_a_refusal_is_not_counted():
    limiter = FeedbackLimiter("3/minute;4/hour")
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert 0 < limiter.retry_after("a") <= 60
    assert limiter.allow("b") and limiter.retry_after("b") == 0  # clients count apart
    hourly = FeedbackLimiter("10/minute;2/hour")
    assert [hourly.allow("c") for _ in range(3)] == [True, True, False]
    assert 60 < hourly.retry_after("c") <= 3600


def test_unusable_rules_are_refused_with_their_text():
    with pytest.raises(LimitError, match="'often'"):
        FeedbackLimiter("often")
    with pytest.raises(LimitError, match="nosuch://"):
        FeedbackLimiter("1/minute", "nosuch://x")


def test_the_client_is_whoever_the_trusted_evidence_names():
    headers = {
        "X-Forwarded-For": "6.6.6.6, 203.0.113.9, 35.191.0.1",
        "X-Goog-Authenticated-User-Email": "accounts.google.com:ana@example.com",
    }
    peer = "10.0.0.7"
    # By default neither header is trusted: anyone can write them.
    assert client_key(headers, peer, "s1") == client_key({}, peer, "s2")
    # Behind Google's load balancer (one hop): the address it saw, not the one typed.
    behind = client_key(headers, peer, "s", proxy_hops=1)
    assert behind == client_key(
        {"X-Forwarded-For": "1.1.1.1, 203.0.113.9, 35.191.0.1"}, None, "x", 1
    )
    assert behind != client_key(headers, peer, "s")
    # Behind IAP: the signed-in user, wherever they connect from.
    iap = client_key(headers, peer, "s", proxy_hops=1, trust_iap=True)
    assert iap == client_key(
        {"x-goog-authenticated-user-email": headers["X-Goog-Authenticated-User-Email"]},
        None,
        "z",
        trust_iap=True,
    )
    assert iap != behind
    # Nothing at all: the browser session.
    assert client_key({}, None, "s1") != client_key({}, None, "s2")
    assert "ana" not in iap and len(iap) == 32
