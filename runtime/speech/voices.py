"""The voices a caller may choose, per speech engine: the one catalogue every part asks.

``GET /api/config`` advertises it, the WebRTC offer and ``/ws/audio`` refuse a voice outside it with a 422
before a call slot is taken, and the session manager applies the same rule (and the same default) to
every session it creates, whichever transport or tool asks. Kept here, in the speech package, because a
voice is a property of the engine that speaks: the transports only carry the caller's choice.
"""

from __future__ import annotations

from runtime.errors import ValidationFailed

# The offline engine speaks with one hibari voice (runtime/engine/tts.py).
LOCAL_VOICES: tuple[str, ...] = ("heart",)
# Nova 2 Sonic voice ids, exactly the 16 of the Nova 2 language-support page
# (https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-language-support.html). The service refuses
# any other id (ValidationException "Received invalid id"), so the offer refuses it first; "greta" is a Nova
# Sonic v1 voice that Nova 2 does not have (its German feminine voice is "tina").
NOVA_SONIC_VOICES: tuple[str, ...] = ("matthew", "tiffany", "amy", "olivia", "kiara", "arjun", "ambre", "florian",
                                      "beatrice", "lorenzo", "tina", "lennart", "lupe", "carlos", "carolina", "leo")


def voices_for(engine: str) -> list[str]:
    """The voices of ``engine`` (a ``SpeechModel.name``); any engine but the offline one speaks Nova's."""
    return list(LOCAL_VOICES if engine == "local" else NOVA_SONIC_VOICES)


def default_voice(engine: str, configured: str) -> str:
    """``VOICE_ID`` when ``engine`` has it, else the engine's first voice: never one the service would refuse."""
    voices = voices_for(engine)
    return configured if configured in voices else voices[0]


def check_voice(engine: str, voice: object) -> str:
    """``voice`` if ``engine`` speaks it; else a 422 ``validation_error`` that lists the choices."""
    voices = voices_for(engine)
    if not isinstance(voice, str) or voice not in voices:
        raise ValidationFailed(f"unknown voice; choose one of: {', '.join(voices)}",
                               details={"voice": "not one of " + ", ".join(voices)})
    return voice
