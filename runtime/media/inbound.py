"""Caller audio from a WebRTC track into the session: low-delay, bounded, recovers after loss.

Two changes to aiortc's receive path, applied per receiver by ``tune_audio_receiver``:

1. **Jitter buffer.** aiortc's audio ``JitterBuffer(capacity=16, prefetch=4)`` releases a frame only
   once four newer packets exist (a fixed 80 ms), and one lost packet stalls it until the 16-slot
   window overflows, after which the delay stays ~280 ms for the rest of the call (aiortc#543,
   https://github.com/aiortc/aiortc/issues/543). For a voice agent that delay sits directly in the response time.
   Each Opus RTP packet is a whole frame, so ``LowDelayAudioJitterBuffer`` releases every packet the
   moment it arrives in order, skips over gaps instead of waiting for them, and drops packets that
   arrive after a later one was released (late or duplicated). Speech recognition loses at most the
   missing 20 ms; it never gains latency. aiortc has no hook for this, so the private attribute is
   replaced before the receiver starts (``receive()`` runs only after DTLS connects).
2. **Decoding on the event loop.** aiortc decodes in one thread per receiver and hands every 20 ms
   frame back with ``run_coroutine_threadsafe``: a cross-thread wake-up that costs more than the ~50 µs
   Opus decode itself. ``_InlineDecodeQueue`` stands in for the thread's input queue, decodes at once
   and puts frames straight on the track's queue. The thread aiortc still starts just waits for the
   stop signal, so the end-of-track sentinel still flows exactly as before.

The decoded-frame queue of aiortc's track is unbounded; ``InboundAudio`` drains any backlog above a
few frames (a stalled consumer would otherwise turn into ever-growing latency).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack, RTCRtpReceiver
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add
from av import AudioFrame

from runtime.media.audio import InboundResampler

log = logging.getLogger("runtime.media.inbound")

# The private aiortc attributes this module replaces or reads (aiortc 1.16; pinned in pyproject.toml).
# Python mangles `self.__jitter_buffer` inside RTCRtpReceiver to `_RTCRtpReceiver__jitter_buffer`.
AIORTC_INTERNALS: dict[type, tuple[str, ...]] = {
    RTCRtpReceiver: ("_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__decoder_queue"),
    RemoteStreamTrack: ("_queue",),
}


def check_aiortc_internals(internals: dict[type, tuple[str, ...]] = AIORTC_INTERNALS) -> None:
    """Fail at import (so at start-up) if aiortc no longer sets the attributes ``tune_audio_receiver`` swaps.

    Assigning a renamed private attribute would not fail: it would silently add an unused one, and calls
    would go back to aiortc's high-delay jitter buffer and decoder thread with nothing in the logs. Each
    ``__init__`` is checked for storing the names (its code object's ``co_names``), without building one.
    """
    for cls, names in internals.items():
        stored = set(vars(cls)["__init__"].__code__.co_names)
        missing = [name for name in names if name not in stored]
        if missing:
            raise RuntimeError(f"aiortc's {cls.__name__} no longer sets {', '.join(missing)}: the low-delay "
                               "receive path (runtime/media/inbound.py) must be updated for this aiortc version")


check_aiortc_internals()

MAX_MISORDER = 100  # a jump back further than this is a restarted stream, not a late packet
MAX_BACKLOG_FRAMES = 5  # 100 ms of decoded audio waiting for the session; older frames are dropped


class LowDelayAudioJitterBuffer(JitterBuffer):
    """Release each audio packet on arrival; skip gaps; never hold a frame waiting for a lost one."""

    def __init__(self) -> None:
        super().__init__(capacity=16, prefetch=0)
        self._next: int | None = None
        self.lost = 0
        self.late = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is not None:
            ahead = uint16_add(seq, -self._next)
            if ahead >= 0x8000:  # behind what we already released
                if 0x10000 - ahead < MAX_MISORDER:
                    self.late += 1
                    return False, None
                ahead = 0  # sender restarted its sequence: resynchronise
            self.lost += ahead
        self._next = uint16_add(seq, 1)
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


class _InlineDecodeQueue:
    """Duck-types the ``queue.Queue`` aiortc's decoder thread reads, but decodes in ``put``.

    ``put`` is called from the receiver on the event loop thread, so frames go to the track's asyncio
    queue without any thread hop. ``get`` (called only by aiortc's decoder thread) blocks until stop.
    """

    def __init__(self, output: asyncio.Queue[Any], *, layout: str = "mono") -> None:
        self._output = output
        self._layout = layout
        self._stopped = threading.Event()
        self._decoder: Any = None
        self._codec_name: str | None = None
        self.errors = 0

    def put(self, task: Any) -> None:
        if task is None:
            self._stopped.set()  # aiortc's thread wakes, forwards the end-of-track sentinel, exits
            return
        codec, encoded_frame = task
        if codec.name != self._codec_name:
            self._decoder = get_decoder(codec)
            if isinstance(self._decoder, OpusDecoder):
                # libopus downmixes for free; aiortc's decoder always asks for stereo, which we would
                # only average back to mono. (It always decodes at 48 kHz whatever rate is asked.)
                self._decoder.codec.layout = self._layout
            self._codec_name = codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except Exception as exc:  # av.FFmpegError: keep decoder state, skip this frame (as aiortc does)
            self.errors += 1
            log.debug("audio decode failed: %s", exc)
            return
        for frame in frames:
            self._output.put_nowait(frame)

    def get(self) -> None:
        self._stopped.wait()
        return None


def tune_audio_receiver(receiver: RTCRtpReceiver, *, layout: str = "mono") -> LowDelayAudioJitterBuffer:
    """Install the low-delay jitter buffer and inline decoding on a not-yet-started audio receiver.

    ``layout`` is what Opus decodes to: mono for the session (speech recognition wants mono), stereo
    to hear exactly what a browser would.
    """
    buffer = LowDelayAudioJitterBuffer()
    receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]
    track = cast(RemoteStreamTrack, receiver.track)  # a receiver's track is always its remote track
    receiver._RTCRtpReceiver__decoder_queue = _InlineDecodeQueue(  # type: ignore[attr-defined]
        track._queue, layout=layout)
    return buffer


class InboundAudio:
    """Reads a remote audio track and feeds 16 kHz mono PCM to ``sink`` until the track ends."""

    def __init__(self, track: MediaStreamTrack, sink: Callable[[bytes], Awaitable[None]],
                 *, max_backlog_frames: int = MAX_BACKLOG_FRAMES) -> None:
        self.track = track
        self.sink = sink
        self.max_backlog_frames = max_backlog_frames
        self.dropped_frames = 0
        self.frames = 0
        self._resampler = InboundResampler()

    async def run(self) -> None:
        """Return when the track ends (hang-up, RTCP BYE, peer connection closed)."""
        queue: asyncio.Queue[Any] | None = getattr(self.track, "_queue", None)
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            if queue is not None and queue.qsize() > self.max_backlog_frames and not self._drain(queue):
                return
            self.frames += 1
            assert isinstance(frame, AudioFrame)  # an audio track's recv() yields decoded frames
            pcm = self._resampler.process(frame)
            if pcm:
                await self.sink(pcm)

    def _drain(self, queue: asyncio.Queue[Any]) -> bool:
        """Drop the oldest decoded frames beyond the backlog bound; False if the track ended meanwhile."""
        while queue.qsize() > self.max_backlog_frames:
            item = queue.get_nowait()
            if item is None:
                self.track.stop()
                return False
            self.dropped_frames += 1
        return True
