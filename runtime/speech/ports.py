"""What the session core offers transports and what it needs from them.

Transports (WebRTC in ``runtime.media.webrtc``, WebSocket in ``runtime.media.ws_audio``) turn network
audio into 16 kHz mono s16le PCM and push it into a ``VoiceSession``; the session gives back 24 kHz
mono s16le PCM plus JSON messages through the transport's ``SessionOutput``. Data flows one way through
these two interfaces, so transports and the session core can be tested apart.

Messages sent through ``SessionOutput.message`` (data channel / WebSocket text frames), each with a
``type``:

- ``{"type":"session","sessionId","sessionToken"}``             - first message (WebSocket transport)
- ``{"type":"status","state":"listening|thinking|speaking|ended|error", ...}``
- ``{"type":"transcript","role":"USER|ASSISTANT","text","final":bool,"turnId"}``
- ``{"type":"booking","action":"created|cancelled|found","booking":{...}}``
- ``{"type":"interrupted"}``                                        - barge-in: audio was flushed
- ``{"type":"latency","endOfSpeechToAudioMs":float}``             - the server-side figure (see below)
- ``{"type":"error","code","message"}``

Messages from the caller that both transports pass on (data channel / WebSocket text frames):

- ``{"type":"hangup"}``, ``{"type":"ping","id"}``
- ``{"type":"heard","latencyMs":number}`` - after each reply it heard: end of the caller's own voiced speech
  to the first non-silent assistant sample it played (docs/architecture.md, Seams). Goes to ``report_heard``; a value
  ``heard_seconds`` refuses gets an ``error`` message with code ``bad_heard``, and the call goes on.

Two latency figures exist on purpose. ``latency`` (and ``voice_response_latency_seconds``) is what the
server sees: from the last voiced caller frame it received to the reply's first audio handed to the
transport. ``heard`` (``voice_caller_response_seconds``) is what the guest got: it adds the network both
ways, the caller's jitter buffer and the transport's pacing, and only the caller can measure it.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

from runtime.turn_trace import TurnTrace

INPUT_RATE = 16_000  # Hz, what the session takes
OUTPUT_RATE = 24_000  # Hz, what the session gives
# A caller's "heard" figure above this is not a reply time but a report of something else (a muted
# speaker, a tab in the background); it would only stretch the histogram's top bucket.
MAX_HEARD_SECONDS = 30.0
BAD_HEARD_MESSAGE = f"'latencyMs' must be a number of milliseconds, more than 0 and at most {MAX_HEARD_SECONDS * 1e3:g}"


def is_heard_figure(seconds: object) -> bool:
    """The one rule for a caller's reply time, in seconds: a finite number (a JSON boolean is a number to
    Python; it is refused), more than 0 and at most ``MAX_HEARD_SECONDS``."""
    return (not isinstance(seconds, bool) and isinstance(seconds, int | float) and math.isfinite(seconds)
            and 0.0 < seconds <= MAX_HEARD_SECONDS)


def heard_seconds(latency_ms: object) -> float | None:
    """The seconds of a ``heard`` message's ``latencyMs``, or None when ``is_heard_figure`` refuses it.

    Both transports apply it to the caller's message; ``VoiceSession.report_heard`` applies the same rule.
    """
    if isinstance(latency_ms, bool) or not isinstance(latency_ms, int | float):
        return None
    seconds = float(latency_ms) / 1000.0
    return seconds if is_heard_figure(seconds) else None


@runtime_checkable
class SessionOutput(Protocol):
    async def audio(self, pcm: bytes) -> None:
        """Queue assistant audio (24 kHz mono s16le, any length) for paced playback."""
        ...

    def flush_audio(self) -> None:
        """Barge-in: drop every queued, unplayed sample at once."""
        ...

    async def message(self, message: dict[str, Any]) -> None:
        """Deliver a JSON control/transcript message to the caller (best effort)."""
        ...


@runtime_checkable
class VoiceSession(Protocol):
    session_id: str
    session_token: str

    async def start(self) -> None:
        """Open the model stream and begin the conversation."""
        ...

    async def push_audio(self, pcm: bytes) -> None:
        """Caller audio, 16 kHz mono s16le, any length (the core re-frames it)."""
        ...

    async def end(self, reason: str) -> None:
        """Hang up: close the model stream cleanly, flush stores, release everything. Idempotent."""
        ...

    @property
    def ended(self) -> bool: ...

    async def wait_ended(self) -> str:
        """Return, with the reason, once the session has ended - by ``end`` or by itself.

        What a transport waits on to hang up when the session ends the conversation (a call limit, an
        unrecoverable model fault, shutdown), instead of reading the session's UI messages or polling
        ``ended``. By the time it returns, every message of the session (the last ``status``) is queued
        on the ``SessionOutput``; the transport still plays the audio it holds before it hangs up.
        """
        ...

    @property
    def trace(self) -> TurnTrace:
        """The call's stage stamps (runtime.turn_trace); transports stamp ``first_packet_sent`` on it."""
        ...

    def report_heard(self, seconds: float) -> None:
        """The caller's measured reply time (a ``heard`` message), for ``voice_caller_response_seconds``.

        At most one per assistant reply; a value ``is_heard_figure`` refuses, or a second report for the
        same reply, is ignored. Never raises: a caller's bad report must not end its call.
        """
        ...


@runtime_checkable
class SessionFactory(Protocol):
    async def create(self, output: SessionOutput, *, transport: str, voice: str | None = None,
                     client: str | None = None) -> VoiceSession:
        """Create (not start) a session; raises ``runtime.errors.Unavailable`` when at capacity.

        ``client`` (``runtime.ratelimit.client_key``) is who the booking abuse limits count the calls'
        bookings against, besides the session itself.
        """
        ...
