"""Conformance of the embedded gateway with the AppSync Events wire protocol (docs/events-gateway.md).

A plain ``websockets`` client and ``httpx`` talk to the gateway served by uvicorn on 127.0.0.1, the
way a browser and a server-side publisher would.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runtime.events.gateway import standalone_app
from tests.events.helpers import (
    API_KEY,
    SESSION_A,
    SESSION_B,
    STAFF,
    Client,
    Served,
    guest_token,
    make_gateway,
    open_client,
    serve,
)

STAFF_AUTH = {"Authorization": STAFF}
KEY_AUTH = {"x-api-key": API_KEY}


async def http_publish(served: Served, channel: Any, events: Any, headers: dict[str, str] | None = None
                       ) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(served.http, json={"channel": channel, "events": events},
                               headers=KEY_AUTH if headers is None else headers)


async def drain(client: Client) -> None:
    while True:
        await client.recv()


# --- handshake and connection --------------------------------------------------------------------

async def test_handshake_acks_and_keeps_alive(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        assert client.ws.subprotocol == "aws-appsync-event-ws"
        await client.send({"type": "connection_init"})
        ack = await client.recv(keep_ka=True)
        assert ack == {"type": "connection_ack", "connectionTimeoutMs": 300000}
        assert await client.recv(1.0, keep_ka=True) == {"type": "ka"}  # interval is 0.2 s in tests
        assert await client.recv(1.0, keep_ka=True) == {"type": "ka"}


@pytest.mark.parametrize("first", ["connection_init", "subscribe"])
async def test_first_ka_comes_right_after_the_ack_not_an_interval_later(first: str) -> None:
    # Amplify shows ConnectedPendingKeepAlive until a ka arrives when its page connected late (>65 s after
    # loading): the first ka must not wait for the 60 s interval.
    gateway = make_gateway(keepalive_seconds=60)
    async with serve(standalone_app(gateway)) as address, \
            open_client(f"ws://{address}/event/realtime", STAFF_AUTH) as client:
        if first == "connection_init":
            await client.send({"type": "connection_init"})
            assert (await client.recv(keep_ka=True))["type"] == "connection_ack"
        else:  # connection_init is optional: keep-alive starts with the first subscription then
            await client.send({"type": "subscribe", "id": "s1", "channel": "/conversations/*"})
            assert (await client.recv(keep_ka=True))["type"] == "subscribe_success"
        assert await client.recv(1.0, keep_ka=True) == {"type": "ka"}
        with pytest.raises(TimeoutError):  # then the interval (60 s here)
            await client.recv(0.3, keep_ka=True)


async def test_upgrade_without_the_appsync_subprotocol_is_refused(served: Served) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_client(served.realtime, subprotocols=["graphql-ws"]):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("headers", [{"Authorization": "not-a-token"}, {"x-api-key": "da2-wrong"}, {"host": "x"}])
async def test_bad_credentials_get_connection_error(served: Served, headers: dict[str, str]) -> None:
    async with open_client(served.realtime, headers) as client:
        frame = await client.recv()
        assert frame == {"type": "connection_error", "errors": [{
            "errorType": "UnauthorizedException", "message": "You are not authorized to make this call.",
            "errorCode": 401}]}
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008


async def test_no_credentials_at_all_get_connection_error(served: Served) -> None:
    async with open_client(served.realtime) as client:
        assert (await client.recv())["type"] == "connection_error"


async def test_auth_from_upgrade_headers_and_from_header_query(served: Served) -> None:
    # Native clients (Swift SDK) send the auth as real upgrade headers instead of the subprotocol.
    async with open_client(served.realtime, additional_headers={"Authorization": f"Bearer {STAFF}"}) as client:
        assert await client.subscribe("s1", "/restaurant-booking/*") == {"type": "subscribe_success", "id": "s1"}
    encoded = base64.urlsafe_b64encode(json.dumps(STAFF_AUTH).encode()).decode().rstrip("=")
    async with open_client(f"{served.realtime}?header={encoded}&payload=e30=") as client:
        assert await client.subscribe("s1", "/restaurant-booking/*") == {"type": "subscribe_success", "id": "s1"}


async def test_shutdown_closes_connections_with_going_away(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        await client.subscribe("s1", "/conversations/*")
        await served.gateway.close()
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001


# --- subscribe / data / unsubscribe ------------------------------------------------------------

async def test_subscribe_without_init_and_receive_each_event_unchanged(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        assert await client.subscribe("all", "/restaurant-booking/*") == {"type": "subscribe_success", "id": "all"}
        # Amplify sends channels as written, without the leading slash.
        assert await client.subscribe("one", "restaurant-booking/b-1") == {"type": "subscribe_success", "id": "one"}
        events = ['{"team": "McLaren"}', '{"n":1,  "spaced" : true}']
        response = await http_publish(served, "/restaurant-booking/b-1", events)
        assert response.status_code == 200
        body = response.json()
        assert body["failed"] == []
        assert [s["index"] for s in body["successful"]] == [0, 1]
        received = [await client.recv() for _ in range(4)]
        # One data frame per event per matching subscription; the event string is byte-for-byte the original.
        assert sorted((f["id"], f["event"]) for f in received) == sorted(
            [("all", events[0]), ("one", events[0]), ("all", events[1]), ("one", events[1])])
        assert all(f["type"] == "data" and set(f) == {"type", "id", "event"} for f in received)
        await client.nothing()


async def test_wildcard_does_not_match_the_bare_namespace(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        await client.subscribe("w", "/restaurant-booking/*")
        await client.subscribe("deep", "/conversations/x/*")
        assert (await http_publish(served, "/restaurant-booking", ['{"bare":1}'])).status_code == 200
        assert (await http_publish(served, "/conversations/x", ['{"bare":2}'])).status_code == 200
        await client.nothing()
        await http_publish(served, "/conversations/x/y/z", ['{"deep":3}'])
        assert await client.recv() == {"type": "data", "id": "deep", "event": '{"deep":3}'}


@pytest.mark.parametrize("channel", [
    "", "/", "//", "/conversations//x", "/unknown-ns/x", "/conversations/a b", "/conversations/-x",
    "/conversations/a/b/c/d/e", "/conversations/*/x", "/conversations/**", "/*", 42, None,
    "/conversations/" + "x" * 51,
])
async def test_invalid_channels_are_refused(served: Served, channel: Any) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        frame = await client.subscribe("s1", channel)
        assert frame["type"] == "subscribe_error"
        assert frame["id"] == "s1"
        assert frame["errors"][0]["errorType"] == "BadRequestException"
        assert frame["errors"][0]["message"]


async def test_guest_may_subscribe_only_to_its_own_conversation(served: Served) -> None:
    async with open_client(served.realtime, {"Authorization": guest_token(SESSION_A)}) as client:
        assert await client.subscribe("mine", f"/conversations/{SESSION_A}") == {
            "type": "subscribe_success", "id": "mine"}
        for n, channel in enumerate([f"/conversations/{SESSION_B}", "/conversations/*",
                                     "/restaurant-booking/*", f"/conversations/{SESSION_A}x",
                                     f"/conversations/{SESSION_A}/*"]):
            assert await client.subscribe(f"other{n}", channel) == {
                "type": "subscribe_error", "id": f"other{n}",
                "errors": [{"errorType": "UnauthorizedException",
                            "message": "You are not authorized to make this call."}]}
        await served.gateway.publish(f"/conversations/{SESSION_B}", {"secret": "B"})
        await served.gateway.publish(f"/conversations/{SESSION_A}", {"text": "mine"})
        assert await client.recv() == {"type": "data", "id": "mine", "event": '{"text":"mine"}'}
        await client.nothing()


async def test_authorization_is_rechecked_on_every_subscribe(served: Served) -> None:
    async with open_client(served.realtime, {"Authorization": guest_token(SESSION_A)}) as client:
        # The message's own authorization map wins over the connection's.
        assert (await client.subscribe("a", "/restaurant-booking/*", STAFF_AUTH))["type"] == "subscribe_success"
        refused = await client.subscribe("b", f"/conversations/{SESSION_A}", {"Authorization": "forged"})
        assert refused["errors"][0]["errorType"] == "UnauthorizedException"
    async with open_client(served.realtime, STAFF_AUTH) as client:
        refused = await client.subscribe("c", "/conversations/*", {"Authorization": guest_token(SESSION_B)})
        assert refused["type"] == "subscribe_error"


EXPIRED = {"type": "subscribe_error", "id": "mine", "errors": [{
    "errorType": "UnauthorizedException", "message": "Token expired: subscribe again with a fresh token"}]}


async def test_expired_guest_subscription_gets_subscribe_error_before_the_next_event() -> None:
    # subscribe_error, not broadcast_error: Amplify ignores broadcast_error (the subscription would go silently
    # dead); the expired token's event is never delivered.
    now = [1_000_000.0]
    gateway = make_gateway(clock=lambda: now[0], guest_recheck_seconds=3600)  # no sweep: the publish finds it
    async with serve(standalone_app(gateway)) as address:
        token = guest_token(SESSION_A, ttl=60, now=now[0])
        async with open_client(f"ws://{address}/event/realtime", {"Authorization": token}) as client:
            await client.subscribe("mine", f"/conversations/{SESSION_A}")
            await gateway.publish(f"/conversations/{SESSION_A}", {"n": 1})
            assert (await client.recv())["event"] == '{"n":1}'
            now[0] += 3601 + 120  # the guest token has expired, and the recheck is due
            await gateway.publish(f"/conversations/{SESSION_A}", {"n": 2})
            assert await client.recv() == EXPIRED
            await gateway.publish(f"/conversations/{SESSION_A}", {"n": 3})
            await client.nothing()
            assert gateway.subscription_count == 0


async def test_expired_subscription_is_told_without_waiting_for_an_event() -> None:
    now = [1_000_000.0]
    gateway = make_gateway(clock=lambda: now[0], guest_recheck_seconds=0.05)
    async with serve(standalone_app(gateway)) as address:
        short = guest_token(SESSION_A, ttl=60, now=now[0])
        lasting = guest_token(SESSION_A, ttl=3600, now=now[0])
        async with open_client(f"ws://{address}/event/realtime", {"Authorization": lasting}) as client:
            await client.subscribe("mine", f"/conversations/{SESSION_A}", {"Authorization": short})
            await client.subscribe("kept", f"/conversations/{SESSION_A}")
            await client.nothing(0.2)  # swept several times while still valid: nothing sent
            now[0] += 120
            assert await client.recv(1.0) == EXPIRED  # no publish happened: the sweep found it
            await client.nothing(0.2)
            assert gateway.subscription_count == 1  # the one with the lasting token stays
            await gateway.publish(f"/conversations/{SESSION_A}", {"n": 1})
            assert await client.recv() == {"type": "data", "id": "kept", "event": '{"n":1}'}


async def test_unsubscribe_stops_delivery_and_unknown_ids_fail(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        await client.subscribe("s1", "/conversations/*")
        await client.send({"type": "unsubscribe", "id": "s1"})
        assert await client.recv() == {"type": "unsubscribe_success", "id": "s1"}
        await served.gateway.publish(f"/conversations/{SESSION_A}", {"x": 1})
        await client.nothing()
        await client.send({"type": "unsubscribe", "id": "s1"})
        assert await client.recv() == {"type": "unsubscribe_error", "id": "s1", "errors": [
            {"errorType": "UnknownOperationError", "message": "Unknown operation id"}]}


async def test_duplicate_ids_and_subscription_limit() -> None:
    gateway = make_gateway(max_subscriptions_per_connection=2)
    async with serve(standalone_app(gateway)) as address, \
            open_client(f"ws://{address}/event/realtime", STAFF_AUTH) as client:
        await client.subscribe("s1", "/conversations/*")
        duplicate = await client.subscribe("s1", "/restaurant-booking/*")
        assert duplicate["type"] == "subscribe_error"
        assert duplicate["errors"][0]["errorType"] == "ConflictException"
        await client.subscribe("s2", "/restaurant-booking/*")
        over = await client.subscribe("s3", "/restaurant-booking/b-1")
        assert over["type"] == "subscribe_error"
        assert over["errors"][0]["errorType"] == "LimitExceededException"
        bad_id = await client.subscribe("not valid!", "/conversations/*")
        assert bad_id["type"] == "subscribe_error"
        assert bad_id["errors"][0]["errorType"] == "BadRequestException"


async def test_subscriptions_end_with_their_connection(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        await client.subscribe("s1", "/conversations/*")
        await client.subscribe("s2", "/restaurant-booking/*")
        assert served.gateway.subscription_count == 2
    for _ in range(100):
        if served.gateway.connection_count == 0:
            break
        await asyncio.sleep(0.01)
    assert served.gateway.subscription_count == 0
    assert served.gateway.connection_count == 0


async def test_slow_consumer_is_disconnected_instead_of_buffering_forever() -> None:
    gateway = make_gateway(send_queue_size=8)
    async with serve(standalone_app(gateway)) as address, \
            open_client(f"ws://{address}/event/realtime", STAFF_AUTH) as client:
        await client.subscribe("s1", "/conversations/*")
        for n in range(50):  # a burst the client cannot absorb through an 8-frame queue
            await gateway.publish(f"/conversations/{SESSION_A}", {"n": n})
        with pytest.raises(ConnectionClosed) as closed:
            await drain(client)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        assert gateway.subscription_count == 0


# --- publish over the socket -------------------------------------------------------------------

async def test_socket_publish_needs_the_api_key_and_reports_per_event_results(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as browser, \
            open_client(served.realtime, KEY_AUTH) as server:
        await browser.subscribe("s1", "/restaurant-booking/*")
        # A browser credential, even staff, cannot publish.
        await browser.send({"type": "publish", "id": "p1", "channel": "/restaurant-booking/b-1",
                            "events": ['{"forged":true}'], "authorization": STAFF_AUTH})
        assert await browser.recv() == {"type": "publish_error", "id": "p1", "errors": [{
            "errorType": "UnauthorizedException",
            "message": "Publishing is server side only; browser credentials cannot publish"}]}
        await server.send({"type": "publish", "id": "p2", "channel": "/restaurant-booking/b-1",
                           "events": ['{"ok":1}', "{not json", 7], "authorization": KEY_AUTH})
        result = await server.recv()
        assert result["type"] == "publish_success"
        assert result["id"] == "p2"
        assert [s["index"] for s in result["successful"]] == [0]
        assert [(f["index"], f["code"], f["message"]) for f in result["failed"]] == [
            (1, "BadRequestException", "Invalid JSON"),
            (2, "BadRequestException", "Event must be a string containing JSON")]
        assert all(f["identifier"] for f in result["failed"] + result["successful"])
        assert await browser.recv() == {"type": "data", "id": "s1", "event": '{"ok":1}'}
        await browser.nothing()
        await server.send({"type": "publish", "id": "p3", "channel": "/restaurant-booking/*", "events": ["1"]})
        wildcard = await server.recv()
        assert wildcard["type"] == "publish_error"
        assert wildcard["errors"][0]["errorType"] == "BadRequestException"
        await server.send({"type": "publish", "id": "p4", "channel": "/conversations/x", "events": ["1"] * 6})
        assert (await server.recv())["type"] == "publish_error"


# --- malformed frames ---------------------------------------------------------------------------

async def test_malformed_frames_get_errors_and_the_connection_survives() -> None:
    gateway = make_gateway(max_frame_bytes=10_000)
    async with serve(standalone_app(gateway)) as address, \
            open_client(f"ws://{address}/event/realtime", STAFF_AUTH) as client:
        await client.send("{not json")
        assert await client.recv() == {"type": "error", "errors": [
            {"errorType": "BadRequestException", "message": "Message is not a JSON object"}]}
        await client.send("[1,2]")
        assert (await client.recv())["type"] == "error"
        await client.ws.send(b"\x00\x01")
        binary = await client.recv()
        assert binary["type"] == "error"
        assert binary["errors"][0]["errorType"] == "UnsupportedOperation"
        await client.send({"type": "start", "id": "g1"})
        unknown = await client.recv()
        assert unknown["type"] == "error"
        assert unknown["id"] == "g1"
        assert unknown["errors"][0]["errorType"] == "UnsupportedOperation"
        await client.send({"type": "subscribe", "id": "big", "channel": "/conversations/*", "pad": "x" * 20_000})
        too_big = await client.recv()
        assert too_big["type"] == "error"
        assert "larger than" in too_big["errors"][0]["message"]
        assert await client.subscribe("ok", "/conversations/*") == {"type": "subscribe_success", "id": "ok"}


# --- HTTP publish --------------------------------------------------------------------------------

async def test_http_publish_limits_and_per_event_failures(served: Served) -> None:
    async with open_client(served.realtime, STAFF_AUTH) as client:
        await client.subscribe("s1", "/conversations/*")
        big = json.dumps({"blob": "x" * (240 * 1024)})
        response = await http_publish(served, "conversations/c-1", ['{"a":1}', big, "nope", '"text"'])
        assert response.status_code == 200
        body = response.json()
        assert [s["index"] for s in body["successful"]] == [0, 3]
        assert [(f["index"], f["code"]) for f in body["failed"]] == [
            (1, "EventTooLargeException"), (2, "BadRequestException")]
        assert [(await client.recv())["event"] for _ in range(2)] == ['{"a":1}', '"text"']
        await client.nothing()


@pytest.mark.parametrize(("body", "reason"), [
    ({"channel": "/conversations/x", "events": ["1"] * 6}, "events"),
    ({"channel": "/conversations/x", "events": []}, "events"),
    ({"channel": "/conversations/x", "events": "1"}, "events"),
    ({"channel": "/conversations/*", "events": ["1"]}, "Wildcards"),
    ({"channel": "/nope/x", "events": ["1"]}, "namespace"),
    ({"events": ["1"]}, "Channel"),
    ([1, 2], "channel"),
])
async def test_http_publish_request_errors(served: Served, body: Any, reason: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(served.http, json=body, headers=KEY_AUTH)
    assert response.status_code == 400
    payload = response.json()
    assert payload["errors"][0]["errorType"] == "BadRequestException"
    assert reason in payload["errors"][0]["message"]
    assert payload["error"]["code"] == "bad_request"  # the project's error shape rides along


async def test_http_publish_rejects_non_json_bodies(served: Served) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(served.http, content=b"{oops", headers=KEY_AUTH)
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "da2-wrong"}, {"Authorization": f"Bearer {STAFF}"},
                                     {"Authorization": guest_token(SESSION_A)}])
async def test_http_publish_is_server_side_only(served: Served, headers: dict[str, str]) -> None:
    response = await http_publish(served, "/conversations/x", ['{"a":1}'], headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"] == [{"errorType": "UnauthorizedException",
                                          "message": "You are not authorized to make this call."}]
    # AppSync names the error in this header; Amplify's error parser reads it (else: "UnknownError").
    assert response.headers["x-amzn-errortype"] == "UnauthorizedException"
    assert "x-amzn-errortype" in response.headers["access-control-expose-headers"].lower()


async def test_every_http_error_names_its_type_in_x_amzn_errortype(served: Served) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        bad = await http.post(served.http, content=b"{oops", headers=KEY_AUTH)
        wildcard = await http.post(served.http, json={"channel": "/conversations/*", "events": ["1"]},
                                   headers=KEY_AUTH)
    for response in (bad, wildcard):
        assert response.status_code == 400
        assert response.headers["x-amzn-errortype"] == response.json()["errors"][0]["errorType"] == \
            "BadRequestException"
    gateway = make_gateway(http_rate_per_second=1)
    async with serve(standalone_app(gateway)) as address, httpx.AsyncClient(timeout=5) as http:
        statuses = [(await http.post(f"http://{address}/event", json={"channel": "/conversations/x",
                                                                    "events": ["1"]}, headers=KEY_AUTH))
                    for _ in range(4)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited
    assert limited[0].headers["x-amzn-errortype"] == "TooManyRequestsException"


async def test_http_publish_disabled_without_an_api_key() -> None:
    gateway = make_gateway(api_key=None)
    async with serve(standalone_app(gateway)) as address, httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"http://{address}/event", json={"channel": "/conversations/x", "events": ["1"]},
                                   headers={"x-api-key": "anything"})
    assert response.status_code == 401
    assert "APPSYNC_API_KEY" in response.json()["errors"][0]["message"]


async def test_cors_preflight(served: Served) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.options(served.http, headers={
            "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key"})
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert "x-api-key" in response.headers["access-control-allow-headers"]
        published = await http_publish(served, "/conversations/x", ['{"a":1}'])
        assert published.headers["access-control-allow-origin"] == "*"


async def test_socket_publish_rate_is_limited_per_connection() -> None:
    gateway = make_gateway(socket_publish_rate=3)
    async with serve(standalone_app(gateway)) as address, \
            open_client(f"ws://{address}/event/realtime", KEY_AUTH) as server:
        replies = []
        for n in range(5):
            await server.send({"type": "publish", "id": f"p{n}", "channel": "/conversations/x", "events": ["1"]})
            replies.append(await server.recv())
        assert [r["type"] for r in replies[:3]] == ["publish_success"] * 3
        assert replies[3]["type"] == "publish_error"
        assert replies[3]["errors"][0]["errorType"] == "LimitExceededException"
