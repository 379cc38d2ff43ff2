"""The AppSync Events stand-in in Cognito mode: the user-pool provider, per-namespace modes, staff_only.js."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from emulators.appsync_events import STAFF_ONLY_JS, AppSyncJsHandler, CognitoAuth, LocalEventsApi
from emulators.identity import CredentialBook
from runtime.auth import mint_session_token
from tests.events.helpers import SECRET, STAFF, open_client, serve
from tests.identity.conftest import Identities, sign_in

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")]  # pycognito
SID = "sess-aaaa-1111"
EVENT = json.dumps({"type": "booking.created", "eventId": "booking:bk-1:created"})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def appsync(identities: Identities) -> AsyncIterator[tuple[LocalEventsApi, str]]:
    # The authorizer Lambda's environment as the platform sets it with staffAuth=cognito.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STAFF_TOKEN", STAFF)
        env.setenv("SESSION_SECRET", SECRET)
        env.setenv("STAFF_AUTH", "cognito")
        env.delenv("STAFF_TOKEN_SECRET_ARN", raising=False)
        env.delenv("SESSION_SECRET_ARN", raising=False)
        pool = identities.pool
        cognito = CognitoAuth(user_pool_id=pool.pool_id, region=pool.region,
                              app_id_client_regex=f"^{re.escape(pool.client_id)}$",
                              jwks_url=identities.cognito.jwks_url(pool))
        api = LocalEventsApi(CredentialBook(), namespaces=["conversations", "restaurant-booking"],
                             keepalive_seconds=0.2, cognito=cognito)
        async with serve(api.app) as address:
            yield api, address
        await api.close()


async def subscribe(address: str, token: str, channel: str) -> dict[str, Any]:
    async with open_client(f"ws://{address}/event/realtime", {"Authorization": token}) as client:
        with contextlib.suppress(ConnectionClosed):  # a refused connection is already closing
            await client.send({"type": "connection_init"})
        first = await client.recv()
        if first["type"] == "connection_error":
            return first
        assert first["type"] == "connection_ack", first
        return await client.subscribe("s1", channel)


async def test_a_staff_access_token_subscribes_to_bookings_and_gets_events(
        appsync: tuple[LocalEventsApi, str], identities: Identities) -> None:
    api, address = appsync
    calls = api.handlers["restaurant-booking"].calls
    async with open_client(f"ws://{address}/event/realtime", {"Authorization": identities.alice.access}) as staff:
        assert await staff.subscribe("all", "/restaurant-booking/*") == {"type": "subscribe_success", "id": "all"}
        api.gateway.publish_events("/restaurant-booking/bk-1", [EVENT])
        frame = await staff.recv()
        assert frame == {"type": "data", "id": "all", "event": EVENT}
    assert api.handlers["restaurant-booking"].calls == calls + 1  # staff_only.js ran for the subscribe


async def test_the_onsubscribe_handler_refuses_a_pool_user_outside_the_staff_group(
        appsync: tuple[LocalEventsApi, str], identities: Identities) -> None:
    # AppSync's user-pool provider accepts bob's valid token; only staff_only.js stands in the way.
    _, address = appsync
    for channel in ("/restaurant-booking/*", "/conversations/*"):
        refused = await subscribe(address, identities.bob.access, channel)
        assert refused["type"] == "subscribe_error", (channel, refused)
        assert refused["errors"][0]["errorType"] == "UnauthorizedException"


async def test_tokens_appsync_refuses(appsync: tuple[LocalEventsApi, str], identities: Identities,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, address = appsync
    monkeypatch.setattr(identities.cognito.state, "clock", lambda: time.time() - 3660)
    expired = sign_in(identities.cognito, identities.pool, "alice").access
    monkeypatch.undo()
    header, payload, signature = identities.alice.access.split(".")
    cases = {
        "expired": expired,
        "tampered": f"{header}.{payload[:-4]}AAAA.{signature}",
        "another pool": identities.carol_other_pool.access,
        "another app client (appIdClientRegex)": identities.alice_other_client.access,
        "the shared staff token (authorizer in cognito mode)": STAFF,
    }
    for what, token in cases.items():
        frame = await subscribe(address, token, "/restaurant-booking/*")
        assert frame["type"] in ("connection_error", "subscribe_error"), (what, frame)


async def test_a_guest_session_token_only_subscribes_to_its_own_conversation(
        appsync: tuple[LocalEventsApi, str]) -> None:
    _, address = appsync
    guest = mint_session_token(SECRET, SID, 600)
    own = await subscribe(address, guest, f"/conversations/{SID}")
    assert own == {"type": "subscribe_success", "id": "s1"}  # LAMBDA mode + the handler lets it through
    bookings = await subscribe(address, guest, "/restaurant-booking/*")
    assert bookings["type"] == "subscribe_error"  # restaurant-booking takes COGNITO only


async def test_staff_only_js_decides_on_the_documented_identity_shapes() -> None:
    assert 'const STAFF_GROUP = "staff";' in STAFF_ONLY_JS.read_text()
    handler = AppSyncJsHandler(STAFF_ONLY_JS)
    try:
        def ctx(identity: Any) -> dict[str, Any]:
            return {"identity": identity, "info": {"channel": {"path": "/restaurant-booking/*",
                                                               "segments": ["restaurant-booking", "*"]},
                                                   "channelNamespace": {"name": "restaurant-booking"},
                                                   "operation": "SUBSCRIBE"}}
        cognito = {"sub": "s", "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_x",
                   "username": "u", "claims": {}, "sourceIp": ["1.2.3.4"], "defaultAuthStrategy": "ALLOW"}
        assert handler.on_subscribe(ctx({**cognito, "groups": ["staff"]}))
        assert handler.on_subscribe(ctx({**cognito, "groups": ["kitchen", "staff"]}))
        assert not handler.on_subscribe(ctx({**cognito, "groups": ["kitchen"]}))
        assert not handler.on_subscribe(ctx({**cognito, "groups": None}))
        assert not handler.on_subscribe(ctx({**cognito, "groups": "staff"}))  # a string is not a group list
        assert handler.on_subscribe(ctx({"handlerContext": {"kind": "guest", "sessionId": SID}}))
        assert handler.on_subscribe(ctx({"accountId": "123456789012", "userArn": "arn:aws:iam::1:role/x"}))
    finally:
        handler.close()
