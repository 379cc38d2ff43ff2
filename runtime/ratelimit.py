"""Who the client is (behind the ALB) and per-client token buckets for public endpoints.

``client_address`` is the one place that decides which address a request came from; every per-client
limit (request rates, booking limits, call caps) keys on ``client_key`` built from it, so a forged
``X-Forwarded-For`` hop can never buy a client a fresh allowance (docs/abuse-limits.md).

The token buckets are in-process on purpose: they shield one process's CPU from one noisy client, a cost
that is per process. What a client may *hold* - bookings, seats - is limited in the store, shared by every
worker and host (``runtime.bookings.limits``); across hosts the WAF rate rule (2000 requests / 5 min / IP)
bounds request rates in front of the ALB.
"""

from __future__ import annotations

import ipaddress
import time

from starlette.requests import HTTPConnection

from runtime.errors import TooManyRequests

# IPv6 clients are keyed by their /64: one subscriber usually gets a whole /64 (RFC 6177), so per-address
# keys would hand one client 2**64 fresh allowances.
IPV6_KEY_PREFIX = 64


class TokenBucket:
    """A token bucket: ``rate`` tokens per second up to ``burst``; ``take`` spends them.

    The one bucket of the runtime (request rates per client here, frame and audio-byte rates per call in
    ``runtime.media.ws_audio``). Time comes from the caller (monotonic seconds) so tests need no sleeping.
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic() if now is None else now

    def level(self, now: float) -> float:
        """Tokens available at ``now`` (without spending any)."""
        return min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)

    def take(self, amount: float = 1.0, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = self.level(now)
        self.updated = max(self.updated, now)
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class RateLimiter:
    """One ``TokenBucket`` per client key, bounded to ``max_clients`` keys (full buckets are evicted first)."""

    def __init__(self, rate_per_second: float, burst: int, *, max_clients: int = 10_000) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(1.0, now)

    def check(self, conn: HTTPConnection, what: str = "requests") -> None:
        if not self.allow(client_key(conn)):
            raise TooManyRequests(f"too many {what} from this address; slow down and retry shortly")

    def _evict(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.level(now) >= self.burst]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a proxy writes it: bare, ``v4:port``, ``[v6]`` or ``[v6]:port``; None if not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _canonical(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """One spelling per address (``::ffff:192.0.2.1`` is ``192.0.2.1``), so one client has one key."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def forwarded_client(forwarded_for: list[str], peer: str | None, trusted_hops: int) -> str:
    """The client address given the ``X-Forwarded-For`` header values, the TCP peer and the trusted hops.

    Each trusted proxy *appends* the address it saw, so with ``trusted_hops`` proxies in front (the ALB
    alone: 1) the client is the ``trusted_hops``-th entry from the right; everything left of it was written
    by the client and is ignored. With fewer entries than hops (the request did not pass all the proxies)
    or an entry that is not an address, the TCP peer is the client. ``trusted_hops=0`` ignores the header.
    """
    entries = [part.strip() for value in forwarded_for for part in value.split(",")]
    entries = [part for part in entries if part]
    if trusted_hops > 0 and len(entries) >= trusted_hops:
        chosen = _ip(entries[-trusted_hops])
        if chosen is not None:
            return _canonical(chosen)
    peer_ip = _ip(peer) if peer else None
    return _canonical(peer_ip) if peer_ip is not None else peer or "unknown"


def client_address(conn: HTTPConnection) -> str:
    """The address the outermost trusted proxy (the ALB) saw the client connect from.

    Without ``TRUST_PROXY_HEADERS`` it is the TCP peer. With it, the ``TRUSTED_PROXY_HOPS``-th
    ``X-Forwarded-For`` entry from the right (``forwarded_client``). The server must not rewrite the peer
    from the header itself (uvicorn's ``--proxy-headers`` with ``--forwarded-allow-ips='*'`` takes the
    *leftmost*, client-written entry).
    """
    settings = getattr(conn.app.state, "settings", None)
    peer = conn.client.host if conn.client else None
    if settings is None or not settings.trust_proxy_headers:
        return forwarded_client([], peer, 0)
    values = [v.decode("latin-1") for k, v in conn.scope.get("headers", ()) if k == b"x-forwarded-for"]
    return forwarded_client(values, peer, settings.trusted_proxy_hops)


def address_key(address: str) -> str:
    """The limit key of an address: an IPv4 address itself, an IPv6 address its /64 network."""
    ip = _ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_KEY_PREFIX), strict=False))
    return str(ip) if ip is not None else address


def client_key(conn: HTTPConnection) -> str:
    """The key every per-client limit uses: ``address_key(client_address(conn))``."""
    return address_key(client_address(conn))
