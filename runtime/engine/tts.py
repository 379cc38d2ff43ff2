"""Neural speech synthesis with hibari (voice "heart", native 24 kHz = Nova Sonic's output rate).

One model per process (about 220 MB), shared by every stream behind a lock: onnxruntime sessions are
thread-safe but the phonemiser is not documented to be, and on two cores parallel synthesis is no faster.
Replies are synthesised one sentence at a time so the first sentence can play while the next renders.
"""

from __future__ import annotations

import re
import threading

import numpy as np

SAMPLE_RATE = 24_000
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def split_sentences(text: str) -> list[str]:
    """Sentence chunks for incremental synthesis; abbreviations like "p.m." stay inside their sentence."""
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    return parts


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
