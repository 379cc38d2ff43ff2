"""The emulator's rules for history and cross-modal text, which the greeting relies on (docs/nova-sonic-emulator.md).

Each refusal is one event sequence a lenient emulator took without a word; the service's documents say it must
not be sent (or, where they are silent, the emulator takes the stricter reading and says so in the docs). The
accepted case is the runtime's own order, answered as the service answers it: as a user turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from emulators.nova_sonic import NOVA_SONIC_V1, Say, Turn
from runtime.speech import protocol as p
from runtime.speech.model import SpeechModelError, StreamOptions
from tests.speech.test_emulator_rules import PROMPT, audio_start, opening, outcome, raw_model

pytestmark = pytest.mark.timeout(60)

ASK = "[The guest has just connected. Greet them first.]"


def text(name: str, role: str, content: str, *, interactive: bool = False) -> list[dict[str, Any]]:
    return p.text_block(PROMPT, name, role, [content], interactive=interactive)  # type: ignore[arg-type]


def frame() -> dict[str, Any]:
    return p.audio_input(PROMPT, "mic", bytes(1024))


REFUSED = [
    ("history that starts with ASSISTANT", [*opening(), *text("h1", "ASSISTANT", "Welcome!")],
     "must start with a USER message"),
    ("history after the audio content opened", [*opening(), audio_start(), *text("h1", "USER", "hi")],
     "sent completely before streaming audio"),
    ("history after interactive text", [*opening(), audio_start(), *text("t1", "USER", ASK, interactive=True),
                                        *text("h1", "USER", "hi")], "sent completely before streaming audio"),
    ("interactive text before the audio content", [*opening(), *text("t1", "USER", ASK, interactive=True)],
     "open audio content"),
    ("audio while the text block is open", [*opening(), audio_start(),
                                            p.text_content_start(PROMPT, "t1", "USER", interactive=True), frame()],
     "text block is open"),
]


@pytest.mark.parametrize(("label", "events", "hint"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_history_and_cross_modal_text_the_service_refuses(certs, settings, monkeypatch, label: str,
                                                                events: list[dict[str, Any]], hint: str) -> None:
    async with raw_model(certs, settings, monkeypatch) as (_, model):
        error = await outcome(model, events)
    assert error is not None, label
    assert (error.code, error.retryable) == ("validation_error", False), (label, str(error))
    assert hint.lower() in str(error).lower(), (label, str(error))


async def test_cross_modal_text_is_refused_on_nova_sonic_v1(certs, settings, monkeypatch) -> None:
    """Cross-modal input is a Nova 2 feature; the runtime's model id is Nova 2 by default."""
    v1 = settings.model_copy(update={"nova_sonic_model_id": NOVA_SONIC_V1})
    events = [*opening(start=p.session_start(endpointing_sensitivity=None)), audio_start(),
              *text("t1", "USER", ASK, interactive=True)]
    async with raw_model(certs, v1, monkeypatch) as (_, model):
        error = await outcome(model, events)
    assert error is not None
    assert "cross-modal" in str(error)


async def test_the_runtimes_order_is_answered_as_a_user_turn(certs, settings, monkeypatch) -> None:
    """History (USER first), the audio content, then the interactive text: the model answers it."""
    events = [*opening(), *text("h1", "USER", "[note]"), *text("h2", "ASSISTANT", "Welcome!"), audio_start(),
              *text("t1", "USER", ASK, interactive=True), frame()]
    async with raw_model(certs, settings, monkeypatch) as (emulator, model):
        emulator.add_turns(Turn("(text)", Say("Hello from the emulator.", 100)))
        stream = await model.open(StreamOptions(session_id="greeting-rules"))
        said: list[tuple[str, str]] = []
        try:
            for event in events:
                await stream.send(event)
            async with asyncio.timeout(5):
                while ("ASSISTANT", "Hello from the emulator.") not in said:
                    event = await stream.receive()
                    assert event is not None
                    name, body = p.parse(event)
                    if name == "textOutput":
                        said.append((body["role"], body["content"]))
        except SpeechModelError as exc:  # pragma: no cover - the assertion below explains it
            pytest.fail(f"refused: {exc}")
        finally:
            await stream.close()
        [record] = emulator.streams
    assert record.error is None
    assert record.text_inputs == [ASK]
    assert record.history() == [("USER", "[note]"), ("ASSISTANT", "Welcome!")]
    assert {role for role, _ in said} == {"ASSISTANT"}  # no USER transcript of the text unless echo_text_input
