"""The caller-side latency bench (bench/caller_latency.py) measures what it says, on synthetic signals.

Its figure is the one every other latency figure is judged by, so the two measuring pieces are pinned
here: where a clip's voiced speech ends (a quiet tail is not speech; a soft final consonant is), and when
the caller would first hear the assistant (a played-out silence ahead of the sound counts; a chunk that
arrives early plays after the one before it on the WebSocket player; noise below the sound level is not
the assistant).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "caller_latency.py"
_spec = importlib.util.spec_from_file_location("caller_latency", _PATH)
assert _spec is not None
assert _spec.loader is not None
caller_latency = importlib.util.module_from_spec(_spec)
sys.modules["caller_latency"] = caller_latency
_spec.loader.exec_module(caller_latency)

RATE = 16_000


def _tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype("<i2")


def test_voiced_span_ends_at_the_last_voiced_block_not_the_padding() -> None:
    clip = np.concatenate([np.zeros(4000, "<i2"), _tone(1.0, 0.5), _tone(0.2, 0.01), np.zeros(8000, "<i2")])
    start, end = caller_latency.voiced_span(clip, RATE)
    assert start == pytest.approx(0.25, abs=0.011)
    assert end == pytest.approx(1.45, abs=0.011), "a soft tail 34 dB down is still speech; the padding is not"


def test_voiced_span_leaves_out_what_is_more_than_40_db_down() -> None:
    clip = np.concatenate([_tone(1.0, 0.5), _tone(0.5, 0.002)])  # the tail is 48 dB down: breath, not speech
    assert caller_latency.voiced_span(clip, RATE)[1] == pytest.approx(1.0, abs=0.011)


def test_the_first_sound_counts_from_its_sample_not_the_chunk_that_carried_it() -> None:
    ear = caller_latency.Ear(queued=False)
    ear.feed(10.0, np.zeros(480, "<i2"), 24_000)
    chunk = np.concatenate([np.zeros(240, "<i2"), np.full(240, 2000, "<i2")])
    ear.feed(10.02, chunk, 24_000)
    assert ear.onset_after(9.0) == pytest.approx(10.03)


def test_a_queued_player_plays_an_early_chunk_after_the_one_before_it() -> None:
    ear = caller_latency.Ear(queued=True)
    ear.feed(5.0, np.zeros(2400, "<i2"), 24_000)  # 100 ms of leading silence arrives...
    ear.feed(5.001, np.full(480, 2000, "<i2"), 24_000)  # ...and the sound right behind it, early
    assert ear.onset_after(4.0) == pytest.approx(5.1), "the sound plays after the silence, not when it came"
    paced = caller_latency.Ear(queued=False)  # WebRTC: the jitter buffer already paced each frame
    paced.feed(5.0, np.zeros(2400, "<i2"), 24_000)
    paced.feed(5.001, np.full(480, 2000, "<i2"), 24_000)
    assert paced.onset_after(4.0) == pytest.approx(5.001)


def test_noise_below_the_sound_level_is_not_the_assistant_and_gaps_split_onsets() -> None:
    ear = caller_latency.Ear(queued=False)
    rng = np.random.default_rng(1)
    ear.feed(1.0, (rng.normal(0, 60, 960)).astype("<i2"), 48_000)  # decoder noise, about -55 dBFS
    assert ear.onset_after(0.0) is None
    ear.feed(2.0, np.full(960, 3000, "<i2"), 48_000)
    ear.feed(2.1, np.full(960, 3000, "<i2"), 48_000)  # 80 ms later: the same sound goes on
    ear.feed(3.0, np.full(960, 3000, "<i2"), 48_000)  # after a pause: a new onset
    assert ear.onsets == [2.0, 3.0]
    assert ear.sounded_between(2.05, 2.06)
    assert not ear.sounded_between(2.2, 2.9)


def test_the_mic_stamps_when_the_voiced_end_was_spoken() -> None:
    mic = caller_latency.Mic(RATE)
    pcm = np.concatenate([np.zeros(160), np.full(640, 1000.0), np.zeros(480)]).astype(np.float32)
    utt = caller_latency.Utterance("x", pcm, (0.01, 0.05))
    mic.say(utt)
    for i in range(5):
        mic.frame(100.0 + i * 0.02)
    assert utt.voiced_start_at == pytest.approx(100.01)
    assert utt.voiced_end_at == pytest.approx(100.05)
    assert utt.done.is_set()
