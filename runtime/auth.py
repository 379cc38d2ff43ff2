"""Credentials: the staff token and guest session tokens, one rule set for every entry point.

The REST API, the embedded events gateway and the cloud AppSync Lambda authorizer all call these
functions, so a guest can never see more through one door than through another.

Guest tokens are stateless HMACs over the session id and an expiry. That keeps them valid in every
worker process and on every host that shares ``SESSION_SECRET`` without a store round trip, which
matters because a guest's events subscription may land on a different host than the call itself.

Staff prove who they are either with the shared ``STAFF_TOKEN`` (standalone) or, with ``STAFF_AUTH=cognito``,
with an Amazon Cognito access token. The JWT check lives in ``runtime.staff_identity`` and is passed in as
``authenticate(..., staff=verifier)``, because this module deliberately uses only the standard library: the
Lambda authorizer bundles it as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

TOKEN_VERSION = "v1"  # noqa: S105 - a format tag, not a secret
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9-]{8,64}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: staff (sees everything), the guest of exactly one session, or a signed-in ``user``.

    ``user`` is someone the staff user pool signed in who is not in the staff group: who they are is proven
    (so a refusal is 403, not 401), nothing is granted. ``subject``/``username`` name a Cognito-signed-in
    person (the token's ``sub`` and ``username``) for logs and the web app; the shared staff token names nobody.
    """

    kind: Literal["staff", "guest", "user"]
    session_id: str | None = None
    subject: str | None = None
    username: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    def may_read_session(self, session_id: str) -> bool:
        return self.is_staff or (self.session_id is not None and _same(self.session_id, session_id))


def _same(a: str, b: str) -> bool:
    """Constant-time equality for any two strings (``compare_digest`` raises TypeError on non-ASCII str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(secret: str, payload: str) -> str:
    return _b64url(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def valid_session_id(session_id: str) -> bool:
    return bool(_SESSION_ID_RE.fullmatch(session_id))


def mint_session_token(secret: str, session_id: str, ttl_seconds: int, *, now: float | None = None) -> str:
    """Return a guest token that opens only ``session_id`` until it expires."""
    if not valid_session_id(session_id):
        raise ValueError("invalid session id")
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    payload = f"{TOKEN_VERSION}.{session_id}.{expires}"
    return f"{payload}.{_mac(secret, payload)}"


def verify_session_token(secret: str, token: str, *, now: float | None = None) -> str | None:
    """Return the session id a guest token opens, or None if it is forged, malformed or expired."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION:
        return None
    _, session_id, expires_text, mac = parts
    if not valid_session_id(session_id) or not (expires_text.isascii() and expires_text.isdigit()):
        return None
    expected = _mac(secret, f"{TOKEN_VERSION}.{session_id}.{expires_text}")
    if not _same(expected, mac):  # a non-ASCII MAC is a plain mismatch, never a TypeError
        return None
    if int(expires_text) < (now if now is not None else time.time()):
        return None
    return session_id


def bearer_value(header: str | None) -> str | None:
    """Accept ``Bearer <token>`` (HTTP) or a bare token (AppSync's Authorization header map entry)."""
    if not header:
        return None
    header = header.strip()
    if header[:7].lower() == "bearer ":
        header = header[7:].strip()
    return header or None


StaffVerifier = Callable[[str], "Principal | None"]


def authenticate(
    credential: str | None, *, staff_token: str | None, session_secret: str | None, now: float | None = None,
    staff: StaffVerifier | None = None,
) -> Principal | None:
    """Map a presented credential to a Principal, or None when it proves nothing.

    ``staff_token`` is the shared staff token (pass None when staff sign in with Cognito: it is then refused);
    ``staff`` verifies a bearer JWT (``runtime.staff_identity.CognitoStaffVerifier``) and may raise when it
    cannot judge one right now (its JWKS is unreachable), which callers turn into 503.
    """
    token = bearer_value(credential)
    if token is None:
        return None
    if staff_token and _same(token, staff_token):
        return Principal("staff")
    if session_secret:
        session_id = verify_session_token(session_secret, token, now=now)
        if session_id is not None:
            return Principal("guest", session_id)
    if staff is not None and token.count(".") == 2:  # a JWT (header.payload.signature), never a guest token
        return staff(token)
    return None


# --- events channel rules (DESIGN §5) -------------------------------------------------------------

CONVERSATIONS = "conversations"
BOOKINGS = "restaurant-booking"


def may_subscribe(principal: Principal | None, channel: str) -> bool:
    """Guests may subscribe only to their own ``/conversations/<sessionId>``; staff to anything.

    ``channel`` must already be normalised (leading slash, no trailing slash). Segments are compared
    exactly, never by prefix, so ``/conversations/<id>x`` or a wildcard never matches a guest.
    """
    if principal is None:
        return False
    if principal.is_staff:
        return True
    segments = channel.strip("/").split("/")
    return (
        len(segments) == 2
        and segments[0] == CONVERSATIONS
        and segments[1] != "*"
        and principal.may_read_session(segments[1])
    )


def may_publish(principal: Principal | None, channel: str) -> bool:
    """Publishing is server side only: browsers never publish, not even staff browsers.

    Server-side publishers authenticate with the API key / IAM (cloud) or the gateway's internal
    publisher (standalone), never with a Principal, so every Principal is refused here.
    """
    return False
