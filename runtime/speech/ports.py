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
- ``{"type":"latency","endOfSpeechToAudioMs":float}``
- ``{"type":"error","code","message"}``
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

INPUT_RATE = 16_000  # Hz, what the session takes
OUTPUT_RATE = 24_000  # Hz, what the session gives


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


@runtime_checkable
class SessionFactory(Protocol):
    async def create(self, output: SessionOutput, *, transport: str, voice: str | None = None,
                     client: str | None = None) -> VoiceSession:
        """Create (not start) a session; raises ``runtime.errors.Unavailable`` when at capacity.

        ``client`` (``runtime.ratelimit.client_key``) is who the booking abuse limits count the calls'
        bookings against, besides the session itself.
        """
        ...
