"""Must-show (issue 16): Nova Sonic refuses every stream, and a guest still books a table by voice.

The runtime runs under uvicorn with ``SPEECH_ENGINE=nova-sonic`` and ``SPEECH_FALLBACK_ENGINE=local``; its
production Nova Sonic client talks to the strict emulator (TLS + HTTP/2, SigV4 verified), which refuses
every stream with ``throttlingException`` as Bedrock does at the account's concurrency quota. Each call
(WebSocket, then WebRTC) fails over to the offline engine, and the caller - three synthesised sentences,
each said after the assistant's reply has finished playing - books a table that lands in the store once.
Everything runs inside a private network namespace (conftest ``module_netns_address``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from media_support import RunningServer, start_server, stop_server
from websockets.asyncio.client import ClientConnection, connect

from emulators.identity import CredentialBook, IssuedCredentials
from emulators.nova_sonic import NovaSonicEmulator, Script, make_test_certificates
from runtime.media.audio import resample_pcm
from tests.engine.voices import hibari_voice
from tools.probe import SILENCE_DBFS, CallProbe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REFUSED_STREAMS = 40  # more than both calls can use: Nova Sonic never serves in this module
FRAME = 640  # 20 ms of 16 kHz s16le
QUIET_SECONDS = 1.5  # the WebRTC caller's "the assistant has finished" (see heard_out)


class EmulatorThread:
    """The emulator on its own event loop and thread (the runtime's uvicorn has the other)."""

    def __init__(self, emulator: NovaSonicEmulator, certfile: str, keyfile: str) -> None:
        self.emulator = emulator
        self._files = (certfile, keyfile)
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="nova-emulator", daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with self.emulator.serve(*self._files) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the Nova Sonic emulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def failover_server(module_netns_address: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[RunningServer, NovaSonicEmulator]]:
    certs = make_test_certificates(str(tmp_path_factory.mktemp("nova-tls")))
    book = CredentialBook()
    book.add(IssuedCredentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                               os.environ.get("AWS_SESSION_TOKEN") or None))
    emulator = NovaSonicEmulator(Script([]), credentials=book)
    for _ in range(REFUSED_STREAMS):
        emulator.inject_stream_fault("throttlingException", "Too many requests, please wait", after_events=1)
    saved = {key: os.environ.get(key) for key in ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "NOVA_SONIC_CA_BUNDLE")}
    with EmulatorThread(emulator, certs.cert_file, certs.key_file) as nova:
        os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = nova.url
        os.environ["NOVA_SONIC_CA_BUNDLE"] = certs.ca_file
        running = start_server(tmp_path_factory.mktemp("failover"), speech_engine="nova-sonic",
                               speech_fallback_engine="local", speech_max_attempts=1, speech_warm_up=True)
        try:
            failover = running.app.state.services.failover
            deadline = time.monotonic() + 90
            while not failover.loaded:  # warmed at start-up (SPEECH_WARM_UP), as `serve` does
                assert time.monotonic() < deadline, "the fallback engine did not load"
                time.sleep(0.1)
            yield running, emulator
        finally:
            stop_server(running)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


LINES = {
    "Alice Smith": ["i would like to book a table for four people tomorrow at seven pm", "my name is alice smith",
                    "yes please"],
    "Bob Jones": ["i would like to book a table for two people tomorrow at eight pm", "my name is bob jones",
                  "yes please"],
}


def _finals(messages: list[dict[str, Any]], role: str) -> list[str]:
    return [m["text"] for m in messages if m.get("type") == "transcript" and m.get("final") and m["role"] == role]


class WebSocketCaller:
    """A caller on /ws/audio: 20 ms frames at real time (silence between sentences), assistant audio played
    on a simulated speaker, so the caller speaks only once the reply has been heard out."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.speaker_until = 0.0  # when the assistant audio received so far finishes playing
        self.last_audio = 0.0
        self._say: bytearray = bytearray()

    async def run(self) -> None:
        async def send() -> None:
            next_at = time.monotonic()
            while True:
                frame, self._say[:FRAME] = bytes(self._say[:FRAME]), b""
                await self.ws.send(frame.ljust(FRAME, b"\0"))
                next_at += 0.02
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        sender = asyncio.create_task(send())
        try:
            async for frame in self.ws:
                now = time.monotonic()
                if isinstance(frame, bytes):
                    self.speaker_until = max(self.speaker_until, now) + len(frame) / 48_000
                    self.last_audio = now
                else:
                    self.messages.append(json.loads(frame))
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def heard_out(self, finals: int, within: float = 40) -> None:
        deadline = time.monotonic() + within
        while not (len(_finals(self.messages, "ASSISTANT")) >= finals and not self._say
                   and time.monotonic() > self.speaker_until + 0.4 and time.monotonic() > self.last_audio + 0.4):
            assert time.monotonic() < deadline, f"no reply heard out; got {self.messages[-6:]}"
            await asyncio.sleep(0.05)

    def say(self, pcm16k: bytes) -> None:
        self._say += pcm16k


async def _converse(say: Any, heard_out: Any, messages: list[dict[str, Any]], name: str) -> None:
    """Notice and greeting, then each sentence after the previous reply was heard out."""
    await heard_out(2)  # "...the backup assistant." + the greeting
    *lines, last = LINES[name]
    for line in lines:
        finals = len(_finals(messages, "ASSISTANT"))
        await say(hibari_voice(line))
        await heard_out(finals + 1)
    await say(hibari_voice(last))
    deadline = time.monotonic() + 30
    while not any("is booked" in text for text in _finals(messages, "ASSISTANT")):  # no need to hear it out
        assert time.monotonic() < deadline, messages[-6:]
        await asyncio.sleep(0.05)


def _check_booking(server: RunningServer, messages: list[dict[str, Any]], name: str, hour: str,
                   guests: int) -> None:
    assert any(m.get("type") == "status" and m.get("fallback") and m.get("engine") == "local"
               and m.get("reason") == "throttled" for m in messages), "the page is told of the failover"
    assert "backup assistant" in _finals(messages, "ASSISTANT")[0]
    assert not [m for m in messages if m.get("type") == "interrupted"], ("the caller heard every reply out",
                                                                          _timeline(messages))
    services = server.app.state.services
    tomorrow = (datetime.now(services.settings.tz).date() + timedelta(days=1)).isoformat()
    stored = server.call_in_loop(services.bookings.list_by_date(tomorrow))
    assert [(b.name, b.hour, b.num_guests) for b in stored if b.name == name] == [(name, hour, guests)]
    [booked] = [m for m in messages if m.get("type") == "booking"]
    assert booked["booking"]["name"] == name


def _timeline(messages: list[dict[str, Any]]) -> list[str]:
    """What the caller saw, in order, short enough to read in a failure report."""
    return [f"{m.get('_at', 0):7.2f} {m['type']} {m.get('role', '')} {m.get('state', '')} {m.get('text', '')}"[:110]
            for m in messages if m.get("type") in ("status", "transcript", "interrupted") and m.get("final", True)]


def _timeline(messages: list[dict[str, Any]]) -> list[str]:
    """What the caller was told, in order, short enough to read in a failure report."""
    return [f"{m['type']} {m.get('role', '')}{m.get('state', '')} {m.get('text', '')}"[:100]
            for m in messages if m.get("type") in ("status", "transcript", "interrupted") and m.get("final", True)]


async def _failovers(server: RunningServer) -> float:
    """``speech_failovers_total{reason="throttled"}`` as /metrics shows it (the registry is per process)."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(r'^speech_failovers_total\{reason="throttled"\} (\S+)$', text, re.MULTILINE)
    return float(found[1]) if found else 0.0


async def _websocket_call(server: RunningServer) -> list[dict[str, Any]]:
    async with connect(f"{server.ws_url}/ws/audio", max_size=2**22) as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        caller = WebSocketCaller(ws)
        runner = asyncio.create_task(caller.run())

        async def say(pcm: bytes) -> None:
            caller.say(pcm)

        try:
            await _converse(say, caller.heard_out, caller.messages, "Alice Smith")
        finally:
            await ws.send(json.dumps({"type": "hangup"}))
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
    return caller.messages


async def _webrtc_call(server: RunningServer) -> list[dict[str, Any]]:
    probe = CallProbe()
    try:
        offer = await probe.offer()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
        assert response.status_code == 200, response.text
        await probe.accept(response.json()["sdp"])
        await probe.wait_connected()
        loop = asyncio.get_running_loop()
        said_until = 0.0  # loop time at which the caller's last sentence has been played out

        async def say(pcm16k: bytes) -> None:
            nonlocal said_until
            await probe.speak(resample_pcm(pcm16k, 16_000, 24_000))
            said_until = loop.time() + len(pcm16k) / 32_000

        async def heard_out(finals: int, within: float = 40) -> None:
            """The reply's text has come, its sound has been heard, and the line has gone quiet.

            Quiet means QUIET_SECONDS without a loud packet. Final transcripts arrive before their audio
            has played, and between two utterances (the failover notice, then the greeting) the line is
            quiet for up to about 0.8 s of synthesised lead-in and tail; a shorter window made this caller
            speak over the greeting on a loaded machine.
            """
            deadline = time.monotonic() + within
            while True:
                received = probe.received
                loud = [t for t, level in zip(received.arrivals, received.levels, strict=True)
                        if level > SILENCE_DBFS and t > said_until]
                if (len(_finals(probe.messages, "ASSISTANT")) >= finals and loud
                        and loop.time() > loud[-1] + QUIET_SECONDS):
                    return
                assert time.monotonic() < deadline, f"no reply heard out; got {probe.messages[-6:]}"
                await asyncio.sleep(0.05)

        await _converse(say, heard_out, probe.messages, "Bob Jones")
        probe.send({"type": "hangup"})
        await asyncio.sleep(0.3)
    finally:
        await probe.close()
    return probe.messages


async def test_guests_book_by_voice_over_websocket_and_webrtc_while_nova_sonic_refuses_every_stream(
        failover_server) -> None:
    """Both calls at once (as guests do; it also halves the test's time)."""
    server, emulator = failover_server
    before = await _failovers(server)
    ws_messages, rtc_messages = await asyncio.gather(_websocket_call(server), _webrtc_call(server))
    assert [s.error for s in emulator.streams] == ["throttlingException"] * 4  # per call: a try + 1 retry
    _check_booking(server, ws_messages, "Alice Smith", "19:00", 4)
    _check_booking(server, rtc_messages, "Bob Jones", "20:00", 2)
    assert await _failovers(server) == before + 2
    assert server.app.state.services.failover.breaker.state == "closed"  # 2 refused sessions < 3
