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
* **No wait ahead of a reply.** After a pause the first voiced frame goes out the moment it is queued,
  not at the next 20 ms tick (that tick cost 0-20 ms, 10 on average, of every reply); the grid shifts
  earlier by that much for the utterance and moves back during the next pause, so RTP timestamps and
  send times never drift apart by more than one frame. Near-silent frames at the head of an utterance
  (a synthesiser's padding) are skipped: played in real time they are pure delay before the voice,
  where the WebSocket path sends them ahead of time. The first voiced frame after a pause stamps
  ``first_packet_sent`` on the call's turn trace.
* **Queued delay is bounded for live sources.** A live source (a caller's own voice echoed, a model
  streaming at real time) that is late at a tick makes the track send 20 ms of silence; when the late
  audio arrives it plays 20 ms later than it would have, and while audio keeps coming that delay never
  drains: each underrun, and each stall of the event loop or of the source, adds more (issue 15: echo
  delay rose from ~100 to ~300 ms in 30 s under load). For such a source everything queued is delay,
  so while it writes at real time (over the last second, 0.7-1.3 s of audio, and at least 7 of its ten
  100 ms blocks 20-180 ms each: a stall and its catch-up burst are the others) the track skips what
  is queued beyond ``TARGET_LAG_FRAMES`` or the largest piece it wrote at once, if larger (a source
  streaming 100 ms pieces at real time has up to 100 ms queued right after each). A producer ahead of real time
  (a synthesiser writing a sentence at once, or streaming faster than it plays) never looks live: what
  it queued is look-ahead and plays in full.
* **Encodes Opus itself** (24 kHz mono, 32 kb/s, voip) and hands aiortc ready ``av.Packet`` objects,
  which aiortc only packetises. That skips aiortc's per-frame resample to 48 kHz stereo, its thread
  pool hop for every frame, and its pure-Python RFC 6464 audio-level loop over every sample (aiortc
  computes the level only for raw frames; the header extension is optional and browsers ignore it for
  playout). Long idle stretches reuse one encoded silence packet instead of encoding zeros.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, CodecContext, Packet

from runtime.media.audio import FRAME_MS, OUTPUT_FRAME_BYTES, OUTPUT_FRAME_SAMPLES, rms_dbfs
from runtime.speech.ports import OUTPUT_RATE
from runtime.turn_trace import TurnTrace

log = logging.getLogger("runtime.media.outbound")

FRAME_SECONDS = FRAME_MS / 1000
DEFAULT_HIGH_WATER_SECONDS = 30.0  # a whole long answer may be queued; beyond that the writer waits
MAX_LATE_SECONDS = 1.0  # a stall shorter than this is caught up by sending the late frames back to back
WARM_SILENCE_FRAMES = 3  # real silence frames encoded after speech before the cached packet is used
OPUS_BITRATE = 32_000
TARGET_LAG_FRAMES = 1  # frames a live source may have queued (20 ms of jitter margin); more is lag to skip
RATE_BLOCK_TICKS = 5  # the source's write rate is judged per 100 ms block ...
LIVE_BLOCKS = 10  # ... and it is live when, over the last second, ...
LIVE_BLOCK_FRAMES = (1, 9)  # ... all but LIVE_OUTLIERS of the blocks held 20-180 ms of audio written ...
LIVE_OUTLIERS = 3  # ... (a stall and its catch-up burst make two or three) ...
LIVE_RATE = (0.7, 1.3)  # ... and the second as a whole 0.7-1.3 s: real time, give or take jitter
LEAD_SILENCE_DBFS = -50.0  # frames quieter than this at the head of an utterance are padding, not voice
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
        self._data = asyncio.Event()  # set on every write: a paced reader waiting at a pause wakes at once
        self._written = 0
        self._largest_write = 0  # since take_largest_write(): how much audio the producer hands over at once
        self._closed = False
        self.flushes = 0

    def __len__(self) -> int:
        return len(self._buf)

    async def write(self, pcm: bytes) -> None:
        while len(self._buf) >= self.high_water_bytes and not self._closed:
            self._space.clear()
            await self._space.wait()
        if not self._closed and pcm:
            self._buf += pcm
            self._written += len(pcm)
            self._largest_write = max(self._largest_write, len(pcm))
            self._data.set()

    async def wait_for_data(self, within: float) -> bool:
        """Wait up to ``within`` seconds for queued audio; True if some is queued."""
        if not self._buf and within > 0:
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data.wait(), within)
        return bool(self._buf)

    @property
    def queued_frames(self) -> int:
        return -(-len(self._buf) // self.frame_bytes)

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

    def skip(self, frames: int) -> int:
        """Discard up to ``frames`` frames from the head (their play-out time has passed); how many went."""
        gone = min(frames, self.queued_frames)
        del self._buf[: frames * self.frame_bytes]
        if len(self._buf) < self.high_water_bytes:
            self._space.set()
        return gone

    @property
    def written_bytes(self) -> int:
        """All audio ever written (flushed or not): the track derives the source's write rate from it."""
        return self._written

    def take_largest_write(self) -> int:
        """The largest single write (bytes) since the last call."""
        largest, self._largest_write = self._largest_write, 0
        return largest

    def peek_frame(self) -> bytes:
        """The head frame without taking it (shorter than a frame at the tail)."""
        return bytes(self._buf[: self.frame_bytes])

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

    def __init__(self, buffer: PlayoutBuffer, *, clock: Callable[[], float] | None = None,
                 trace: TurnTrace | None = None, skip_leading_silence: bool = False) -> None:
        super().__init__()
        self.buffer = buffer
        # On for the assistant's replies (webrtc.py); off for callers that script their own timing (tools/probe.py).
        self.skip_leading_silence = skip_leading_silence
        self._clock = clock or asyncio.get_running_loop().time
        self.trace = trace
        self._encoder = _OpusEncoder()
        self._silence = bytes(OUTPUT_FRAME_BYTES)
        self._silence_packet: bytes | None = None
        self._idle_frames = WARM_SILENCE_FRAMES
        self._start: float | None = None
        self._index = 0
        self._early = 0.0  # how far ahead of the grid this utterance runs (0 at a pause)
        self._ticks = 0
        self._block_start_bytes = 0
        self._blocks: deque[int] = deque(maxlen=LIVE_BLOCKS)  # frames written per block, latest last
        self._chunks: deque[int] = deque(maxlen=LIVE_BLOCKS)  # largest single write per block, in frames
        self.frames_sent = 0
        self.speech_frames = 0
        self.clock_jumps = 0
        self.lag_skipped_frames = 0
        self.lead_skipped_frames = 0
        self.early_starts = 0

    @property
    def paused(self) -> bool:
        """Enough silence sent since the last audio that the next audio starts a new utterance."""
        return self._idle_frames >= WARM_SILENCE_FRAMES

    async def recv(self) -> Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._index += 1
            if self.paused and self._early:
                self._early = 0.0  # back on the grid while the caller hears silence (one frame up to 20 ms late)
            due = self._start + self._index * FRAME_SECONDS - self._early
            if now - due > MAX_LATE_SECONDS:
                # The loop stalled for long: re-anchor to the wall clock and drop the audio that should
                # have played meanwhile, so the stall does not become permanent added latency.
                skipped = round((now - due) / FRAME_SECONDS)
                self._index += skipped
                self.buffer.skip(skipped)
                self.clock_jumps += 1
            elif due > now:
                if self.paused and len(self.buffer) == 0:
                    # At a pause: send the reply's first frame as soon as it is queued, not at the tick.
                    if await self.buffer.wait_for_data(due - now):
                        early = due - self._clock()
                        if early > 0:
                            self._early += early
                            self.early_starts += 1
                    else:
                        await asyncio.sleep(max(0.0, due - self._clock()))
                else:
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
        pcm = self._take_frame()
        if pcm is not None:
            if self.paused and self.trace is not None:
                self.trace.mark("first_packet_sent")  # the first voiced frame after silence leaves now
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

    def _take_frame(self) -> bytes | None:
        """The frame to send this tick, after skipping leading padding and queued lag; None when idle."""
        buffer = self.buffer
        if self.paused and self.skip_leading_silence:
            # Padding ahead of the voice: skip it while more audio is queued behind it (a short tail that is
            # all there is may be the voice's own quiet onset still being written).
            while buffer.queued_frames > 1 and rms_dbfs(buffer.peek_frame()) < LEAD_SILENCE_DBFS:
                self.lead_skipped_frames += buffer.skip(1)
        self._ticks += 1
        if self._ticks % RATE_BLOCK_TICKS == 0:
            written = buffer.written_bytes
            self._blocks.append((written - self._block_start_bytes) // buffer.frame_bytes)
            self._chunks.append(-(-buffer.take_largest_write() // buffer.frame_bytes))
            self._block_start_bytes = written
        pcm = buffer.read_frame()
        if pcm is not None and self.live:
            # A producer handing over c frames at a time legitimately has up to c queued just after.
            excess = buffer.queued_frames - max(TARGET_LAG_FRAMES, max(self._chunks, default=0))
            if excess > 0:
                self.lag_skipped_frames += buffer.skip(excess)
        return pcm

    def _block_frames_so_far(self) -> int:
        return (self.buffer.written_bytes - self._block_start_bytes) // self.buffer.frame_bytes

    @property
    def live(self) -> bool:
        """The source has written at real time for the last second: what it has queued is delay, not look-ahead."""
        low, high = LIVE_BLOCK_FRAMES
        if len(self._blocks) < LIVE_BLOCKS or self._block_frames_so_far() > high:
            return False  # too little history, or a burst is arriving now (it joins the blocks at the block's end)
        steady = [low <= frames <= high for frames in self._blocks]
        real_time = LIVE_BLOCKS * RATE_BLOCK_TICKS
        # The last two blocks must be steady: a source that has stopped writing is not live, and what it left
        # queued (a synthesiser's look-ahead, once its rate has fallen back into range) is not lag.
        return (sum(steady) >= LIVE_BLOCKS - LIVE_OUTLIERS and steady[-1] and steady[-2]
                and LIVE_RATE[0] * real_time <= sum(self._blocks) <= LIVE_RATE[1] * real_time)

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
