"""Rate limits on feedback per client: feedback trains models, so one client cannot flood it.

The counting is the ``limits`` library's (moving windows, in memory or in a shared
store such as MongoDB or Redis, so that several page replicas count together), rather
than a hand-written token bucket.

Who a client is, best evidence first (:func:`client_key`): the signed-in user that
Google's Identity-Aware Proxy names in ``X-Goog-Authenticated-User-Email`` (when IAP is
in front), else the client address the operator's proxies recorded in
``X-Forwarded-For``, else the peer address, else the browser session. Only a hash of it
is kept as the counter's key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from limits import RateLimitItem, parse_many, storage, strategies
from limits.errors import ConfigurationError

IAP_USER = "X-Goog-Authenticated-User-Email"
FORWARDED_FOR = "X-Forwarded-For"
NAMESPACE = "captioner-feedback"


class LimitError(ValueError):
    """Rate-limit rules that cannot be parsed, or a storage that cannot be used."""


class FeedbackLimiter:
    """Every window of RULES must have room for a client's next feedback.

    Args:
        rules: windows in the ``limits`` notation, e.g. ``"5/minute;60/hour"``.
        storage_uri: where the counters live: ``memory://`` (this process), or a
            shared store such as ``mongodb://HOST/`` or ``redis://HOST``.
    """

    def __init__(self, rules: str, storage_uri: str = "memory://") -> None:
        try:
            self.items: list[RateLimitItem] = list(parse_many(rules))
            backend = storage.storage_from_string(storage_uri)
        except (ValueError, ConfigurationError) as exc:
            raise LimitError(f"feedback rate limit {rules!r} on {storage_uri}: {exc}") from exc
        if not self.items:
            raise LimitError(f"feedback rate limit {rules!r} names no window")
        self._limiter = strategies.MovingWindowRateLimiter(backend)

    def allow(self, client: str) -> bool:
        """Count one feedback for CLIENT if every window has room; whether it did.

        A refused feedback is not counted, so a client that waits gets through.
        """
        if not all(self._limiter.test(item, NAMESPACE, client) for item in self.items):
            return False
        for item in self.items:
            self._limiter.hit(item, NAMESPACE, client)
        return True

    def retry_after(self, client: str) -> float:
        """Seconds until CLIENT may send feedback again (0 when it may now)."""
        now = time.time()
        waits = [
            stats.reset_time - now
            for item in self.items
            if (stats := self._limiter.get_window_stats(item, NAMESPACE, client)).remaining <= 0
        ]
        return max([0.0, *waits])


def client_key(
    headers: Mapping[str, str],
    peer: str | None,
    session: str,
    proxy_hops: int = 0,
    trust_iap: bool = False,
) -> str:
    """A stable, hashed key for whoever sent a request (see the module docstring).

    Args:
        headers: the request's headers (any case).
        peer: the address the connection came from.
        session: the browser session, the last resort.
        proxy_hops: addresses the operator's proxies append to ``X-Forwarded-For`` after
            the client's (Google's load balancer: 1); 0 ignores the header, which anyone
            can write.
        trust_iap: take the IAP user header, which only IAP in front can vouch for.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    who = lowered.get(IAP_USER.lower()) if trust_iap else None
    if not who and proxy_hops > 0:
        hops = [a.strip() for a in lowered.get(FORWARDED_FOR.lower(), "").split(",") if a.strip()]
        if len(hops) > proxy_hops:
            who = f"ip:{hops[-proxy_hops - 1]}"
    if not who and peer:
        who = f"ip:{peer}"
    who = who or f"session:{session}"
    return hashlib.sha256(who.encode()).hexdigest()[:32]
