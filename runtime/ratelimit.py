"""Per-client token buckets for public endpoints (offers, bookings, event publishes).

In-process by design: a session lives wholly in one worker, and the deployed stack adds the WAF rate
rule (2000 requests / 5 min / IP) in front; this limit protects each process from a single noisy client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from runtime.errors import TooManyRequests


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: int, *, max_clients: int = 10_000) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    def check(self, conn: HTTPConnection, what: str = "requests") -> None:
        if not self.allow(client_key(conn)):
            raise TooManyRequests(f"too many {what} from this address; slow down and retry shortly")

    def _evict(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


def client_key(conn: HTTPConnection) -> str:
    """The caller's address; behind the ALB the first X-Forwarded-For hop is the client."""
    trust_proxy = getattr(conn.app.state, "settings", None)
    forwarded = conn.headers.get("x-forwarded-for")
    if forwarded and trust_proxy is not None and getattr(trust_proxy, "trust_proxy_headers", False):
        return forwarded.split(",")[0].strip()
    return conn.client.host if conn.client else "unknown"
