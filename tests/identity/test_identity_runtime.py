"""The runtime with STAFF_AUTH=cognito: staff APIs and the embedded gateway take Cognito access tokens only."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import RSAKey

from runtime.app import create_app
from runtime.settings import Settings, load_settings
from tests.events.helpers import SECRET, STAFF, open_client, serve
from tests.identity.conftest import Identities, sign_in

# One runtime for the module (start-up and shutdown cost ~0.5 s each on a loaded machine).
pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")]  # pycognito
FUTURE = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()


def cognito_settings(tmp_path: Path, identities: Identities, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "data_dir": tmp_path, "staff_token": STAFF, "session_secret": SECRET, "staff_auth": "cognito",
        "cognito_user_pool_id": identities.pool.pool_id, "cognito_client_id": identities.pool.client_id,
        "cognito_endpoint_url": identities.cognito.url}
    options.update(overrides)
    return load_settings(**options)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(tmp_path_factory: pytest.TempPathFactory,
                  identities: Identities) -> AsyncIterator[tuple[Any, httpx.AsyncClient, str]]:
    app = create_app(cognito_settings(tmp_path_factory.mktemp("runtime"), identities))
    async with serve(app) as address, httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http:
        yield app, http, address


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tampered(token: str) -> str:
    """Same signature, payload changed to claim another user."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["username"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_a_staff_access_token_lists_bookings(runtime: tuple[Any, httpx.AsyncClient, str],
                                                   identities: Identities) -> None:
    _, http, _ = runtime
    response = await http.get("/api/bookings", headers=bearer(identities.alice.access))
    assert response.status_code == 200, response.text
    assert "bookings" in response.json()


async def test_tokens_that_prove_nothing_get_401_and_a_non_staff_user_403(
        runtime: tuple[Any, httpx.AsyncClient, str], identities: Identities) -> None:
    _, http, _ = runtime
    refused = {
        "the shared staff token": STAFF,
        "an id token": identities.alice.id,
        "a tampered token": tampered(identities.alice.access),
        "another pool's token": identities.carol_other_pool.access,
        "another app client's token": identities.alice_other_client.access,
        "garbage": "eyJhbGciOi.not.a-jwt",
    }
    for what, token in refused.items():
        response = await http.get("/api/bookings", headers=bearer(token))
        assert response.status_code == 401, (what, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
    assert (await http.get("/api/bookings")).status_code == 401
    not_staff = await http.get("/api/bookings", headers=bearer(identities.bob.access))
    assert not_staff.status_code == 403, not_staff.text
    assert not_staff.json()["error"]["code"] == "forbidden"


async def test_an_expired_access_token_gets_401(runtime: tuple[Any, httpx.AsyncClient, str],
                                                identities: Identities, monkeypatch: pytest.MonkeyPatch) -> None:
    _, http, _ = runtime
    # Minted by the stand-in 60 min 10 s ago: a real token whose hour ended 10 s ago (more than the leeway).
    monkeypatch.setattr(identities.cognito.state, "clock", lambda: time.time() - 3610)
    old = sign_in(identities.cognito, identities.pool, "alice")
    monkeypatch.setattr(identities.cognito.state, "clock", time.time)
    response = await http.get("/api/bookings", headers=bearer(old.access))
    assert response.status_code == 401, response.text


async def test_config_tells_the_web_app_how_staff_sign_in(runtime: tuple[Any, httpx.AsyncClient, str],
                                                          identities: Identities) -> None:
    _, http, _ = runtime
    body = (await http.get("/api/config")).json()
    assert body["staffAuth"] == {"mode": "cognito", "region": "us-east-1", "userPoolId": identities.pool.pool_id,
                                 "clientId": identities.pool.client_id, "endpoint": identities.cognito.url,
                                 "group": "staff"}


async def test_a_staff_token_subscribes_to_bookings_on_the_embedded_gateway(
        runtime: tuple[Any, httpx.AsyncClient, str], identities: Identities) -> None:
    _, http, address = runtime
    url = f"ws://{address}/event/realtime"
    async with open_client(url, {"Authorization": identities.alice.access}) as staff:
        await staff.send({"type": "connection_init"})
        assert (await staff.recv())["type"] == "connection_ack"
        assert await staff.subscribe("all", "/restaurant-booking/*") == {"type": "subscribe_success", "id": "all"}
        refused = await staff.subscribe("bob", "/restaurant-booking/*", {"Authorization": identities.bob.access})
        assert refused["type"] == "subscribe_error"
        refused = await staff.subscribe("id", "/restaurant-booking/*", {"Authorization": identities.alice.id})
        assert refused["type"] == "subscribe_error"
        booking = await http.post("/api/bookings", json={"name": "Ada Lovelace", "date": FUTURE, "hour": "19:00",
                                                         "num_guests": 2})
        assert booking.status_code == 201, booking.text
        frame = await staff.recv(wait=3.0)
        assert frame["id"] == "all"
        assert json.loads(frame["event"])["booking"]["booking_id"] == booking.json()["booking_id"]


async def test_a_staff_subscription_ends_when_the_access_token_expires(
        runtime: tuple[Any, httpx.AsyncClient, str], identities: Identities, monkeypatch: pytest.MonkeyPatch) -> None:
    app, _, address = runtime
    async with open_client(f"ws://{address}/event/realtime", {"Authorization": identities.alice.access}) as staff:
        assert (await staff.subscribe("all", "/restaurant-booking/*"))["type"] == "subscribe_success"
        verifier = app.state.services.staff_verifier
        monkeypatch.setattr(verifier, "clock", lambda: time.time() + 3700)  # the token's hour is over
        frame = await staff.recv(wait=5.0)  # the gateway's recheck sweep (every second) ends it
        assert frame["type"] == "subscribe_error", frame
        assert frame["id"] == "all"


async def test_the_gateway_refuses_to_connect_other_credentials(runtime: tuple[Any, httpx.AsyncClient, str],
                                                                identities: Identities) -> None:
    _, _, address = runtime
    for who, token in {"shared staff token": STAFF, "non-staff user": identities.bob.access,
                       "id token": identities.alice.id}.items():
        async with open_client(f"ws://{address}/event/realtime", {"Authorization": token}) as client:
            frame = await client.recv()
            assert frame["type"] == "connection_error", (who, frame)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_jwks_outage_is_a_503_with_a_json_error_and_costs_one_fetch(tmp_path: Path,
                                                                            identities: Identities) -> None:
    app = create_app(cognito_settings(tmp_path, identities, cognito_endpoint_url=closed_port_url()))
    async with serve(app) as address, httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http:
        verifier = app.state.services.staff_verifier
        fetches = verifier.fetches  # the start-up prefetch failed
        for _ in range(3):
            response = await http.get("/api/bookings", headers=bearer(identities.alice.access))
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "staff_auth_unavailable"
        assert verifier.fetches == fetches  # failures are remembered: an outage is not a fetch per request


async def test_unknown_key_ids_refetch_the_jwks_at_most_once_per_interval(
        runtime: tuple[Any, httpx.AsyncClient, str], identities: Identities) -> None:
    app, http, _ = runtime
    verifier = app.state.services.staff_verifier
    assert (await http.get("/api/bookings", headers=bearer(identities.alice.access))).status_code == 200
    fetches = verifier.fetches
    claims = {"iss": verifier.issuer, "token_use": "access", "client_id": identities.pool.client_id,
              "sub": "x", "username": "mallory", "exp": int(time.time()) + 600, "cognito:groups": ["staff"]}
    for n in range(3):
        key = RSAKey.generate_key(2048, parameters={"kid": f"forged-{n}"}, private=True)
        forged = jwt.encode({"alg": "RS256", "kid": f"forged-{n}"}, claims, key)
        assert (await http.get("/api/bookings", headers=bearer(forged))).status_code == 401
    assert verifier.fetches <= fetches + 1


async def test_a_key_fetch_never_holds_up_the_caller_it_runs_behind(identities: Identities) -> None:
    """Verification runs on the event loop, beside every call's audio: a JWKS fetch must not block it.

    The pool's keys come through a transport that hangs until released: while it hangs, the staff request
    is answered at once (503, retry) instead of waiting on the network; once the keys are in, it passes.
    """
    import threading

    from runtime.staff_identity import CognitoStaffVerifier, StaffAuthUnavailable

    pool, cognito = identities.pool, identities.cognito
    release, entered = threading.Event(), threading.Event()
    real = httpx.HTTPTransport()

    class HangingTransport(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            entered.set()
            assert release.wait(30), "the test never released the key fetch"
            return real.handle_request(request)

    verifier = CognitoStaffVerifier(pool_id=pool.pool_id, client_id=pool.client_id, region=pool.region,
                                    endpoint_url=cognito.url, transport=HangingTransport())
    with pytest.raises(StaffAuthUnavailable):
        verifier(identities.alice.access)  # returned while the fetch it started still hangs
    assert await asyncio.to_thread(entered.wait, 10)
    with pytest.raises(StaffAuthUnavailable):
        verifier(identities.alice.access)  # still fetching: no second fetch, no wait
    assert verifier.fetches == 1
    release.set()
    deadline = time.monotonic() + 10
    while True:
        try:
            principal = verifier(identities.alice.access)
            break
        except StaffAuthUnavailable:
            assert time.monotonic() < deadline, "the keys never arrived"
            await asyncio.sleep(0.02)
    assert principal is not None
    assert principal.is_staff
