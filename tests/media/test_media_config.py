"""GET /api/config: what the web app is told about ICE, TURN, events, engine and voices."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import pytest

from runtime.app import create_app
from runtime.settings import load_settings


async def config_of(tmp_path: Path, headers: dict[str, str] | None = None, base_url: str = "http://testserver",
                    **overrides: object) -> dict:
    app = create_app(load_settings(data_dir=tmp_path, session_secret="c" * 40, **overrides))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
        response = await client.get("/api/config", headers=headers or {})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    return response.json()


async def test_standalone_config_points_at_the_origin_the_browser_used(tmp_path: Path) -> None:
    body = await config_of(tmp_path, base_url="http://concierge.local:8000")
    assert body["iceServers"] == []
    assert body["iceTransportPolicy"] == "all"
    assert body["events"] == {"http": "http://concierge.local:8000/event",
                              "realtime": "ws://concierge.local:8000/event/realtime", "auth": "authorization"}
    assert body["engine"] == "local"
    assert body["voices"] == ["heart"]
    assert body["voice"] == "heart"
    assert body["transports"] == ["webrtc", "websocket"]
    assert body["restaurant"]["name"]


async def test_proxy_headers_are_honoured_only_when_trusted(tmp_path: Path) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "book.example.com"}
    untrusted = await config_of(tmp_path / "a", headers=forwarded)
    assert untrusted["events"]["http"] == "http://testserver/event"
    trusted = await config_of(tmp_path / "b", headers=forwarded, trust_proxy_headers=True)
    # The scheme the proxy saw, but never a host a client can write (issue 17: X-Forwarded-Host is not reflected).
    assert trusted["events"]["http"] == "https://testserver/event"
    assert trusted["events"]["realtime"] == "wss://testserver/event/realtime"
    public = await config_of(tmp_path / "c", headers=forwarded, trust_proxy_headers=True,
                             public_origin="https://book.example.com")
    assert public["events"]["http"] == "https://book.example.com/event"
    assert public["events"]["realtime"] == "wss://book.example.com/event/realtime"


async def test_turn_credentials_are_short_lived_and_verify_like_coturn(tmp_path: Path) -> None:
    body = await config_of(tmp_path, turn_secret="coturn-shared-secret", turn_ttl_seconds=600,
                     turn_urls="turn:turn.example.com:3478?transport=udp,turns:turn.example.com:443?transport=tcp",
                     stun_urls="stun:stun.example.com:3478")
    assert body["iceTransportPolicy"] == "relay"
    stun, turn = body["iceServers"]
    assert stun == {"urls": ["stun:stun.example.com:3478"]}
    assert turn["urls"] == ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:443?transport=tcp"]
    expiry, _, user = turn["username"].partition(":")
    assert user
    assert 590 <= int(expiry) - time.time() <= 610
    expected = base64.b64encode(hmac.new(b"coturn-shared-secret", turn["username"].encode(), hashlib.sha1).digest())
    assert turn["credential"] == expected.decode()
    again = await config_of(tmp_path / "again", turn_secret="coturn-shared-secret", turn_urls="turn:t:3478")
    assert again["iceServers"][0]["username"] != turn["username"], "each config gets its own credential"


async def test_cloud_mode_uses_the_appsync_endpoints(tmp_path: Path) -> None:
    body = await config_of(tmp_path, appsync_endpoint="https://abc.appsync-api.us-east-1.amazonaws.com/event",
                     speech_engine="nova-sonic", voice_id="tiffany")
    assert body["events"] == {
        "http": "https://abc.appsync-api.us-east-1.amazonaws.com/event",
        "realtime": "wss://abc.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        "auth": "authorization",
    }
    assert body["engine"] == "nova-sonic"
    assert body["voice"] == "tiffany"
    assert {"matthew", "tiffany"} <= set(body["voices"])


@pytest.mark.parametrize("bad", ["turn:only-urls-no-secret:3478"])
async def test_turn_urls_without_a_secret_give_no_credentials(tmp_path: Path, bad: str) -> None:
    body = await config_of(tmp_path, turn_urls=bad)
    assert body["iceServers"] == []
    assert body["iceTransportPolicy"] == "all"
