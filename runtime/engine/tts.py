"""Neural speech synthesis with hibari (voice "heart", native 24 kHz = Nova Sonic's output rate).

One model per process (about 220 MB), shared by every stream behind a lock: onnxruntime sessions are
thread-safe but the phonemiser is not documented to be, and on two cores parallel synthesis is no faster.
Replies are synthesised one sentence at a time so the first sentence can play while the next renders;
a long first sentence is split at its first comma, so the first audio is out after a short clause.

hibari pads every sentence with 170-320 ms of silence before the voice and 270-420 ms after it (measured
on the engine's replies, docs/offline-engine.md). At the caller the leading pad is pure latency, so the
engine trims it (``trim_silence``) and keeps a short natural pause at the end.
"""

from __future__ import annotations

import re
import threading

import numpy as np

SAMPLE_RATE = 24_000
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


FIRST_CLAUSE_MIN_WORDS = 9  # a first sentence at least this long is spoken clause first
LEAD_KEEP_SECONDS = 0.01
TAIL_KEEP_SECONDS = 0.18  # the pause between sentences (and after the reply)
_QUIET = 0.003  # |sample| below this (-50 dBFS) is padding, not voice


def split_sentences(text: str) -> list[str]:
    """Sentence chunks for incremental synthesis; abbreviations like "p.m." stay inside their sentence."""
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    return parts


def split_for_speech(text: str) -> list[str]:
    """``split_sentences``, with a long first sentence split after its first comma (joined by spaces, the
    chunks give back the text)."""
    parts = split_sentences(text)
    if parts and len(parts[0].split()) >= FIRST_CLAUSE_MIN_WORDS and "," in parts[0]:
        head, tail = parts[0].split(",", 1)
        if len(tail.split()) >= 4:
            parts[0:1] = [head + ",", tail.strip()]
    return parts


def trim_silence(pcm: bytes, rate: int = SAMPLE_RATE, *, lead: float = LEAD_KEEP_SECONDS,
                 tail: float = TAIL_KEEP_SECONDS) -> bytes:
    """Cut the synthesiser's padding down to ``lead`` seconds before the voice and ``tail`` after it."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.nonzero(np.abs(samples) > _QUIET * 32768)[0]
    if not loud.size:
        return pcm
    start = max(0, int(loud[0]) - int(lead * rate))
    stop = min(samples.size, int(loud[-1]) + 1 + int(tail * rate))
    return samples[start:stop].tobytes()


class Synthesizer:
    def __init__(self, *, speed: float = 1.0) -> None:
        from hibari import SAMPLE_RATE as HIBARI_RATE
        from hibari import Hibari

        if HIBARI_RATE != SAMPLE_RATE:
            raise RuntimeError(f"hibari produces {HIBARI_RATE} Hz, expected {SAMPLE_RATE}")
        self._tts = Hibari(voice="heart", threads=1)
        self._speed = speed
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """The first synthesis pays ~0.5 s of graph set-up; pay it before the first guest does."""
        self.synthesize("Hello.")

    def synthesize(self, sentence: str, *, speed: float | None = None) -> bytes:
        """24 kHz mono s16le PCM for one sentence (deterministic: fixed seed)."""
        with self._lock:
            chunks = list(self._tts.stream(sentence, speed=speed or self._speed, seed=0))
        if not chunks:
            return b""
        audio: np.ndarray = np.concatenate(chunks)
        pcm: np.ndarray = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
        return pcm.tobytes()
