"""Short-lived TURN credentials in coturn's REST scheme (``use-auth-secret`` / ``static-auth-secret``).

The browser gets a username ``"<expiry unix time>:<id>"`` and ``base64(HMAC-SHA1(secret, username))``
as the password; coturn recomputes the same HMAC with the shared secret and refuses expired names. The
signaling service never has to tell coturn about a session, so TURN servers scale on their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


def turn_credentials(secret: str, user_id: str, ttl_seconds: int, *, now: float | None = None) -> tuple[str, str]:
    """Return (username, credential) valid for ``ttl_seconds``."""
    if ":" in user_id:
        raise ValueError("user id must not contain ':'")
    expires = int((time.time() if now is None else now) + ttl_seconds)
    username = f"{expires}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(*, stun_urls: list[str], turn_urls: list[str], turn_secret: str | None, user_id: str,
                ttl_seconds: int, now: float | None = None) -> list[dict[str, Any]]:
    """The ``iceServers`` list for an ``RTCPeerConnection`` (browser shape: urls, username, credential)."""
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, user_id, ttl_seconds, now=now)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers
