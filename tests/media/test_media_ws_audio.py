"""The WebSocket fallback: a caller streams 16 kHz PCM and hears 24 kHz PCM back, paced at real time."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from media_support import RunningServer, tone
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.timeout(60)


def dominant(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / samples.size)


async def test_websocket_call_round_trip(echo_server: RunningServer, echo_factory) -> None:
    speech = tone(440, 2.0, 16_000).tobytes()
    async with connect(f"{echo_server.ws_url}/ws/audio") as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "session"
        assert first["sessionToken"].split(".")[1] == first["sessionId"]
        for offset in range(0, len(speech), 640):  # 20 ms frames, sent faster than real time
            await ws.send(speech[offset:offset + 640])
        audio = bytearray()
        messages: list[dict] = []
        started = time.monotonic()
        while len(audio) < 90_000 and time.monotonic() - started < 10:
            frame = await asyncio.wait_for(ws.recv(), 5)
            if isinstance(frame, bytes):
                audio += frame
            else:
                messages.append(json.loads(frame))
        took = time.monotonic() - started
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        while not any(m.get("type") == "pong" for m in messages):
            frame = await asyncio.wait_for(ws.recv(), 5)
            if isinstance(frame, str):
                messages.append(json.loads(frame))
        await ws.send(json.dumps({"type": "hangup"}))
        with pytest.raises(ConnectionClosed):  # noqa: PT012 - drain until the server closes
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1000
    samples = np.frombuffer(bytes(audio), dtype="<i2")
    assert dominant(samples, 24_000) == pytest.approx(440, abs=5), "24 kHz audio comes back at the right pitch"
    assert took > 1.5, f"1.9 s of audio arrived in {took:.2f} s: downstream audio must be paced, not dumped"
    assert any(m["type"] == "transcript" and m["role"] == "USER" for m in messages)
    assert next(m for m in messages if m["type"] == "pong")["id"] == 7
    for _ in range(30):
        if not echo_factory.active:
            break
        await asyncio.sleep(0.1)
    assert not echo_factory.active
    assert echo_factory.ended[0].transport == "websocket"
