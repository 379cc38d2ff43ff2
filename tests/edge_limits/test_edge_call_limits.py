"""Call limits on the real session core with the offline engine: a silent caller and an endless call are
ended with a spoken goodbye, and the page is told why.

Through the WebSocket transport in-process (TestClient), with limits of a second or two set through settings.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.media.audio import OUTPUT_FRAME_BYTES
from runtime.media.webrtc import WebRtcCall
from runtime.media.ws_audio import LIMIT_CLOSE_REASONS
from runtime.settings import Settings
from tools.echo import EchoSessionFactory

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-call-limits")


def _client(data_dir: Path, tmp_path: Path, **limits: Any) -> TestClient:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, sqlite_path=tmp_path / "c.db", staff_token="staff",
                        session_secret="s" * 32, workers=1, **limits)
    return TestClient(create_app(settings), base_url="http://concierge.test")


def _run_call(client: TestClient, *, silence_seconds: float = 0.0, within: float = 40.0) -> tuple[list[dict], dict]:
    """Open a call, optionally stream silence, and collect every JSON message until the server closes."""
    messages: list[dict] = []
    deadline = time.monotonic() + within
    with client.websocket_connect("ws://concierge.test/ws/audio") as ws:
        quiet = bytes(3200)  # 100 ms of silence: the guest's line is open, nobody speaks
        for _ in range(int(silence_seconds * 10)):
            ws.send_bytes(quiet)
        while time.monotonic() < deadline:
            message = ws.receive()
            if message["type"] == "websocket.close":
                return messages, message
            if message.get("text") is not None:
                messages.append(json.loads(message["text"]))
    raise AssertionError(f"the call was not ended within {within} s: {messages[-5:]}")


def _said(messages: list[dict]) -> list[str]:
    return [m["text"] for m in messages if m.get("type") == "transcript" and m.get("role") == "ASSISTANT"
            and m.get("final")]


def _check_idle(messages: list[dict], close: dict) -> None:
    said = _said(messages)
    assert len(said) >= 2, messages  # the greeting, then the goodbye
    assert "goodbye" in said[-1].lower()
    ended = [m for m in messages if m.get("type") == "status" and m.get("state") == "ended"]
    assert ended, messages
    assert ended[-1]["reason"] == "idle"
    assert ended[-1]["message"]
    assert close["code"] == 1000
    assert close["reason"] == LIMIT_CLOSE_REASONS["idle"]
    # Silence frames are not speech, and the instruction never became a guest turn in the transcript.
    assert not [m for m in messages if m.get("type") == "transcript" and m.get("role") == "USER" and m.get("final")]
    # The idle clock started when the greeting had been heard (played at real time), not when it was made.
    assert not [m for m in messages if m.get("type") == "notice"]


def _check_max_duration(messages: list[dict], close: dict) -> None:
    kinds = [(m.get("type"), m.get("code") or m.get("state")) for m in messages]
    warning = kinds.index(("notice", "call_ending_soon"))
    ended = kinds.index(("status", "ended"))
    assert warning < ended
    assert 0 <= messages[warning]["secondsLeft"] <= 2
    assert messages[ended]["reason"] == "max_duration"
    assert "goodbye" in _said(messages)[-1].lower()
    assert close["code"] == 1000
    assert close["reason"] == LIMIT_CLOSE_REASONS["max_duration"]


# ~15 s: the offline engine's models load, and greeting and goodbye play out at real time (both calls at once).
@pytest.mark.slow
def test_silent_and_endless_calls_hear_goodbye_and_the_page_is_told_why(data_dir: Path, tmp_path: Path) -> None:
    idle = _client(data_dir, tmp_path / "idle", call_idle_timeout_seconds=1.0, call_max_seconds=600)
    endless = _client(data_dir, tmp_path / "endless", call_idle_timeout_seconds=600, call_max_seconds=3.0,
                      call_max_warning_seconds=1.5)
    with idle, endless, ThreadPoolExecutor(2) as pool:
        silent_call = pool.submit(_run_call, idle, silence_seconds=3.0)
        endless_call = pool.submit(_run_call, endless)
        _check_idle(*silent_call.result(timeout=60))
        _check_max_duration(*endless_call.result(timeout=60))


async def test_webrtc_hangs_up_after_the_goodbye_has_played_out() -> None:
    # The WebRTC call ends when its session does (VoiceSession.wait_ended), but only once the play-out buffer
    # (the goodbye) is empty, and with the session's reason. No peer connection is needed for this part.
    factory = EchoSessionFactory()
    call = WebRtcCall(factory, voice=None)
    call.session = session = await factory.create(call.output, transport="webrtc")
    watcher = asyncio.create_task(call._watch_session())
    await call.buffer.write(bytes(OUTPUT_FRAME_BYTES * 10))
    await session.end("idle")  # the session ends the conversation itself, as a call limit does
    await asyncio.sleep(0.3)
    assert not call.ended, "hung up before the goodbye was played"
    while call.buffer.read_frame() is not None:
        pass
    async with asyncio.timeout(5):
        await call._released.wait()
    assert call.end_reason == "idle"
    await watcher
