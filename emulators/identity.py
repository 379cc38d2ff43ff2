"""The credentials a local stand-in for AWS accepts: shared by the credential endpoints and the services.

A local credentials endpoint (ECS container endpoint, IMDSv2) issues short-lived keys into a
``CredentialBook``; a local service (the Nova Sonic emulator, the AppSync-protocol endpoint) checks every
signature it receives against the same book, so a request signed with a key the book never issued, with
the wrong secret, without the session token, or after expiry is refused the way AWS refuses it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expires_at: float | None = None  # epoch seconds; None for long-term keys

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at


class CredentialBook:
    """Thread-safe record of every credential issued; ``lookup`` is what a verifying service asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, IssuedCredentials] = {}

    def add(self, credentials: IssuedCredentials) -> IssuedCredentials:
        with self._lock:
            self._by_key[credentials.access_key_id] = credentials
        return credentials

    def issue(self, *, lifetime_seconds: float | None, temporary: bool = True) -> IssuedCredentials:
        """Mint fresh random credentials (``ASIA…`` with a session token when temporary, like STS)."""
        prefix = "ASIA" if temporary else "AKIA"
        key = prefix + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        return self.add(IssuedCredentials(
            access_key_id=key,
            secret_access_key=secrets.token_urlsafe(30),
            session_token=secrets.token_urlsafe(96) if temporary else None,
            expires_at=None if lifetime_seconds is None else time.time() + lifetime_seconds,
        ))

    def lookup(self, access_key_id: str) -> IssuedCredentials | None:
        with self._lock:
            return self._by_key.get(access_key_id)

    def issued(self) -> list[IssuedCredentials]:
        with self._lock:
            return list(self._by_key.values())
