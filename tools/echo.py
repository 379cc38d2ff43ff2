"""A diagnostic voice session that plays the caller's own voice back, with transcript-style messages.

It implements ``ports.SessionFactory``/``VoiceSession`` with no speech model, so the media transports
can be tested and benchmarked on their own (tests/media, bench/rtc_sessions.py), and an operator can
check a network path without spending model time. It is not wired into the app by default.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import Any

import numpy as np
import soxr

from runtime.auth import mint_session_token
from runtime.errors import Unavailable
from runtime.speech.ports import INPUT_RATE, OUTPUT_RATE, SessionOutput, is_heard_figure
from runtime.turn_trace import TurnTrace

REPORT_EVERY_BYTES = INPUT_RATE * 2  # one "transcript" message per second of caller audio
SILENCE_PEAK = 300  # chunks quieter than this are not echoed, like an assistant that stays quiet


class EchoSession:
    def __init__(self, factory: EchoSessionFactory, output: SessionOutput, transport: str) -> None:
        self.factory = factory
        self.output = output
        self.transport = transport
        self.session_id = str(uuid.uuid4())
        self.session_token = mint_session_token(factory.secret, self.session_id, 3600)
        self._ended = asyncio.Event()
        self._trace = TurnTrace(self.session_id, transport, "echo")
        self.heard: list[float] = []  # the caller's "heard" reports, kept for the tests of the transports
        self.received_bytes = 0
        self._next_report = REPORT_EVERY_BYTES
        self._resampler = soxr.ResampleStream(INPUT_RATE, OUTPUT_RATE, 1, dtype="int16")
        self.end_reason: str | None = None
        self.started_at: float | None = None

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> str:
        await self._ended.wait()
        return self.end_reason or "ended"

    @property
    def trace(self) -> TurnTrace:
        return self._trace

    def report_heard(self, seconds: float) -> None:
        # No replies to count here, and no metric: an echo is not the assistant the histogram describes.
        if is_heard_figure(seconds):
            self.heard.append(seconds)

    async def start(self) -> None:
        self.started_at = time.monotonic()
        await self.output.message({"type": "status", "state": "listening"})

    async def push_audio(self, pcm: bytes) -> None:
        if self._ended.is_set():
            return
        self.received_bytes += len(pcm)
        out = self._resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2"))
        # Echo sound only: silence is left to the transport's own idle frames, so the play-out buffer
        # empties between utterances (as with a real assistant) and the echo delay stays the path's.
        if out.size and int(np.abs(out).max()) >= SILENCE_PEAK:
            await self.output.audio(out.astype("<i2").tobytes())
        if self.received_bytes >= self._next_report:
            self._next_report += REPORT_EVERY_BYTES
            await self.output.message({
                "type": "transcript", "role": "USER", "final": True,
                "text": f"heard {self.received_bytes // (INPUT_RATE * 2 // 1000)} ms of audio",
                "turnId": f"{self.session_id}:{self.received_bytes}",
            })

    async def end(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self.end_reason = reason
        self.factory.active.discard(self)
        self.factory.ended.append(self)
        self._ended.set()


class EchoSessionFactory:
    """Creates ``EchoSession``s up to ``max_sessions`` at once, like the real session manager."""

    def __init__(self, *, secret: str | None = None, max_sessions: int = 25) -> None:
        self.secret = secret or secrets.token_urlsafe(32)
        self.max_sessions = max_sessions
        self.active: set[EchoSession] = set()
        self.ended: list[EchoSession] = []

    @property
    def active_count(self) -> int:
        return len(self.active)

    async def create(self, output: SessionOutput, *, transport: str, voice: str | None = None,
                     client: str | None = None) -> EchoSession:
        if len(self.active) >= self.max_sessions:
            raise Unavailable(f"this server is at its limit of {self.max_sessions} calls; try again shortly")
        session = EchoSession(self, output, transport)
        self.active.add(session)
        return session

    async def close_all(self, reason: str) -> None:
        for session in list(self.active):
            await session.end(reason)

    def info(self) -> dict[str, Any]:
        return {"active": len(self.active), "ended": len(self.ended)}
