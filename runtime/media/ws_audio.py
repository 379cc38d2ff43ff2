"""WebSocket ``/ws/audio``: the audio transport for networks that block UDP.

Binary frames are PCM s16le mono, 16 kHz from the caller and 24 kHz to the caller; text frames are
JSON objects with a ``type``. The first text frame the server sends is
``{"type":"session","sessionId","sessionToken"}``.

Audio down is paced at real time with a small lead (``LEAD_SECONDS``) rather than sent as fast as the
session produces it, so barge-in can still discard what the caller has not received yet.

Bad input closes the socket with the RFC 6455 code that names the problem: 1007 (not JSON, odd PCM
length), 1009 (frame too large), 1008 (too fast, or a client that stops reading), 1013 (at capacity).
A bad value in a frame we understand (a ``heard`` report that is not a figure) gets an ``error`` message
back and the call goes on: it is the caller's measurement, not the conversation.

When the session ends the conversation itself (``VoiceSession.wait_ended``), its last words play out and
the socket closes 1000 - or 1011 when it ended on a fault the guest was told about.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runtime.media import metrics
from runtime.media.audio import OUTPUT_FRAME_BYTES
from runtime.media.outbound import FRAME_SECONDS, PlayoutBuffer
from runtime.ratelimit import TokenBucket
from runtime.speech.ports import BAD_HEARD_MESSAGE, INPUT_RATE, VoiceSession, heard_seconds
from runtime.turn_trace import TurnTrace

log = logging.getLogger("runtime.media.ws")

MAX_AUDIO_FRAME_BYTES = INPUT_RATE * 2  # one second of 16 kHz audio per frame at most
MAX_TEXT_FRAME_CHARS = 4096
MAX_FRAMES_PER_SECOND = 100.0  # 10 ms frames are the smallest sensible size
FRAME_BURST = 200
AUDIO_RATE_FACTOR = 2.0  # sustained audio may arrive at most twice as fast as real time
AUDIO_BURST_SECONDS = 3.0
LEAD_SECONDS = 0.2
SEND_TIMEOUT_SECONDS = 10.0
MAX_PENDING_MESSAGES = 500
DRAIN_SECONDS = 15.0  # when the session ends, its last words (a goodbye) play out for at most this long
# Close reasons (RFC 6455 allows 123 bytes) for calls the session ended by a call limit.
LIMIT_CLOSE_REASONS = {"idle": "call ended: the caller was silent too long",
                       "max_duration": "call ended: maximum call length reached"}

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INVALID = 1007
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011
CLOSE_TRY_AGAIN = 1013


class Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WsOutput:
    """``SessionOutput`` of a WebSocket call; one writer task owns the socket's send side."""

    def __init__(self) -> None:
        self.buffer = PlayoutBuffer()
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self.dropped_messages = 0
        self.session_ended = False
        self.end_reason: str | None = None  # the session's reason, when it ended the call itself
        self.trace: TurnTrace | None = None  # the call's stage stamps; set once the session exists

    async def audio(self, pcm: bytes) -> None:
        await self.buffer.write(pcm)
        self._wake.set()

    def flush_audio(self) -> None:
        self.buffer.flush()

    async def message(self, message: dict[str, Any]) -> None:
        if self._messages.qsize() >= MAX_PENDING_MESSAGES:
            self._messages.get_nowait()
            self.dropped_messages += 1
        self._messages.put_nowait(message)
        self._wake.set()

    def session_over(self, reason: str) -> None:
        """The session ended the conversation: send what is queued, play the audio out, then close."""
        self.session_ended = True
        self.end_reason = reason
        self._wake.set()

    async def run_writer(self, websocket: WebSocket) -> None:
        """Send queued messages at once and audio paced at real time plus ``LEAD_SECONDS``."""
        loop = asyncio.get_running_loop()
        audio_start: float | None = None
        sent_seconds = 0.0
        ended_at: float | None = None
        while True:
            while not self._messages.empty():
                await self._send(websocket.send_text(json.dumps(self._messages.get_nowait(), default=str)))
            now = loop.time()
            if len(self.buffer) == 0:
                audio_start = None  # idle: the next utterance starts a fresh clock
            else:
                first = False
                if audio_start is None:
                    audio_start, sent_seconds, first = now, 0.0, True
                chunk = bytearray()
                while sent_seconds < now - audio_start + LEAD_SECONDS and len(chunk) < 10 * OUTPUT_FRAME_BYTES:
                    frame = self.buffer.read_frame()
                    if frame is None:
                        break
                    chunk += frame
                    sent_seconds += FRAME_SECONDS
                if chunk:
                    await self._send(websocket.send_bytes(bytes(chunk)))
                    if first and self.trace is not None:
                        self.trace.mark("first_packet_sent")  # the first audio after silence left for the caller
            if self.session_ended and self._messages.empty():
                ended_at = now if ended_at is None else ended_at
                # Let the last words (a goodbye) play out first, but not for ever.
                if len(self.buffer) == 0 or now - ended_at > DRAIN_SECONDS:
                    raise _closing_for(self.end_reason or "")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FRAME_SECONDS if audio_start is not None else 1.0)

    @staticmethod
    async def _send(coro: Any) -> None:
        try:
            await asyncio.wait_for(coro, SEND_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            raise Closing(CLOSE_POLICY, "client is not reading") from exc


def _closing_for(reason: str) -> Closing:
    if reason.startswith("error:"):  # the session told the guest (an error message) before ending
        return Closing(CLOSE_ERROR, "the assistant hit a problem")
    return Closing(CLOSE_NORMAL, LIMIT_CLOSE_REASONS.get(reason, "conversation ended"))


class WsCall:
    """Drives one accepted WebSocket with its session until either side ends."""

    def __init__(self, websocket: WebSocket, session: VoiceSession, output: WsOutput) -> None:
        self.websocket = websocket
        self.session = session
        self.output = output
        output.trace = session.trace
        self._frames = TokenBucket(MAX_FRAMES_PER_SECOND, FRAME_BURST)
        self._audio = TokenBucket(INPUT_RATE * 2 * AUDIO_RATE_FACTOR, INPUT_RATE * 2 * AUDIO_BURST_SECONDS)
        self.end_reason = "unknown"

    async def run(self) -> None:
        ws = self.websocket
        await self.output.message({"type": "session", "sessionId": self.session.session_id,
                                   "sessionToken": self.session.session_token})
        tasks = [
            asyncio.create_task(self.output.run_writer(ws), name="ws-writer"),
            asyncio.create_task(self._read(), name="ws-reader"),
            asyncio.create_task(self._start_session(), name="ws-session"),
            asyncio.create_task(self._watch_session(), name="ws-session-end"),
        ]
        close_code, close_reason = CLOSE_NORMAL, "bye"
        try:
            done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, Closing):
                    close_code, close_reason = exc.code, exc.reason
                elif isinstance(exc, WebSocketDisconnect):
                    close_code, close_reason = exc.code, "client disconnected"
                elif exc is not None:
                    log.warning("websocket call failed: %r", exc)
                    close_code, close_reason = CLOSE_ERROR, "internal error"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.end_reason = close_reason
            metrics.CALLS_ENDED.labels("websocket", str(close_code)).inc()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.session.end(close_reason), 10)
            self.output.buffer.close()
            if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close(close_code, close_reason)

    async def _start_session(self) -> None:
        try:
            await self.session.start()
        except Exception as exc:
            log.warning("session failed to start: %s", exc)
            await self.output.message({"type": "error", "code": "session_failed",
                                       "message": "the assistant is unavailable"})
            await self.session.end("error:session_failed")  # idempotent: the session may have ended itself

    async def _watch_session(self) -> None:
        self.output.session_over(await self.session.wait_ended())

    async def _read(self) -> None:
        ws = self.websocket
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if not self._frames.take(1):
                raise Closing(CLOSE_POLICY, "too many frames per second")
            data = message.get("bytes")
            if data is not None:
                await self._on_audio(data)
            elif message.get("text") is not None:
                await self._on_text(message["text"])

    async def _on_audio(self, data: bytes) -> None:
        if len(data) > MAX_AUDIO_FRAME_BYTES:
            raise Closing(CLOSE_TOO_BIG, f"audio frames may be at most {MAX_AUDIO_FRAME_BYTES} bytes")
        if len(data) % 2:
            raise Closing(CLOSE_INVALID, "audio must be whole 16-bit samples (even byte count)")
        if not self._audio.take(len(data)):
            raise Closing(CLOSE_POLICY, "audio is arriving faster than real time")
        if data and not self.session.ended:
            await self.session.push_audio(data)

    async def _on_text(self, text: str) -> None:
        if len(text) > MAX_TEXT_FRAME_CHARS:
            raise Closing(CLOSE_TOO_BIG, f"text frames may be at most {MAX_TEXT_FRAME_CHARS} characters")
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise Closing(CLOSE_INVALID, "text frames must be JSON") from exc
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Closing(CLOSE_INVALID, "text frames must be JSON objects with a string 'type'")
        kind = message["type"]
        if kind == "hangup":
            raise Closing(CLOSE_NORMAL, "caller hung up")
        if kind == "ping":
            await self.output.message({"type": "pong", "id": message.get("id")})
        elif kind == "heard":
            seconds = heard_seconds(message.get("latencyMs"))
            if seconds is None:
                await self.output.message({"type": "error", "code": "bad_heard",
                                           "message": BAD_HEARD_MESSAGE})
            else:
                self.session.report_heard(seconds)
        else:
            await self.output.message({"type": "error", "code": "unknown_type",
                                       "message": f"unknown message type {kind[:40]!r}"})
