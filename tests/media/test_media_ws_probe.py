"""``/ws/probe``: the web app's connectivity check reaches the WebSocket path without starting a call."""

from __future__ import annotations

import asyncio
import json

import pytest
from media_support import RunningServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tools.echo import EchoSessionFactory

pytestmark = pytest.mark.timeout(30)


async def test_probe_answers_once_and_closes_without_a_session(echo_server: RunningServer,
                                                               echo_factory: EchoSessionFactory) -> None:
    async with connect(f"{echo_server.ws_url}/ws/probe") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first == {"type": "probe", "ok": True}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1000
    assert echo_factory.active == set()
    assert echo_factory.ended == [], "a probe must not create (and end) a voice session"


async def test_probe_refuses_a_foreign_origin_like_the_audio_socket(echo_server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{echo_server.ws_url}/ws/probe", origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
