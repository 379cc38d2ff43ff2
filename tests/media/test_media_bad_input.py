"""Bad or abusive input gets a 4xx JSON error or a proper close code, and the process stays healthy.

Tests that create an aiortc peer connection (even just for an offer) run inside their own network
namespace (conftest ``netns_address``); the rest stay on the host's loopback.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from media_support import RunningServer, start_server, stop_server
from test_media_webrtc_call import place_call
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tools.echo import EchoSessionFactory
from tools.probe import CallProbe

pytestmark = pytest.mark.timeout(60)


async def healthy(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def offer(client: httpx.AsyncClient, body: object, **kw: object) -> httpx.Response:
    if isinstance(body, (dict, list)):
        return await client.post("/api/webrtc/offer", json=body, **kw)
    return await client.post("/api/webrtc/offer", content=body, headers={"content-type": "application/json"})


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


async def drain_until_closed(ws: ClientConnection) -> None:
    """Read (and ignore) until the server closes; fail if it keeps the socket open for 5 s."""
    with pytest.raises(ConnectionClosed):  # noqa: PT012 - the loop ends only by the close
        while True:
            await asyncio.wait_for(ws.recv(), 5)


async def data_only_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # aiortc's default would query Google's STUN
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_bad_offers_get_clear_4xx_errors(echo_server: RunningServer, echo_factory) -> None:
    async with httpx.AsyncClient(base_url=echo_server.base_url) as client:
        assert_error(await offer(client, b"{not json"), 400, "bad_request")
        assert_error(await offer(client, ["sdp"]), 400)
        assert_error(await offer(client, {"sdp": "v=0", "type": "answer"}), 400)
        assert_error(await offer(client, {"type": "offer"}), 400)
        error = assert_error(await offer(client, {"sdp": "hello world\r\n" * 20, "type": "offer"}), 400, "bad_offer")
        assert "v=0" in error["message"]
        garbage = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio notaport\r\na=rtpmap:xx\r\n"
        assert_error(await offer(client, {"sdp": garbage, "type": "offer"}), 400, "bad_offer")
        huge = "v=0\r\n" + "a=x-padding:" + "x" * (1024 * 1024) + "\r\n"
        assert_error(await offer(client, {"sdp": huge, "type": "offer"}), 413, "payload_too_large")
        big = "v=0\r\n" + "a=x-padding:" + "x" * 40_000 + "\r\n"  # under the body limit, over the SDP limit
        assert_error(await offer(client, {"sdp": big, "type": "offer"}), 413, "payload_too_large")
        error = assert_error(await offer(client, {"sdp": "v=0\r\n", "type": "offer", "voice": "nobody"}), 422)
        assert "heart" in error["message"]
        # A cross-site form can POST text/plain without a CORS preflight: such offers are refused.
        as_form = json.dumps({"sdp": "v=0\r\n", "type": "offer"})
        response = await client.post("/api/webrtc/offer", content=as_form, headers={"content-type": "text/plain"})
        assert_error(response, 415, "unsupported_media_type")
    assert not echo_factory.active, "no session was created for a bad offer"
    assert not echo_factory.ended
    await healthy(echo_server)


async def test_an_offer_without_audio_is_refused(rtc_server: RunningServer, echo_factory) -> None:
    async with httpx.AsyncClient(base_url=rtc_server.base_url) as client:
        error = assert_error(await offer(client, {"sdp": await data_only_offer(), "type": "offer"}), 400, "bad_offer")
    assert "audio" in error["message"]
    assert not echo_factory.active, "no session was created for an offer without audio"
    await healthy(rtc_server)


async def test_offer_flood_from_one_address_is_rate_limited(echo_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=echo_server.base_url) as client:
        responses = await asyncio.gather(*(offer(client, {"sdp": "v=0\r\n", "type": "offer"}) for _ in range(60)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(429) >= 30, statuses
    limited = next(r for r in responses if r.status_code == 429)
    assert_error(limited, 429, "rate_limited")
    assert limited.headers["retry-after"] == "1"
    await healthy(echo_server)


async def test_session_cap_answers_503(tmp_path: Path, netns_address: str) -> None:
    factory = EchoSessionFactory(max_sessions=1)
    server = start_server(tmp_path, factory=factory)
    try:
        async with connect(f"{server.ws_url}/ws/audio") as ws:
            assert json.loads(await ws.recv())["type"] == "session"
            from tools.probe import CallProbe
            probe = CallProbe()
            sdp = await probe.offer()
            await probe.close()
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                error = assert_error(await offer(client, {"sdp": sdp, "type": "offer"}), 503, "unavailable")
            assert "limit" in error["message"]
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{server.ws_url}/ws/audio"):
                    pass
            assert refused.value.response.status_code == 503
        await healthy(server)
    finally:
        stop_server(server)


@pytest.mark.parametrize(("frames", "close_code"), [
    (["this is not json"], 1007),
    ([json.dumps(["no", "type"])], 1007),
    ([b"\x01\x02\x03"], 1007),  # half a sample
    ([bytes(64 * 1024)], 1009),  # 2 s of audio in one frame
    (["x" * 5000], 1009),
    ([b"\x00\x00"] * 400, 1008),  # frame flood
])
async def test_websocket_garbage_closes_with_a_proper_code(echo_server: RunningServer, frames: list,
                                                           close_code: int) -> None:
    async with connect(f"{echo_server.ws_url}/ws/audio") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        for frame in frames:
            try:
                await ws.send(frame)
            except ConnectionClosed:
                break
        await drain_until_closed(ws)
        assert ws.close_code == close_code, ws.close_reason
        assert ws.close_reason
    await healthy(echo_server)


async def test_a_bad_heard_report_on_the_data_channel_gets_an_error_and_the_call_goes_on(
        rtc_server: RunningServer, echo_factory, netns_address: str) -> None:
    probe = CallProbe()
    try:
        await place_call(rtc_server, probe, netns_address)
        await probe.wait_for_message(lambda m: m.get("type") == "status", within=10)
        probe.send({"type": "heard", "latencyMs": "fast"})
        error = await probe.wait_for_message(lambda m: m.get("type") == "error", within=10)
        assert error["code"] == "bad_heard"
        probe.send({"type": "heard", "latencyMs": 450})
        probe.send({"type": "ping", "id": 9})  # answered after the report: the data channel is ordered
        assert (await probe.wait_for_message(lambda m: m.get("type") == "pong", within=10))["id"] == 9
        [session] = echo_factory.active
        assert session.heard == [0.45]
        assert not session.ended
    finally:
        await probe.close()
