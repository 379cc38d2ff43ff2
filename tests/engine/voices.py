"""Test callers' voices, synthesised at test time: hibari at several speeds and eSpeak NG voices.

Also white noise at a chosen SNR and a word error rate. Used by tests/engine and bench/engine.py.
"""

from __future__ import annotations

import functools
import re
import subprocess

import numpy as np
import soxr

RATE = 16_000


@functools.cache
def _hibari():  # type: ignore[no-untyped-def]
    from hibari import Hibari

    return Hibari(voice="heart", threads=1)


def _to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


@functools.cache
def hibari_voice(text: str, speed: float = 1.0) -> bytes:
    """16 kHz s16le speech from hibari (24 kHz) at ``speed`` (its length knob)."""
    chunks = list(_hibari().stream(text, speed=speed, seed=1))
    return _to_pcm16(soxr.resample(np.concatenate(chunks), 24_000, RATE, quality="HQ"))


@functools.cache
def espeak_voice(text: str, voice: str = "en-us", wpm: int = 150) -> bytes:
    """16 kHz s16le speech from the espeak-ng binary (22.05 kHz streaming WAV; header skipped by hand)."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                         check=True, capture_output=True, timeout=30).stdout
    samples = np.frombuffer(wav[44:], dtype="<i2").astype(np.float32) / 32768.0
    return _to_pcm16(soxr.resample(samples, 22_050, RATE, quality="HQ"))


def with_noise(pcm: bytes, snr_db: float, seed: int = 7) -> bytes:
    """Add white noise so that speech power / noise power = ``snr_db``."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    active = x[np.abs(x) > 0.01]
    power = float(np.mean(active**2)) if active.size else 1e-4
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), x.size)
    return _to_pcm16(x + noise.astype(np.float32))


def noise_level_for(pcm: bytes, snr_db: float) -> float:
    """White-noise std (int16 units) giving ``snr_db`` against the active speech in ``pcm``."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    active = x[np.abs(x) > 300]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 3000.0
    return rms / 10 ** (snr_db / 20)


def noise(seconds: float, level: float = 0.05, seed: int = 3) -> bytes:
    return _to_pcm16(np.random.default_rng(seed).normal(0.0, level, int(seconds * RATE)).astype(np.float32))


def _words(text: str) -> list[str]:
    text = text.lower().replace("p.m.", "pm").replace("a.m.", "am").replace("o'clock", "oclock")
    return re.sub(r"[^a-z0-9' ]", " ", text).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word-level Levenshtein distance, reference length). Hand-written: ten lines beat a dependency."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)
