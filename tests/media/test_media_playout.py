"""The outgoing track's delay stays bounded: underrun silence never becomes permanent lag, look-ahead is kept.

Driven on a simulated clock, tick by tick, so the figures are exact and the tests take milliseconds. A
live source (an echoed voice) delivers one frame per 20 ms with jitter: now and then a frame arrives just
after its tick, the track sends 20 ms of silence, and two frames are queued at the next one. Without the
lag bound each such underrun adds 20 ms of delay for as long as the audio continues.
"""

from __future__ import annotations

import asyncio

import numpy as np

from runtime.media.audio import OUTPUT_FRAME_BYTES
from runtime.media.outbound import FRAME_SECONDS, TARGET_LAG_FRAMES, PacedOpusTrack, PlayoutBuffer
from runtime.turn_trace import TurnTrace


def tone_frame(index: int) -> bytes:
    t = (np.arange(480) + index * 480) / 24_000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


class SimulatedCall:
    """A track on a clock that moves only when a tick is taken."""

    def __init__(self, trace: TurnTrace | None = None) -> None:
        self.now = 0.0
        self.buffer = PlayoutBuffer()
        self.track = PacedOpusTrack(self.buffer, clock=lambda: self.now, trace=trace)
        self.ticks = 0

    async def tick(self) -> None:
        self.now = self.ticks * FRAME_SECONDS
        await self.track.recv()
        self.ticks += 1


async def test_underruns_in_a_continuous_stream_do_not_accumulate_delay() -> None:
    call = SimulatedCall()
    await call.tick()
    written = 0
    lag_samples: list[int] = []
    # Every two seconds the source stalls for 20-120 ms, then delivers what it owes at once (a late caller
    # frame, a busy event loop); in between, single frames come a tick late now and then. Each stall and
    # each late frame makes the track send silence it has nothing to play in.
    stalled = {start + i for n in range(14) for start in [100 * (n + 1)] for i in range(1 + n % 6)}
    stalled |= {100 * n + 37 for n in range(15)} | {100 * n + 71 for n in range(15)}
    held = 0
    for tick in range(1, 1500):  # 30 s of continuous audio
        held += 1
        if tick not in stalled:
            for _ in range(held):
                await call.buffer.write(tone_frame(written))
                written += 1
            held = 0
        await call.tick()
        lag_samples.append(call.buffer.queued_frames)
    first, last = lag_samples[:90], lag_samples[-90:]  # the first and the last stretch between two stalls
    # The source writes one frame at a time, so one more than the target may be queued just after a write.
    assert max(last) <= TARGET_LAG_FRAMES + 1, f"queued delay at the end: {max(last)} frames"
    assert max(last) - max(first) <= 1, "the delay at the end of 30 s is within 20 ms of the start"
    assert max(lag_samples) <= 8, "a stall's delay is gone within about a second"
    underruns = call.track.frames_sent - call.track.speech_frames - 1  # the first tick had nothing yet
    assert underruns >= 20
    assert call.track.lag_skipped_frames <= underruns, "never more audio skipped than silence was inserted"
    assert call.track.speech_frames + call.track.lag_skipped_frames + call.buffer.queued_frames == written
    call.track.stop()


async def test_a_producer_ahead_of_real_time_loses_nothing_after_an_underrun() -> None:
    """A synthesiser's sentence arriving after a short gap is look-ahead: all of it plays.

    Even after two seconds in which the same output carried audio at real time (as a model streaming
    live would), the burst shows the producer is ahead of real time.
    """
    call = SimulatedCall()
    await call.tick()
    for index in range(100):
        await call.buffer.write(tone_frame(index))
        await call.tick()
    assert call.track.live
    for _ in range(4):  # the next sentence is 80 ms late: four silent ticks inside the reply
        await call.tick()
    sentence = 150
    await call.buffer.write(b"".join(tone_frame(i) for i in range(sentence)))
    while len(call.buffer):
        await call.tick()
    assert call.track.lag_skipped_frames == 0
    assert call.track.speech_frames == 100 + sentence
    call.track.stop()


async def test_a_pause_is_not_lag() -> None:
    """Speech with pauses: each utterance resumes at real time; nothing of it is skipped."""
    call = SimulatedCall()
    await call.tick()
    for _utterance in range(5):
        for index in range(80):
            await call.buffer.write(tone_frame(index))
            await call.tick()
        for _ in range(30):
            await call.tick()
    assert call.track.lag_skipped_frames == 0
    assert call.track.speech_frames == 5 * 80
    call.track.stop()


async def test_padding_ahead_of_the_voice_is_skipped_and_the_first_voiced_frame_is_stamped() -> None:
    trace = TurnTrace("call", "webrtc", "echo")
    call = SimulatedCall(trace)
    call.track.skip_leading_silence = True
    await call.tick()
    await call.buffer.write(bytes(OUTPUT_FRAME_BYTES * 10) + b"".join(tone_frame(i) for i in range(5)))
    await call.tick()
    assert call.track.lead_skipped_frames == 10, "200 ms of synthesiser padding would be pure delay"
    assert call.track.speech_frames == 1
    assert [stage for stage, _ in trace.marks] == ["first_packet_sent"]
    while len(call.buffer):
        await call.tick()
    assert [stage for stage, _ in trace.marks] == ["first_packet_sent"], "one stamp per utterance"
    call.track.stop()


async def test_the_first_frame_after_a_pause_does_not_wait_for_the_tick() -> None:
    now = [0.0]
    buffer = PlayoutBuffer()
    track = PacedOpusTrack(buffer, clock=lambda: now[0])
    await track.recv()
    now[0] = 0.02 - 30.0  # the clock says the next tick is 30 s away; a track waiting for it would hang
    receiving = asyncio.create_task(track.recv())
    await asyncio.sleep(0.01)
    assert not receiving.done(), "with nothing queued the track waits"
    await buffer.write(tone_frame(0))
    packet = await asyncio.wait_for(receiving, 5)
    assert packet.pts == 480, "the frame keeps its slot on the RTP timeline"
    assert track.early_starts == 1
    assert track.speech_frames == 1
    track.stop()


async def test_a_source_streaming_pieces_at_real_time_keeps_every_piece() -> None:
    """100 ms written every 100 ms: live, and up to 100 ms queued after each write is not lag."""
    call = SimulatedCall()
    await call.tick()
    for piece in range(100):
        await call.buffer.write(b"".join(tone_frame(piece * 5 + i) for i in range(5)))
        for _ in range(5):
            await call.tick()
    assert call.track.live
    assert call.track.lag_skipped_frames == 0
    assert call.track.speech_frames == 500
    call.track.stop()


async def test_a_producer_streaming_faster_than_real_time_keeps_everything() -> None:
    """A model streaming 1.5x real time in small pieces (as the Nova Sonic service does) is look-ahead."""
    call = SimulatedCall()
    await call.tick()
    written = 0
    for tick in range(300):
        pieces = 2 if tick % 2 == 0 else 1  # three frames every two ticks
        for _ in range(pieces):
            await call.buffer.write(tone_frame(written))
            written += 1
        await call.tick()
        assert not call.track.live
    while len(call.buffer):
        await call.tick()
    assert call.track.lag_skipped_frames == 0
    assert call.track.speech_frames == written
    call.track.stop()
