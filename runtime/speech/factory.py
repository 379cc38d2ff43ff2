"""Pick the process's SpeechModel from ``settings.speech_engine``.

Imports are lazy on purpose: the offline engine loads ASR/TTS models and the Nova client pulls in the
CRT, and a process only ever needs one of them.
"""

from __future__ import annotations

from runtime.settings import Settings
from runtime.speech.model import SpeechModel


def make_speech_model(settings: Settings) -> SpeechModel:
    if settings.speech_engine == "nova-sonic":
        from runtime.speech.nova_sonic import NovaSonicModel

        return NovaSonicModel(settings)
    from runtime.engine import OfflineEngine  # the embedded offline engine (standalone mode)

    return OfflineEngine(settings)


def make_fallback_model(settings: Settings) -> SpeechModel:
    """The engine ``SPEECH_FALLBACK_ENGINE`` names ("local", the only one), made when first needed."""
    from runtime.engine import OfflineEngine

    return OfflineEngine(settings)
