"""The offline engine behind the real session core (runtime.speech.session.SessionManager), with a real
BookingService on SQLite: a caller speaks in real time through ``push_audio`` and the booking lands in the
store, the caller gets the booking message, and the transcript is stored turn by turn."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from runtime.bookings.service import BookingService
from runtime.engine import OfflineEngine
from runtime.settings import Settings
from runtime.speech.session import SessionManager
from runtime.stores.sqlite import SQLiteStore
from tests.engine.voices import hibari_voice


class Output:
    def __init__(self) -> None:
        self.pcm = bytearray()
        self.messages: list[dict[str, Any]] = []
        self.flushes = 0

    async def audio(self, pcm: bytes) -> None:
        self.pcm += pcm

    def flush_audio(self) -> None:
        self.flushes += 1

    async def message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def finals(self, role: str) -> list[str]:
        return [m["text"] for m in self.messages
                if m.get("type") == "transcript" and m.get("role") == role and m.get("final")]


async def _speak(session: Any, pcm: bytes) -> None:
    """Real-time 32 ms frames, as a transport delivers them."""
    started = time.monotonic()
    step = 1024
    for i, off in enumerate(range(0, len(pcm), step)):
        await session.push_audio(pcm[off : off + step])
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.032 - time.monotonic()))


async def _assistant_done(out: Output, count: int, within: float = 20.0) -> None:
    """Wait until the assistant has finished ``count`` replies (its FINAL transcripts)."""
    deadline = time.monotonic() + within
    while len(out.finals("ASSISTANT")) < count:
        assert time.monotonic() < deadline, out.messages[-5:]
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_spoken_booking_through_the_session_core(settings: Settings, store: SQLiteStore,
                                                        bookings: BookingService) -> None:
    engine = OfflineEngine(settings)
    await engine.warm_up()
    manager = SessionManager(engine, bookings, store, settings, session_secret="engine-tests-secret")
    out = Output()
    session = await manager.create(out, transport="websocket")
    await session.start()
    try:
        await _assistant_done(out, 1)
        heard = 0
        lines = ["i would like to book a table for four people tomorrow at seven pm", "my name is alice smith",
                 "yes please"]
        for i, line in enumerate(lines, start=2):
            # Let the previous reply play out (a transport would pace it), then speak.
            await asyncio.sleep((len(out.pcm) - heard) / 2 / 24_000)
            heard = len(out.pcm)
            await _speak(session, hibari_voice(line) + bytes(16_000))
            await _assistant_done(out, i)
        tomorrow = (datetime.now(settings.tz).date() + timedelta(days=1)).isoformat()
        stored = await bookings.list_by_date(tomorrow)
        assert [(b.name, b.hour, b.num_guests, b.session_id) for b in stored] == [
            ("Alice Smith", "19:00", 4, session.session_id)]
        assert any(m.get("type") == "booking" and m.get("action") == "created" for m in out.messages)
        assert out.finals("USER")[:2] == ["i would like to book a table for four people tomorrow at seven p.m.",
                                          "my name is alice smith"]
        # The engine stamps its stages on the call's trace (runtime/turn_trace.py), through the session core's
        # context: one set per spoken turn, the end of speech before the confirmed end of turn.
        marks = list(session.trace.marks)
        stages = [stage for stage, _ in marks]
        for stage in ("speech_end", "endpoint", "asr_final", "decision", "tts_first_chunk"):
            assert stages.count(stage) == len(lines), stages
        assert "tool_result" in stages
        ends = [at for stage, at in marks if stage == "speech_end"]
        endpoints = [at for stage, at in marks if stage == "endpoint"]
        assert all(e < p for e, p in zip(ends, endpoints, strict=True))
    finally:
        await session.end("test over")
        await engine.close()
    turns = await store.conversations.list(session.session_id)
    assert [t.role for t in turns][:2] == ["ASSISTANT", "USER"]
    assert any(stored[0].booking_id in t.text.replace(" ", "").replace(",", "") or "booked" in t.text
               for t in turns if t.role == "ASSISTANT")
