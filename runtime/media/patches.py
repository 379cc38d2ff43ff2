"""Process-wide replacements inside aiortc, installed once before the first call.

aiortc computes the RFC 6464 audio level of every raw frame it sends with a pure-Python loop over
each sample, on the event loop (~40-150 µs per 20 ms frame, measured here with bench/rtc_sessions.py).
``PacedOpusTrack`` sends pre-encoded packets and so never reaches that code, but any raw-frame track
(a future one, or a library's) would; the numpy version returns the same integer for the same frame.
aiortc looks the function up as ``rtp.compute_audio_level_dbov`` at call time, so replacing the module
attribute is enough.
"""

from __future__ import annotations

from aiortc import rtp

from runtime.media.audio import audio_level_dbov

_installed = False


def install() -> None:
    global _installed
    if not _installed:
        rtp.compute_audio_level_dbov = audio_level_dbov
        _installed = True
