"""End of turn and the first audio, below the engine: Silero hysteresis, fragments, TTS padding.

These run the real models on synthesised audio (no engine, no caller), so they are fast; the whole
conversations that depend on them are in test_conversation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.engine.asr import (
    CONFIRM_SILENCE,
    FRAGMENT_HOLD,
    SpeechResumed,
    StreamingRecognizer,
    TurnConfirmed,
    Utterance,
)
from runtime.engine.lm.build import LanguageAssets, build_assets
from runtime.engine.parsing import is_fragment
from runtime.engine.tts import Synthesizer, split_for_speech, trim_silence
from runtime.engine.vad import MAX_HOLD_SECONDS, WINDOW_SECONDS, VoiceActivity
from tests.engine.voices import espeak_voice, hibari_voice, with_noise


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> LanguageAssets:
    return build_assets(tmp_path_factory.mktemp("turns-cache"))


def _silence(seconds: float) -> bytes:
    return bytes(int(seconds * 16_000) * 2)


def _feed(rec: StreamingRecognizer, pcm: bytes) -> list[tuple[object, float]]:
    """Events with the input position at which each came out (20 ms frames, as a live caller sends)."""
    out = []
    for off in range(0, len(pcm), 640):
        out += [(e, rec.position) for e in rec.feed(pcm[off : off + 640])]
    return out


def test_hysteresis_holds_voice_between_thresholds_but_not_for_ever() -> None:
    vad = VoiceActivity()
    assert not vad._classify(0.4).voice  # between the thresholds without voice before: not voice
    assert vad._classify(0.9).voice
    held = [vad._classify(0.4).voice for _ in range(20)]
    limit = round(MAX_HOLD_SECONDS / WINDOW_SECONDS)
    assert held[:limit] == [True] * limit  # a soft syllable does not end the voice ...
    assert not any(held[limit:])  # ... but hovering noise cannot hold the turn open
    assert not vad._classify(0.3).voice  # below the off-threshold: silence at once
    assert vad._classify(0.5).strong


def test_fragments() -> None:
    assert is_fragment("hi there")
    assert is_fragment("good evening")
    assert is_fragment("i would like a table for")
    assert not is_fragment("how are you")
    assert not is_fragment("yes please")
    assert not is_fragment("i would like to book a table for four people")
    assert not is_fragment("next friday i")  # a decoder insertion on trailing silence must not hold the turn
    assert not is_fragment("")


@pytest.mark.parametrize("voice", ["hibari-1.0", "espeak-en-us+f3"])
def test_end_of_turn_is_likely_first_then_confirmed(voice: str, assets: LanguageAssets) -> None:
    pcm = hibari_voice("yes please") if voice.startswith("hibari") else espeak_voice("yes please", "en-us+f3", 160)
    rec = StreamingRecognizer(assets)
    events = _feed(rec, _silence(0.5) + pcm + _silence(1.5))
    kinds = [type(e).__name__ for e, _ in events]
    assert kinds == ["SpeechStarted", "Utterance", "TurnConfirmed"]
    (utt, likely_at), (confirmed, confirmed_at) = events[1], events[2]
    assert isinstance(utt, Utterance)
    assert isinstance(confirmed, TurnConfirmed)
    assert utt.text == "yes please"
    assert confirmed.seq == utt.seq
    assert likely_at < confirmed_at  # the reply is prepared before the turn is confirmed
    assert confirmed_at - utt.voice_end == pytest.approx(CONFIRM_SILENCE, abs=0.045)


@pytest.mark.parametrize("snr_db", [None, 25.0], ids=["clean", "snr25"])
def test_a_pause_inside_a_sentence_merges_it(snr_db: float | None, assets: LanguageAssets) -> None:
    """The likely end after "for" is superseded when the guest goes on: one utterance, both parts.

    (At 20 dB SNR pocketsphinx hears "a table five" and the turn is split: docs/offline-engine.md.)"""
    rec = StreamingRecognizer(assets)
    first, second = hibari_voice("i would like a table for"), hibari_voice("four people tomorrow")
    pcm = (_silence(0.5) + trim_silence(first, 16_000, tail=0.0) + _silence(0.35)
           + trim_silence(second, 16_000, lead=0.0) + _silence(1.5))
    events = _feed(rec, pcm if snr_db is None else with_noise(pcm, snr_db))
    kinds = [type(e).__name__ for e, _ in events]
    assert kinds == ["SpeechStarted", "Utterance", "SpeechResumed", "Utterance", "TurnConfirmed"], kinds
    before, resumed, merged = events[1][0], events[2][0], events[3][0]
    assert isinstance(before, Utterance)
    assert isinstance(resumed, SpeechResumed)
    assert isinstance(merged, Utterance)
    assert resumed.seq == before.seq
    assert before.confirm_after >= CONFIRM_SILENCE + FRAGMENT_HOLD  # "... for" waits longer
    assert merged.text == "i would like a table for four people tomorrow"
    assert merged.start == before.start
    assert len(merged.audio) > len(before.audio)


def test_a_complete_sentence_is_not_held(assets: LanguageAssets) -> None:
    rec = StreamingRecognizer(assets)
    events = _feed(rec, _silence(0.5) + hibari_voice("book a table for two") + _silence(1.0))
    utt = next(e for e, _ in events if isinstance(e, Utterance))
    assert utt.confirm_after < CONFIRM_SILENCE + FRAGMENT_HOLD


def test_noise_is_not_a_turn_and_noisy_speech_is(assets: LanguageAssets) -> None:
    rec = StreamingRecognizer(assets)
    rng = np.random.default_rng(4)
    noise = (rng.normal(0, 1500, 16_000 * 3)).astype("<i2").tobytes()
    assert _feed(rec, noise) == []
    speech = with_noise(_silence(0.5) + espeak_voice("yes please", "en-us+f2", 150) + _silence(1.0), 15.0)
    kinds = [type(e).__name__ for e, _ in _feed(rec, speech)]
    assert kinds == ["SpeechStarted", "Utterance", "TurnConfirmed"]


def test_tts_padding_is_trimmed_and_the_first_clause_is_short() -> None:
    tts = Synthesizer()
    raw = tts.synthesize("What day would you like to come?")
    trimmed = trim_silence(raw)
    x = np.abs(np.frombuffer(trimmed, "<i2"))
    assert int(np.argmax(x > 100)) / 24_000 <= 0.02  # voice within 20 ms of the start
    assert len(raw) - len(trimmed) > 0.3 * 24_000 * 2  # hibari pads by far more than that
    text = "Sorry, we are fully booked at seven p.m. that day. I could offer eight p.m. Which would you prefer?"
    parts = split_for_speech(text)
    assert parts[0] == "Sorry,"
    assert " ".join(parts) == text
    assert split_for_speech("Great. What day would you like to come?") == ["Great.", "What day would you like to come?"]
