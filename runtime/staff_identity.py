"""Staff identity from Amazon Cognito: verify a user-pool access token and say who the staff member is.

With ``STAFF_AUTH=cognito`` every staff API and the embedded events gateway take the Cognito **access token**
the web app got by SRP sign-in (docs/staff-sign-in.md), and never the shared ``STAFF_TOKEN``. A token proves
staff only when all of these hold, as AWS says to verify a user-pool JWT
(https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-tokens-verifying-a-jwt.html):

- an RS256 signature by a key of the pool's JWKS (``kid`` in the header);
- ``iss`` is exactly ``https://cognito-idp.<region>.amazonaws.com/<poolId>`` (a token of another pool fails);
- ``token_use == "access"`` (an id token is refused: it is meant for the client, not for resource servers) and
  ``client_id`` is the web app's client (a token minted for another app of the same pool fails);
- ``exp`` is in the future, within a small clock-skew leeway;
- ``cognito:groups`` contains the staff group; a valid token without it proves who the caller is but grants
  nothing (``Principal("user")``: 403, not 401).

JWT parsing and signature checks are joserfc's (a maintained JOSE implementation, already required by moto for
the tests) on ``cryptography``; the claim rules are spelled out here because they are the product's policy.

The JWKS is fetched with a deadline and cached. An unknown ``kid`` (key rotation) triggers a refetch at most
once per ``refetch_seconds``, so forged tokens with random kids cannot turn the runtime into a JWKS flooder. When
the JWKS cannot be fetched the caller gets ``StaffAuthUnavailable`` (REST answers 503 with a JSON error, the
gateway refuses): never a 500 and never a hang. A failed fetch is remembered for ``retry_seconds`` so an outage
costs one deadline, not one per request. Verification is synchronous (the REST guards and the gateway's
``caller`` are), so a fetch blocks for at most ``fetch_timeout_seconds``; ``prefetch`` at start-up keeps it off
the request path in the normal case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from runtime.auth import Principal, bearer_value
from runtime.events.gateway import Caller, EventsGateway
from runtime.settings import Settings

log = logging.getLogger("runtime.staff_identity")


class StaffAuthUnavailable(Exception):
    """The pool's signing keys cannot be had right now: the caller cannot be judged (503), not refused (401)."""


class _Refused(Exception):
    """Internal: why a token proves nothing (logged at info, never with the token)."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class CognitoStaffVerifier:
    """Callable ``token -> Principal | None`` for ``runtime.auth.authenticate(staff=...)``."""

    def __init__(self, *, pool_id: str, client_id: str, region: str, group: str = "staff",
                 endpoint_url: str | None = None, fetch_timeout_seconds: float = 3.0,
                 refetch_seconds: float = 30.0, retry_seconds: float = 5.0, leeway_seconds: float = 5.0,
                 clock: Callable[[], float] = time.time, transport: httpx.BaseTransport | None = None) -> None:
        self.pool_id, self.client_id, self.region, self.group = pool_id, client_id, region, group
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
        base = endpoint_url.rstrip("/") + f"/{pool_id}" if endpoint_url else self.issuer
        self.jwks_url = f"{base}/.well-known/jwks.json"
        self.fetch_timeout = fetch_timeout_seconds
        self.refetch_seconds, self.retry_seconds, self.leeway = refetch_seconds, retry_seconds, leeway_seconds
        self.clock = clock
        self._transport = transport
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at: float | None = None  # last successful fetch
        self._failed_at: float | None = None  # last failed fetch
        self._refreshing = False  # a background fetch is running
        self.fetches = 0  # observability for tests and logs: how often the JWKS was asked for

    @classmethod
    def from_settings(cls, settings: Settings) -> CognitoStaffVerifier:
        assert settings.cognito_user_pool_id  # Settings validates both for STAFF_AUTH=cognito
        assert settings.cognito_client_id
        return cls(pool_id=settings.cognito_user_pool_id, client_id=settings.cognito_client_id,
                   region=settings.cognito_pool_region or "", group=settings.cognito_staff_group,
                   endpoint_url=settings.cognito_endpoint_url)

    # --- keys -----------------------------------------------------------------------------------

    def _fetch(self) -> None:
        """One bounded JWKS fetch. Network I/O happens outside the lock, which guards only the swap."""
        with self._lock:
            self.fetches += 1
        try:
            with httpx.Client(timeout=self.fetch_timeout, transport=self._transport) as client:
                response = client.get(self.jwks_url)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError, TypeError, KeyError) as exc:
            with self._lock:
                self._failed_at, self._refreshing = self.clock(), False
            log.warning("staff sign-in: cannot fetch the user pool's JWKS from %s: %s", self.jwks_url,
                        type(exc).__name__)
            raise StaffAuthUnavailable("the staff user pool's signing keys cannot be fetched") from exc
        with self._lock:
            self._keys = keys
            self._kids = frozenset(str(k.kid) for k in keys.keys if k.kid)
            self._fetched_at, self._failed_at, self._refreshing = self.clock(), None, False

    def _refresh_in_background(self) -> None:
        """Fetch the JWKS on a thread of its own; the caller holds the lock.

        Verification runs on the event loop (``authenticate`` is synchronous), so it must never wait for
        the network: a fetch there would stall every call's audio for up to the fetch deadline, and any
        client can ask for one with a token naming an unknown key id.
        """
        if self._refreshing:
            return
        self._refreshing = True

        def run() -> None:
            with contextlib.suppress(StaffAuthUnavailable):
                self._fetch()

        threading.Thread(target=run, name="staff-jwks", daemon=True).start()

    def _keys_for(self, kid: str) -> KeySet:
        with self._lock:
            now = self.clock()
            if self._keys is not None and kid in self._kids:
                return self._keys
            recently_failed = self._failed_at is not None and now - self._failed_at < self.retry_seconds
            if recently_failed or self._refreshing:
                raise StaffAuthUnavailable("the staff user pool's signing keys cannot be fetched")
            recently_fetched = self._fetched_at is not None and now - self._fetched_at < self.refetch_seconds
            if self._keys is None or not recently_fetched:
                # No keys yet, or a key id we have not seen (a rotation, or a forged token): look again, off
                # the event loop; this request is told to retry (503), which is what a rotation costs.
                self._refresh_in_background()
                raise StaffAuthUnavailable("the staff user pool's signing keys are being refreshed; try again")
            raise _Refused("unknown signing key")

    async def prefetch(self) -> None:
        """Load the JWKS off the event loop at start-up; an outage now is logged, not fatal (retried later)."""
        with contextlib.suppress(StaffAuthUnavailable):
            await asyncio.to_thread(self._fetch)

    # --- verification ---------------------------------------------------------------------------

    def __call__(self, token: str) -> Principal | None:
        try:
            principal = self._verify(token)
        except _Refused as exc:
            log.info("staff sign-in refused: %s", exc)
            return None
        if principal.is_staff:
            log.debug("staff request by %s (sub %s)", principal.username, principal.subject)
        else:
            log.info("staff sign-in refused: %s (sub %s) is not in group %r", principal.username,
                     principal.subject, self.group)
        return principal

    def _verify(self, token: str) -> Principal:
        if not looks_like_jwt(token):
            raise _Refused("not a JWT")
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError, TypeError) as exc:
            raise _Refused("malformed JWT") from exc
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str):
            raise _Refused("not an RS256 token with a key id")
        keys = self._keys_for(kid)
        try:
            claims: Mapping[str, Any] = jwt.decode(token, keys, algorithms=["RS256"]).claims
        except (JoseError, ValueError, TypeError) as exc:
            raise _Refused("bad signature") from exc
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        if claims.get("iss") != self.issuer:
            raise _Refused("issued by another user pool")
        if claims.get("token_use") != "access":
            raise _Refused(f"token_use is {str(claims.get('token_use'))[:16]!r}, not an access token")
        if claims.get("client_id") != self.client_id:
            raise _Refused("issued to another app client")
        exp = claims.get("exp")
        now = self.clock()
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp + self.leeway <= now:
            raise _Refused("expired")
        iat = claims.get("iat")
        if isinstance(iat, int | float) and not isinstance(iat, bool) and iat - self.leeway > now:
            raise _Refused("issued in the future")
        sub, username = claims.get("sub"), claims.get("username")
        if not isinstance(sub, str) or not sub:
            raise _Refused("no subject")
        name = username if isinstance(username, str) and username else sub
        groups = claims.get("cognito:groups")
        in_group = isinstance(groups, list) and self.group in groups
        return Principal("staff" if in_group else "user", subject=sub, username=name)


class CognitoEventsGateway(EventsGateway):
    """The embedded events gateway taking Cognito staff tokens (and never the shared staff token).

    Guests' session tokens and the publisher's API key work as in the base gateway; a bearer JWT is checked by
    the same verifier as the REST API, so a browser gets the same answer through both doors. A staff
    subscription is rechecked like a guest's and ends (``subscribe_error``) when the access token expires, so
    removing someone from the pool or the group takes effect within the token's lifetime even on an open socket.
    """

    def __init__(self, *, staff: CognitoStaffVerifier, **kwargs: Any) -> None:
        kwargs["staff_token"] = None
        super().__init__(**kwargs)
        self.staff = staff

    def _expires(self, caller: Caller) -> bool:
        """A signed-in staff member's subscriptions end with their access token, as a guest's do.

        Rechecks use the cached JWKS (the token's key is known), so a JWKS outage does not end them.
        """
        if caller.principal is not None and caller.principal.subject is not None:
            return True
        return super()._expires(caller)

    def caller(self, headers: Mapping[str, Any] | None) -> Caller | None:
        base = super().caller(headers)
        if base is not None and base.principal is not None:
            return base
        lowered = {str(k).lower(): v for k, v in (headers or {}).items() if isinstance(v, str)}
        token = bearer_value(lowered.get("authorization"))
        if token is None or not looks_like_jwt(token):
            return base
        try:
            principal = self.staff(token)
        except StaffAuthUnavailable:
            return base  # cannot judge the token now: it proves nothing (the client retries)
        if principal is None or not principal.is_staff:
            return base  # a pool user outside the staff group may not even connect: there is nothing to see
        return Caller(principal, base.server if base is not None else False)
