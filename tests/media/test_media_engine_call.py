"""Must-show: a caller talks to the real runtime with the offline engine, over WebRTC and over WebSocket.

The caller's WAV is synthesised at test time (hibari, the engine's own TTS library) and padded with
silence so the engine's endpointer sees the end of the utterance. The runtime runs under uvicorn on a
real port with its default wiring (``services.sessions`` = SessionManager + OfflineEngine), started
once for the module inside a private network namespace (conftest ``module_netns_address``) so the
WebRTC call can only use that namespace's address.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soxr
from media_support import RunningServer, candidate_addresses, read_wav_mono, start_server, stop_server, write_wav
from websockets.asyncio.client import connect

from runtime.media.audio import resample_pcm, rms_dbfs
from tools.probe import CallProbe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

UTTERANCE = "Hello, I would like to book a table please."


@pytest.fixture(scope="module")
def caller_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import hibari  # a pinned dependency: missing means a broken install, which must fail, not skip

    voice = hibari.Hibari(voice="heart", threads=1)
    speech = np.concatenate(list(voice.stream(UTTERANCE, speed=1.0, seed=1)))
    pcm = (np.clip(soxr.resample(speech, 24_000, 16_000), -1, 1) * 32767).astype("<i2")
    padded = np.concatenate([np.zeros(8000, "<i2"), pcm, np.zeros(16000 * 2, "<i2")])
    return write_wav(tmp_path_factory.mktemp("wav") / "caller.wav", padded, 16_000)


@pytest.fixture(scope="module")
def engine_server(module_netns_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("engine"))
    try:
        yield running
    finally:
        stop_server(running)


def texts(messages: list[dict], role: str) -> list[str]:
    return [m["text"] for m in messages if m.get("type") == "transcript" and m.get("role") == role]


async def test_webrtc_call_with_the_offline_engine(engine_server: RunningServer, caller_wav: Path,
                                                   module_netns_address: str) -> None:
    pcm, rate = read_wav_mono(caller_wav)
    probe = CallProbe()
    try:
        offer = await probe.offer()
        async with httpx.AsyncClient(base_url=engine_server.base_url, timeout=30) as http:
            response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
        assert response.status_code == 200, response.text
        assert candidate_addresses(response.json()["sdp"]) == {module_netns_address}
        await probe.accept(response.json()["sdp"])
        await probe.wait_connected()
        await probe.speak(resample_pcm(pcm, rate, 24_000))
        await probe.wait_for_message(lambda m: m.get("type") == "transcript" and m.get("role") == "ASSISTANT",
                                     within=60)
        await probe.wait_for_sound(50, within=30)
        received = probe.received
        assert received.rates == {48_000}
        assert received.loud_frames >= 50, "the caller hears at least a second of assistant speech"
        heard = bytes(received.pcm)
        assert rms_dbfs(heard) > -45
        # the assistant's 24 kHz speech survives the trip: its energy sits in the speech band, not aliased
        spectrum = np.abs(np.fft.rfft(np.frombuffer(heard, "<i2").astype(float)))
        freqs = np.fft.rfftfreq(len(heard) // 2, 1 / 48_000)
        assert spectrum[(freqs > 80) & (freqs < 4000)].sum() > 5 * spectrum[freqs > 12_000].sum()
        assert texts(probe.messages, "ASSISTANT")
        probe.send({"type": "hangup"})
        await asyncio.sleep(0.3)
    finally:
        await probe.close()
    async with httpx.AsyncClient(base_url=engine_server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_websocket_call_with_the_offline_engine(engine_server: RunningServer, caller_wav: Path) -> None:
    pcm, _ = read_wav_mono(caller_wav)
    messages: list[dict] = []
    audio = bytearray()
    async with connect(f"{engine_server.ws_url}/ws/audio") as ws:
        session = json.loads(await ws.recv())
        assert session["type"] == "session"
        assert session["sessionToken"]
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), 640)):  # 20 ms frames at real time
            await ws.send(pcm[offset:offset + 640])
            await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - time.monotonic()))
            while True:
                try:
                    frame = await asyncio.wait_for(ws.recv(), 0.001)
                except TimeoutError:
                    break
                if isinstance(frame, bytes):
                    audio += frame
                else:
                    messages.append(json.loads(frame))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(audio) < 48_000 * 2 or not texts(messages, "USER")):
            try:
                frame = await asyncio.wait_for(ws.recv(), 1)
            except TimeoutError:
                continue
            if isinstance(frame, bytes):
                audio += frame
            else:
                messages.append(json.loads(frame))
        await ws.send(json.dumps({"type": "hangup"}))
    assert texts(messages, "ASSISTANT"), messages
    assert any("table" in t.lower() or "book" in t.lower() for t in texts(messages, "USER")), messages
    assert len(audio) >= 48_000 * 2, "at least a second of 24 kHz assistant audio"
    assert rms_dbfs(bytes(audio)) > -45
