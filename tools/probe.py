"""A scriptable WebRTC caller (aiortc) that speaks PCM and records what the assistant sends back.

Used by ``bin/smoke`` against a deployment, by tests/media and by bench/rtc_sessions.py. It behaves
like the web app: creates a data channel before the offer, waits for ICE gathering to complete
(non-trickle), and plays 20 ms frames on a wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import is_rtcp

from runtime.media.audio import frame_to_mono_s16
from runtime.media.inbound import tune_audio_receiver
from runtime.media.outbound import PacedOpusTrack, PlayoutBuffer

SILENCE_DBFS = -50.0


class ReceivedAudio:
    """What came back: frame timing, loudness per frame, and (optionally) the PCM itself."""

    def __init__(self, keep_pcm_seconds: float = 30.0) -> None:
        self.keep_pcm_seconds = keep_pcm_seconds
        self.frames = 0
        self.samples = 0
        self.rates: set[int] = set()
        self.arrivals: list[float] = []
        self.levels: list[float] = []
        self.pcm = bytearray()
        self.rate = 0

    def add(self, mono: np.ndarray, rate: int, arrival: float) -> None:
        self.frames += 1
        self.samples += mono.size
        self.rates.add(rate)
        self.rate = rate
        self.arrivals.append(arrival)
        energy = float(np.mean(mono.astype(np.float64) ** 2)) if mono.size else 0.0
        self.levels.append(10 * np.log10(energy / 32768.0**2) if energy > 0 else -120.0)
        if len(self.pcm) < self.keep_pcm_seconds * rate * 2:
            self.pcm += mono.astype("<i2").tobytes()

    @property
    def loud_frames(self) -> int:
        return sum(1 for level in self.levels if level > SILENCE_DBFS)

    def dominant_frequency(self) -> float:
        """Strongest frequency (Hz) over the loud part of the recorded PCM."""
        samples = np.frombuffer(bytes(self.pcm), dtype="<i2").astype(np.float64)
        if samples.size < 1024 or not self.rate:
            return 0.0
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
        spectrum[0] = 0
        return float(np.argmax(spectrum) * self.rate / samples.size)

    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


class CallProbe:
    """One caller. ``offer()`` -> post it -> ``accept(answer)`` -> ``speak(pcm24k)`` -> read results."""

    def __init__(self, *, ice_servers: list[dict[str, Any]] | None = None, relay_only: bool = False,
                 track: MediaStreamTrack | None = None, keep_pcm_seconds: float = 30.0,
                 low_delay_receive: bool = True, decode_layout: str = "stereo") -> None:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in ice_servers or []]
        config = RTCConfiguration(iceServers=servers)
        if relay_only:
            config.iceTransportPolicy = RTCIceTransportPolicy.RELAY
        self.pc = RTCPeerConnection(config)
        self.buffer = PlayoutBuffer()
        self.track = track
        self.received = ReceivedAudio(keep_pcm_seconds)
        self.messages: list[dict[str, Any]] = []
        self.low_delay_receive = low_delay_receive
        self.decode_layout = decode_layout
        self.loss = 0.0
        self.sent_rtp = 0
        self.dropped_rtp = 0
        self._rng = np.random.default_rng(7)
        self._connected = asyncio.Event()
        self._message_event = asyncio.Event()
        self._frame_event = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.on_frame: Callable[[np.ndarray, int, float], None] | None = None
        self.channel = self.pc.createDataChannel("control")
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def offer(self) -> str:
        self.track = self.track or PacedOpusTrack(self.buffer)
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def speak(self, pcm24k: bytes) -> None:
        await self.buffer.write(pcm24k)

    async def wait_connected(self, within: float = 15.0) -> None:
        await asyncio.wait_for(self._connected.wait(), within)
        self._install_loss()

    async def wait_for_message(self, predicate: Callable[[dict[str, Any]], bool], within: float = 10.0
                               ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching data-channel message; got {self.messages[-5:]}")
            self._message_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._message_event.wait(), remaining)

    async def wait_for_sound(self, loud_frames: int, within: float = 10.0) -> bool:
        """Wait until ``loud_frames`` non-silent frames have arrived; False if they did not in time."""
        deadline = time.monotonic() + within
        while self.received.loud_frames < loud_frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._frame_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frame_event.wait(), remaining)
        return True

    def send(self, message: dict[str, Any]) -> None:
        if self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()

    # --- internals --------------------------------------------------------------------------------

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()

    def _on_message(self, raw: Any) -> None:
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                self.messages.append(json.loads(raw))
                self._message_event.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        if self.low_delay_receive:
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    tune_audio_receiver(transceiver.receiver, layout=self.decode_layout)
        self._tasks.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            mono, rate = frame_to_mono_s16(frame)  # type: ignore[arg-type]
            now = loop.time()
            self.received.add(mono, rate, now)
            self._frame_event.set()
            if self.on_frame is not None:
                self.on_frame(mono, rate, now)

    def _install_loss(self) -> None:
        """Drop a share of outgoing RTP (never RTCP or data) to simulate a lossy uplink."""
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.sender.transport
            if getattr(dtls, "_probe_lossy", False):
                continue
            original = dtls._send_rtp

            async def lossy(data: bytes, _original: Any = original) -> None:
                if not is_rtcp(data):
                    self.sent_rtp += 1
                    if self.loss and self._rng.random() < self.loss:
                        self.dropped_rtp += 1
                        return
                await _original(data)

            dtls._send_rtp = lossy
            dtls._probe_lossy = True
