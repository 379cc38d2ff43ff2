"""Cross-site WebSocket protection for endpoints that open sessions without a credential.

Browsers attach ``Origin`` to every WebSocket handshake but never preflight it, so without this check any
web page a guest visits could open voice sessions from their browser (cross-site WebSocket hijacking).
``POST /api/webrtc/offer`` needs no such check: it accepts only ``application/json``, which forces a CORS
preflight the runtime never approves. Clients that are not browsers send no ``Origin`` and are allowed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from runtime.errors import Forbidden


def _authority(url: str) -> str | None:
    """``host:port`` of an http(s) URL, or None for anything else - including what ``urlsplit`` refuses.

    ``urlsplit`` raises ValueError for an unclosed IPv6 bracket (``http://[::1``) and ``.port`` for a port
    outside 0-65535 (``http://h:99999``); both come straight from a client's header, so they mean "not an
    origin we know" (a 403), never a 500.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    return f"{hostname.lower()}:{port or default}"


def _request_authority(conn: HTTPConnection, trust_proxy_headers: bool) -> str | None:
    forwarded = trust_proxy_headers and conn.headers.get("x-forwarded-host")
    host = (forwarded or conn.headers.get("host") or "").split(",")[0].strip()
    proto = trust_proxy_headers and conn.headers.get("x-forwarded-proto")
    scheme = (proto or conn.url.scheme).split(",")[0].strip()
    return _authority(("https://" if scheme in ("https", "wss") else "http://") + host)


def check_origin(conn: HTTPConnection, allowed: list[str], *, trust_proxy_headers: bool) -> None:
    """Raise Forbidden unless the handshake's Origin is this site or explicitly allowed."""
    origin = conn.headers.get("origin")
    if origin is None:
        return
    origin = origin.rstrip("/")
    if origin in (entry.rstrip("/") for entry in allowed):
        return
    authority = _authority(origin)
    if authority is None or authority != _request_authority(conn, trust_proxy_headers):
        raise Forbidden("this page's origin may not open voice sessions", code="origin_not_allowed")
