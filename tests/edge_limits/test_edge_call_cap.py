"""One client address may hold only MAX_CALLS_PER_CLIENT calls at once, WebSocket and WebRTC together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sdp_samples import browser_offer
from starlette.testclient import TestClient, WebSocketDenialResponse

from runtime.app import create_app
from runtime.media.routes import MediaHub
from runtime.services import Overrides
from runtime.settings import Settings
from tools.echo import EchoSessionFactory

CAP = 2


@pytest.fixture
def echo_factory() -> EchoSessionFactory:
    return EchoSessionFactory()


@pytest.fixture
def hub(echo_factory: EchoSessionFactory) -> MediaHub:
    return MediaHub(session_factory=echo_factory)


@pytest.fixture
def client(tmp_path: Path, hub: MediaHub) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, workers=1,
                        max_calls_per_client=CAP, trust_proxy_headers=True)
    app = create_app(settings, Overrides(media=hub))
    with TestClient(app, base_url="http://concierge.test") as client:
        yield client


def _open_call(stack: ExitStack, client: TestClient, headers: dict[str, str] | None = None) -> object:
    ws = stack.enter_context(client.websocket_connect("ws://concierge.test/ws/audio", headers=headers or {}))
    assert ws.receive_json()["type"] == "session"
    return ws


def _hang_up(ws) -> None:
    """Hang up and wait for the server's close (the TestClient cancels a call that is still running)."""
    ws.send_json({"type": "hangup"})
    for _ in range(10_000):
        if ws.receive()["type"] == "websocket.close":
            return
    raise AssertionError("the server did not close the call after hangup")


def _refused(client: TestClient, headers: dict[str, str] | None = None) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as denied:  # noqa: SIM117 - the denial comes on entry
        with client.websocket_connect("ws://concierge.test/ws/audio", headers=headers or {}):
            pass
    return denied.value


def test_a_client_over_its_cap_gets_429_on_both_transports_until_a_call_ends(
        client: TestClient, hub: MediaHub, echo_factory: EchoSessionFactory) -> None:
    with ExitStack() as stack:
        calls = [_open_call(stack, client) for _ in range(CAP)]
        denied = _refused(client)
        assert denied.status_code == 429
        assert denied.json()["error"]["code"] == "too_many_calls"
        assert denied.headers["retry-after"] == "1"
        # The WebRTC offer counts against the same cap (checked after the offer is found valid).
        response = client.post("/api/webrtc/offer", json={"sdp": browser_offer(), "type": "offer"})
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "too_many_calls"
        assert echo_factory.active_count == CAP  # no session was created for the refused calls
        # Another address (the ALB's X-Forwarded-For entry) has its own allowance.
        other = _open_call(stack, client, {"x-forwarded-for": "203.0.113.9"})
        assert sorted(hub.calls_by_client.values()) == [1, CAP]
        _hang_up(calls[0])
        # The slot is given back when the call ends: the client may call again.
        calls[0] = _open_call(stack, client)
        for ws in [*calls, other]:
            _hang_up(ws)
    assert hub.calls_by_client == {}  # every slot was released as its call ended


def test_refused_and_failed_calls_do_not_keep_a_slot(client: TestClient, hub: MediaHub) -> None:
    for _ in range(CAP + 3):
        response = client.post("/api/webrtc/offer", json={"sdp": browser_offer(), "type": "offer", "voice": "x"})
        assert response.status_code == 422
        response = client.post("/api/webrtc/offer", json={"sdp": "v=0\r\nm=video 9 RTP/AVP 0\r\n", "type": "offer"})
        assert response.status_code == 400
    assert hub.calls_by_client == {}
    with ExitStack() as stack:
        for ws in [_open_call(stack, client) for _ in range(CAP)]:
            _hang_up(ws)
