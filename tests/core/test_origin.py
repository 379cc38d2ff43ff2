"""Other web sites cannot open voice sessions from a visitor's browser over the WebSocket transport."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from runtime.app import create_app
from runtime.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, workers=1,
                        allowed_origins=["https://kiosk.example.org"])
    with TestClient(create_app(settings), base_url="http://concierge.test") as client:
        yield client


def _first_message(client: TestClient, origin: str | None) -> dict:
    headers = {"origin": origin} if origin else {}
    with client.websocket_connect("ws://concierge.test/ws/audio", headers=headers) as ws:
        first = ws.receive_json()
        ws.send_json({"type": "hangup"})
        for _ in range(1000):  # the server ends the call and closes the socket
            if ws.receive()["type"] == "websocket.close":
                return first
        raise AssertionError("the server did not close the call after hangup")


@pytest.mark.parametrize("origin", [None, "http://concierge.test", "https://kiosk.example.org"])
def test_same_origin_listed_origins_and_non_browsers_may_call(client: TestClient, origin: str | None) -> None:
    message = _first_message(client, origin)
    assert message["type"] == "session"
    assert message["sessionId"]
    assert message["sessionToken"]


@pytest.mark.parametrize("origin", ["https://evil.example", "http://concierge.test.evil.example", "null",
                                    "http://concierge.test:8080"])
def test_foreign_origins_are_refused_with_a_json_error(client: TestClient, origin: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:
        _first_message(client, origin)
    assert denied.value.status_code == 403
    assert denied.value.json()["error"]["code"] == "origin_not_allowed"
    assert client.get("/healthz").status_code == 200
