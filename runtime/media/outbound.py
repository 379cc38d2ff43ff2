"""Assistant audio towards the caller: a playout buffer and a paced, self-encoding WebRTC track.

``PlayoutBuffer`` holds 24 kHz mono PCM the session produced (faster than real time); transports take
one 20 ms frame per tick. Barge-in empties it at once. Writers wait when it holds more than
``high_water`` so a runaway producer cannot grow memory without bound.

``PacedOpusTrack`` is what aiortc's sender reads. Three choices, each measured against aiortc's stock
path (bench/rtc_sessions.py):

* **Paced on the monotonic event-loop clock**, one 20 ms frame per tick; aiortc's sender sends as soon
  as ``recv()`` returns and does not pace (aiortc#483). After a short event-loop stall the late frames
  go out back to back (the caller's jitter buffer absorbs that); after a long one (> 1 s) the clock is
  re-anchored and the audio whose time has passed is dropped, so a stall never becomes permanent delay.
  Frames are never longer than 20 ms: aiortc stamps every Opus packet of a longer frame with the first
  packet's RTP timestamp.
* **Silence when idle** keeps RTP timestamps continuous; a paused track would create timestamp jumps.
* **Encodes Opus itself** (24 kHz mono, 32 kb/s, voip) and hands aiortc ready ``av.Packet`` objects,
  which aiortc only packetises. That skips aiortc's per-frame resample to 48 kHz stereo, its thread
  pool hop for every frame, and its pure-Python RFC 6464 audio-level loop over every sample (aiortc
  computes the level only for raw frames; the header extension is optional and browsers ignore it for
  playout). Long idle stretches reuse one encoded silence packet instead of encoding zeros.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, CodecContext, Packet

from runtime.media.audio import FRAME_MS, OUTPUT_FRAME_BYTES, OUTPUT_FRAME_SAMPLES
from runtime.speech.ports import OUTPUT_RATE

log = logging.getLogger("runtime.media.outbound")

FRAME_SECONDS = FRAME_MS / 1000
DEFAULT_HIGH_WATER_SECONDS = 30.0  # a whole long answer may be queued; beyond that the writer waits
MAX_LATE_SECONDS = 1.0  # a stall shorter than this is caught up by sending the late frames back to back
WARM_SILENCE_FRAMES = 3  # real silence frames encoded after speech before the cached packet is used
OPUS_BITRATE = 32_000
TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)


class PlayoutBuffer:
    """FIFO of s16le mono PCM with back-pressure and instant flush."""

    def __init__(self, frame_bytes: int = OUTPUT_FRAME_BYTES,
                 high_water_bytes: int = int(DEFAULT_HIGH_WATER_SECONDS * OUTPUT_RATE * 2)) -> None:
        self.frame_bytes = frame_bytes
        self.high_water_bytes = high_water_bytes
        self._buf = bytearray()
        self._space = asyncio.Event()
        self._space.set()
        self._closed = False
        self.flushes = 0

    def __len__(self) -> int:
        return len(self._buf)

    async def write(self, pcm: bytes) -> None:
        while len(self._buf) >= self.high_water_bytes and not self._closed:
            self._space.clear()
            await self._space.wait()
        if not self._closed:
            self._buf += pcm

    def read_frame(self) -> bytes | None:
        """The next frame (padded with silence if the tail is short), or None when nothing is queued."""
        if not self._buf:
            return None
        chunk = bytes(self._buf[: self.frame_bytes])
        del self._buf[: self.frame_bytes]
        if len(chunk) < self.frame_bytes:
            chunk += bytes(self.frame_bytes - len(chunk))
        if len(self._buf) < self.high_water_bytes:
            self._space.set()
        return chunk

    def skip(self, frames: int) -> None:
        """Discard up to ``frames`` frames from the head (their play-out time has passed)."""
        del self._buf[: frames * self.frame_bytes]
        if len(self._buf) < self.high_water_bytes:
            self._space.set()

    def flush(self) -> None:
        if self._buf:
            self.flushes += 1
        self._buf.clear()
        self._space.set()

    def close(self) -> None:
        self._closed = True
        self._buf.clear()
        self._space.set()


class _OpusEncoder:
    """libopus through PyAV at the session's native 24 kHz mono (Opus takes 24 kHz input natively)."""

    def __init__(self) -> None:
        self.codec = CodecContext.create("libopus", "w")
        self.codec.bit_rate = OPUS_BITRATE
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = OUTPUT_RATE
        self.codec.time_base = TIME_BASE
        self.codec.options = {"application": "voip"}
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        frame = AudioFrame(format="s16", layout="mono", samples=OUTPUT_FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = OUTPUT_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += OUTPUT_FRAME_SAMPLES
        return b"".join(bytes(p) for p in self.codec.encode(frame))


class PacedOpusTrack(MediaStreamTrack):
    """Outgoing audio track: 20 ms Opus packets on a monotonic clock, silence when idle."""

    kind = "audio"

    def __init__(self, buffer: PlayoutBuffer, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.buffer = buffer
        self._clock = clock or asyncio.get_running_loop().time
        self._encoder = _OpusEncoder()
        self._silence = bytes(OUTPUT_FRAME_BYTES)
        self._silence_packet: bytes | None = None
        self._idle_frames = WARM_SILENCE_FRAMES
        self._start: float | None = None
        self._index = 0
        self.frames_sent = 0
        self.speech_frames = 0
        self.clock_jumps = 0

    async def recv(self) -> Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._index += 1
            due = self._start + self._index * FRAME_SECONDS
            if now - due > MAX_LATE_SECONDS:
                # The loop stalled for long: re-anchor to the wall clock and drop the audio that should
                # have played meanwhile, so the stall does not become permanent added latency.
                skipped = round((now - due) / FRAME_SECONDS)
                self._index += skipped
                self.buffer.skip(skipped)
                self.clock_jumps += 1
            elif due > now:
                await asyncio.sleep(due - now)
        if self.readyState != "live":
            raise MediaStreamError
        payload = self._next_payload()
        packet = Packet(payload)
        packet.pts = self._index * OUTPUT_FRAME_SAMPLES
        packet.time_base = TIME_BASE
        self.frames_sent += 1
        return packet

    def _next_payload(self) -> bytes:
        pcm = self.buffer.read_frame()
        if pcm is not None:
            self._idle_frames = 0
            self.speech_frames += 1
            return self._encoder.encode(pcm)
        if self._idle_frames < WARM_SILENCE_FRAMES or self._silence_packet is None:
            # Keep feeding the encoder real silence right after speech so its look-ahead drains and
            # the next utterance starts clean; then remember what silence encodes to.
            self._idle_frames += 1
            payload = self._encoder.encode(self._silence)
            if self._idle_frames >= WARM_SILENCE_FRAMES and payload:
                self._silence_packet = payload
            return payload
        return self._silence_packet

    def stop(self) -> None:
        super().stop()
        self.buffer.close()


class DataChannelSender:
    """JSON messages over the call's data channel; queued (bounded) until the channel opens."""

    MAX_PENDING = 200

    def __init__(self) -> None:
        self._channel: Any = None
        self._pending: list[str] = []
        self.dropped = 0

    def attach(self, channel: Any) -> None:
        self._channel = channel
        if channel.readyState == "open":
            self._drain()
        else:
            channel.on("open", self._drain)

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for text in pending:
            self._send(text)

    def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), default=str)
        if self._channel is None or self._channel.readyState == "connecting":
            if len(self._pending) >= self.MAX_PENDING:
                self._pending.pop(0)
                self.dropped += 1
            self._pending.append(text)
            return
        self._send(text)

    def _send(self, text: str) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            try:
                self._channel.send(text)
            except Exception as exc:  # channel closing under us: messages are best effort
                log.debug("data channel send failed: %s", exc)


class WebRtcOutput:
    """``SessionOutput`` of a WebRTC call: audio to the paced track, messages to the data channel."""

    def __init__(self, buffer: PlayoutBuffer, channel: DataChannelSender,
                 on_message: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.buffer = buffer
        self.channel = channel
        self._on_message = on_message

    async def audio(self, pcm: bytes) -> None:
        await self.buffer.write(pcm)

    def flush_audio(self) -> None:
        self.buffer.flush()

    async def message(self, message: dict[str, Any]) -> None:
        self.channel.send(message)
        if self._on_message is not None:
            self._on_message(message)
