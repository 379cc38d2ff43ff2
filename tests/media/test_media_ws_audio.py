"""The WebSocket fallback: a caller streams 16 kHz PCM and hears 24 kHz PCM back, paced at real time."""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import numpy as np
import pytest
from media_support import RunningServer, start_server, stop_server, tone
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from emulators.identity import CredentialBook, IssuedCredentials
from emulators.nova_sonic import NovaSonicEmulator, Say, Script, Turn, make_test_certificates
from runtime import turn_trace

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


def _caller_count(exposition: str) -> float:
    for line in exposition.splitlines():
        if line.startswith('voice_caller_response_seconds_count{engine="nova-sonic",transport="websocket"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _until(ws, wanted) -> dict:
    """Text messages until one ``wanted`` accepts (binary audio frames are skipped)."""
    async with asyncio.timeout(15):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str) and wanted(message := json.loads(frame)):
                return message


async def test_heard_reports_reach_metrics_and_a_bad_one_does_not_end_the_call(tmp_path, monkeypatch) -> None:
    # The real session core on the real Nova Sonic client, against the strict emulator (one reply).
    certs = make_test_certificates(str(tmp_path / "tls"))
    book = CredentialBook()
    book.add(IssuedCredentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                               os.environ.get("AWS_SESSION_TOKEN") or None))
    script = Script([Turn("a table please", Say("For how many guests?", 300))], fallback=None)
    emulator = NovaSonicEmulator(script, credentials=book, turn_pause_seconds=0.12)
    async with emulator.serve(certs.cert_file, certs.key_file) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
        monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
        server = start_server(tmp_path / "server", speech_engine="nova-sonic", speech_greet_first=False)
        try:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                before = _caller_count((await http.get("/metrics")).text)
                async with connect(f"{server.ws_url}/ws/audio") as ws:
                    session_id = json.loads(await ws.recv())["sessionId"]
                    for bad in ('"soon"', "true", "0", "-5", "30001", "null"):
                        await ws.send(f'{{"type": "heard", "latencyMs": {bad}}}')
                        error = await _until(ws, lambda m: m["type"] == "error")
                        assert error["code"] == "bad_heard", bad
                    speech = (4000 * np.sin(2 * np.pi * 300 * np.arange(5120) / 16_000)).astype("<i2").tobytes()
                    for offset in range(0, len(speech), 640):
                        await ws.send(speech[offset:offset + 640])
                    async with asyncio.timeout(15):
                        while not isinstance(await ws.recv(), bytes):  # the reply's first audio
                            pass
                    await ws.send(json.dumps({"type": "heard", "latencyMs": 420}))
                    await ws.send(json.dumps({"type": "heard", "latencyMs": 380}))  # the same reply: ignored
                    await ws.send(json.dumps({"type": "ping", "id": 1}))  # the call went on through all of it
                    assert (await _until(ws, lambda m: m["type"] == "pong"))["id"] == 1
                    after = _caller_count((await http.get("/metrics")).text)
                    await ws.send(json.dumps({"type": "hangup"}))
                    with pytest.raises(ConnectionClosed):  # noqa: PT012 - drain until the server closes
                        while True:
                            await asyncio.wait_for(ws.recv(), 5)
            assert after == before + 1
            async with asyncio.timeout(10):
                while not (traces := [t for t in turn_trace.finished() if t.call_id == session_id]):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            stop_server(server)
    stages = [stage for stage, _ in traces[0].marks]
    assert "first_audio_out" in stages
    assert stages.index("first_packet_sent", stages.index("first_audio_out")) > 0, "the socket stamps its send"


@pytest.mark.parametrize(("reason", "code", "text"), [
    ("idle", 1000, "call ended: the caller was silent too long"),
    ("error:model_failure", 1011, "the assistant hit a problem"),
])
async def test_the_socket_closes_when_the_session_ends_the_call(echo_server: RunningServer, echo_factory,
                                                                reason: str, code: int, text: str) -> None:
    # The transport hangs up on VoiceSession.wait_ended(), whatever messages the session did or did not send.
    async with connect(f"{echo_server.ws_url}/ws/audio") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        [session] = echo_factory.active
        echo_server.call_in_loop(session.end(reason))
        with pytest.raises(ConnectionClosed):  # noqa: PT012 - drain until the server closes
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert (ws.close_code, ws.close_reason) == (code, text)
