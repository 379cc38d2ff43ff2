"""Embedded offline speech engine: speaks Nova Sonic's event protocol with no cloud at all.

pocketsphinx (streaming ASR with a booking-domain LM and per-state grammars), a deterministic
slot-filling dialogue manager that acts only through Nova's tool calls, and hibari neural TTS at 24 kHz.
"""

from runtime.engine.engine import OfflineEngine, OfflineStream

__all__ = ["OfflineEngine", "OfflineStream"]
