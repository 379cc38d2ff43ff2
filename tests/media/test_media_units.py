"""Deterministic behaviour of the media pieces a caller would notice: delay after loss, barge-in, levels."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

import numpy as np
from aiortc import rtp
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket
from av import AudioFrame, CodecContext

from runtime.media.audio import InboundResampler, audio_level_dbov, make_output_frame
from runtime.media.inbound import LowDelayAudioJitterBuffer
from runtime.media.outbound import PacedOpusTrack, PlayoutBuffer
from runtime.media.turn import turn_credentials


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=(seq * 960) & 0xFFFFFFFF)
    p._data = bytes([seq & 0xFF])  # type: ignore[attr-defined]
    return p


def released(buffer: JitterBuffer, seqs: list[int]) -> list[int]:
    out = []
    for seq in seqs:
        _, frame = buffer.add(packet(seq))
        if frame is not None:
            out.append(frame.timestamp // 960)
    return out


def test_low_delay_buffer_releases_at_once_and_skips_losses() -> None:
    stream = [s for s in range(100) if s not in (10, 40, 41)]  # three lost packets
    ours = released(LowDelayAudioJitterBuffer(), stream)
    assert ours == stream, "every packet that arrived is released on arrival, none held back"
    stock = released(JitterBuffer(capacity=16, prefetch=4), stream)
    # aiortc's buffer, for contrast: it holds frames back and discards good ones after a loss
    assert len(stock) < len(ours) - 5


def test_low_delay_buffer_drops_late_duplicates_and_survives_wraparound() -> None:
    buffer = LowDelayAudioJitterBuffer()
    assert released(buffer, [65533, 65534, 65535, 0, 1]) == [65533, 65534, 65535, 0, 1]
    assert released(buffer, [0, 65535]) == [], "late and duplicated packets are dropped"
    assert released(buffer, [3, 2, 4]) == [3, 4]
    assert buffer.lost == 1
    assert buffer.late == 3
    restarted = released(buffer, [30000, 30001])
    assert restarted == [30000, 30001], "a sender restart resynchronises instead of stalling"


async def test_barge_in_flush_silences_the_track_at_once() -> None:
    buffer = PlayoutBuffer()
    clock = [0.0]
    track = PacedOpusTrack(buffer, clock=lambda: clock[0])
    t = np.arange(24_000 * 5) / 24_000
    await buffer.write((np.sin(2 * np.pi * 300 * t) * 12000).astype("<i2").tobytes())
    decoder = CodecContext.create("libopus", "r")

    async def next_level() -> float:
        packet = await track.recv()
        clock[0] += 0.02
        samples = np.concatenate([f.to_ndarray().ravel() for f in decoder.decode(packet)]).astype(float)
        return float(np.sqrt(np.mean(samples**2)))

    speech = [await next_level() for _ in range(10)]
    buffer.flush()
    assert len(buffer) == 0
    after = [await next_level() for _ in range(10)]
    assert min(speech[3:]) > 2000, "speech plays before the barge-in"
    assert max(after[3:]) < 50, "after the flush the caller hears silence (codec look-ahead aside)"
    assert track.speech_frames == 10
    track.stop()


async def test_writer_waits_when_the_buffer_is_full_and_resumes_on_flush() -> None:
    buffer = PlayoutBuffer(high_water_bytes=960 * 10)
    await buffer.write(bytes(960 * 10))
    blocked = asyncio.create_task(buffer.write(bytes(960)))
    await asyncio.sleep(0.01)
    assert not blocked.done(), "a producer far ahead of play-out is made to wait"
    buffer.flush()
    await asyncio.wait_for(blocked, 1)
    assert len(buffer) == 960


def _aiortc_audio_level() -> Callable[[AudioFrame], int]:
    """aiortc's own function, from a fresh copy of its module.

    ``runtime.media.patches`` replaces ``rtp.compute_audio_level_dbov`` with ours process-wide once any
    earlier test has placed a call, so comparing against the module attribute would compare ours with itself.
    """
    spec = importlib.util.spec_from_file_location("aiortc._rtp_unpatched", rtp.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original: Callable[[AudioFrame], int] = module.compute_audio_level_dbov
    assert original is not audio_level_dbov
    return original


def test_vectorised_audio_level_matches_aiortc() -> None:
    reference = _aiortc_audio_level()
    rng = np.random.default_rng(1)
    for amplitude in (0, 1, 30, 1000, 20000, 32767):
        pcm = (rng.uniform(-1, 1, 480) * amplitude).astype("<i2").tobytes()
        frame = make_output_frame(pcm, 0)
        assert audio_level_dbov(frame) == reference(frame)


def test_stateful_resampling_keeps_a_tone_continuous() -> None:
    t = np.arange(48_000) / 48_000
    tone = (np.sin(2 * np.pi * 1000 * t) * 10000).astype("<i2")
    resampler = InboundResampler()
    out = b"".join(resampler.process_pcm(tone[i:i + 960], 48_000) for i in range(0, tone.size, 960))
    chunked = np.frombuffer(out, "<i2").astype(float)
    held_ms = (16_000 - chunked.size) / 16
    assert 0 <= held_ms <= 8, f"the resampler holds back {held_ms} ms of caller audio"
    chunked = chunked[100:]
    # no clicks at 20 ms frame edges: the sample-to-sample step never exceeds the tone's own slope
    assert np.abs(np.diff(chunked)).max() < 10000 * 2 * np.pi * 1000 / 16_000 * 1.05


def test_turn_credentials_follow_the_coturn_rest_scheme() -> None:
    username, credential = turn_credentials("secret", "abc", 60, now=1000)
    assert username == "1060:abc"
    assert credential == "K39eIgy5y2nhwnCt9Q3sD9rrrlQ="


def test_a_renamed_aiortc_internal_stops_the_runtime_at_start_up() -> None:
    """The low-delay receive path swaps two private attributes of aiortc; a rename must fail loudly."""
    import pytest

    from runtime.media.inbound import AIORTC_INTERNALS, check_aiortc_internals

    check_aiortc_internals()  # the pinned aiortc: the names are all there

    class RenamedReceiver:
        def __init__(self) -> None:
            self._RTCRtpReceiver__jitter = None  # what a future aiortc might call it

    with pytest.raises(RuntimeError, match="_RTCRtpReceiver__jitter_buffer"):
        check_aiortc_internals({**AIORTC_INTERNALS, RenamedReceiver: AIORTC_INTERNALS[next(iter(AIORTC_INTERNALS))]})
