"""The embedded gateway's caps: sockets per credential and per client address, subscriptions per socket.

One guest token once held 200 sockets x 100 subscriptions. Each cap here is refused the AppSync way
(``connection_error`` / ``subscribe_error`` with ``LimitExceededException``) and frees up when a socket
closes, and the shutdown of ``serve`` ends sockets with the gateway's 1001, not uvicorn's 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from runtime.events.gateway import EventsGateway, standalone_app
from runtime.settings import Settings
from tests.events.helpers import (
    API_KEY,
    SECRET,
    SESSION_A,
    SESSION_B,
    STAFF,
    Client,
    guest_token,
    make_gateway,
    open_client,
    serve,
)


def limit_error(message_part: str) -> dict[str, Any]:
    return {"type": "connection_error", "errors": [{"errorType": "LimitExceededException",
                                                    "message": message_part, "errorCode": 429}]}


async def refused(url: str, headers: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    """Open a socket that must be refused: return its connection_error after checking the 1008 close."""
    async with open_client(url, headers, **kwargs) as client:
        frame = await client.recv()
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        return frame


async def connected(client: Client) -> None:
    await client.send({"type": "connection_init"})
    assert (await client.recv())["type"] == "connection_ack"


async def until(predicate: Any) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@contextlib.asynccontextmanager
async def sockets(url: str, headers: dict[str, str], count: int, **kwargs: Any) -> AsyncIterator[list[Client]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_client(url, headers, **kwargs)) for _ in range(count)]
        for client in clients:
            await connected(client)
        yield clients


async def test_one_guest_session_gets_a_few_sockets_whatever_token_it_shows() -> None:
    gateway = make_gateway(max_connections_per_guest=2)
    async with serve(standalone_app(gateway)) as address:
        url = f"ws://{address}/event/realtime"
        async with sockets(url, {"Authorization": guest_token(SESSION_A)}, 1), \
                sockets(url, {"Authorization": guest_token(SESSION_A, ttl=7200)}, 1):
            # A third socket for session A, even with yet another token of it, is refused ...
            assert await refused(url, {"Authorization": guest_token(SESSION_A, ttl=60)}) == limit_error(
                "Too many connections with this credential; at most 2")
            # ... while another guest is not affected.
            async with sockets(url, {"Authorization": guest_token(SESSION_B)}, 2):
                pass
        await until(lambda: gateway.connection_count == 0)
        async with sockets(url, {"Authorization": guest_token(SESSION_A)}, 2):  # freed when they closed
            pass


async def test_staff_credential_cap_and_the_api_key_is_not_capped_per_credential() -> None:
    gateway = make_gateway(max_connections_per_staff_credential=2)
    async with serve(standalone_app(gateway)) as address:
        url = f"ws://{address}/event/realtime"
        async with sockets(url, {"Authorization": STAFF}, 2):
            frame = await refused(url, {"Authorization": STAFF})
            assert frame["errors"][0]["errorType"] == "LimitExceededException"
            async with sockets(url, {"x-api-key": API_KEY}, 4):  # the server-side publisher's key
                pass


async def test_per_client_address_cap_counts_every_credential() -> None:
    gateway = make_gateway(max_connections_per_client=3)
    async with serve(standalone_app(gateway)) as address:
        url = f"ws://{address}/event/realtime"
        async with sockets(url, {"Authorization": guest_token(SESSION_A)}, 1), \
                sockets(url, {"Authorization": guest_token(SESSION_B)}, 1), \
                sockets(url, {"x-api-key": API_KEY}, 1):
            assert await refused(url, {"Authorization": STAFF}) == limit_error(
                "Too many connections from this client; at most 3")
        await until(lambda: gateway.connection_count == 0)
        async with sockets(url, {"Authorization": STAFF}, 3):
            pass


async def test_behind_the_load_balancer_the_cap_is_per_forwarded_client() -> None:
    # Behind the ALB every socket comes from the ALB's address: the cap must count the client it saw (the
    # last X-Forwarded-For entry), or one client would lock out everybody and a forged entry would dodge it.
    gateway = make_gateway(max_connections_per_client=1)
    app = standalone_app(gateway)
    app.state.settings = Settings(trust_proxy_headers=True, trusted_proxy_hops=1)
    async with serve(app) as address:
        url = f"ws://{address}/event/realtime"
        one = {"additional_headers": {"X-Forwarded-For": "198.51.100.7"}}
        async with sockets(url, {"Authorization": STAFF}, 1, **one):
            async with sockets(url, {"Authorization": STAFF}, 1,
                               additional_headers={"X-Forwarded-For": "203.0.113.9"}):
                pass
            forged = {"additional_headers": {"X-Forwarded-For": "10.9.9.9, 198.51.100.7"}}
            frame = await refused(url, {"Authorization": STAFF}, **forged)
            assert frame["errors"][0]["message"] == "Too many connections from this client; at most 1"


async def test_default_caps_bound_one_guest_token_to_a_few_hundred_subscriptions() -> None:
    # The defaults: 4 sockets per guest session, 100 subscriptions per socket (AppSync's quota).
    defaults = Settings()
    gateway = EventsGateway.from_settings(defaults, staff_token=STAFF, session_secret=SECRET, api_key=API_KEY)
    assert (gateway.max_connections_per_guest, gateway.max_subscriptions) == (4, 100)
    async with serve(standalone_app(gateway)) as address:
        url = f"ws://{address}/event/realtime"
        token = {"Authorization": guest_token(SESSION_A)}
        async with sockets(url, token, 4) as clients:
            assert (await refused(url, token))["errors"][0]["errorType"] == "LimitExceededException"
            client = clients[0]
            for n in range(100):
                await client.send({"type": "subscribe", "id": f"s{n}", "channel": f"/conversations/{SESSION_A}"})
            replies = [await client.recv() for _ in range(100)]
            assert {r["type"] for r in replies} == {"subscribe_success"}
            over = await client.subscribe("s100", f"/conversations/{SESSION_A}")
            assert over == {"type": "subscribe_error", "id": "s100", "errors": [{
                "errorType": "LimitExceededException", "message": "At most 100 subscriptions per connection"}]}
            assert gateway.subscription_count == 100


def test_settings_reach_the_gateway() -> None:
    settings = Settings(events_max_subscriptions_per_connection=7, events_max_connections_per_guest=2,
                        events_max_connections_per_staff_credential=3, events_max_connections_per_client=9)
    gateway = EventsGateway.from_settings(settings, staff_token=STAFF, session_secret=None, api_key=None)
    assert (gateway.max_subscriptions, gateway.max_connections_per_guest,
            gateway.max_connections_per_staff_credential, gateway.max_connections_per_client) == (7, 2, 3, 9)
    # What services.py merges into the options of whichever gateway class it builds.
    assert EventsGateway.options_from_settings(settings) == {
        "max_subscriptions_per_connection": 7, "max_connections_per_guest": 2,
        "max_connections_per_staff_credential": 3, "max_connections_per_client": 9}


# --- shutdown ----------------------------------------------------------------------------------

async def test_sigterm_closes_sockets_with_1001_before_uvicorn_sends_1012() -> None:
    # uvicorn closes every WebSocket with 1012 before the app's lifespan shutdown runs; the gateway hooks the
    # signal so its clients see 1001 (going away: reconnect) and the server still shuts down.
    delivered: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: delivered.append(signum))
    try:
        gateway = make_gateway()
        async with serve(standalone_app(gateway)) as address, \
                open_client(f"ws://{address}/event/realtime", {"Authorization": STAFF}) as client:
            await client.subscribe("s1", "/conversations/*")
            os.kill(os.getpid(), signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv(5)  # only ka frames come before the close, and recv skips them
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")
        assert gateway.connection_count == 0
        assert delivered == [signal.SIGTERM]  # uvicorn handed the signal back on exit, as without the hook
        assert signal.getsignal(signal.SIGTERM) is not None
    finally:
        signal.signal(signal.SIGTERM, previous)
