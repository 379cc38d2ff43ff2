"""The assistant speaks first on Nova Sonic (docs/greeting.md): once per call, in the restaurant's name, stored
as a turn like any other, carried - never repeated - across renewals and recoveries.

Real SDK client against the strict emulator, which answers the cross-modal greeting prompt as the service
does: as a user turn, with the scripted greeting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulators.nova_sonic import Fail, Say, Script, StreamRecord, Turn
from runtime.settings import Settings
from runtime.speech.history import split_utf8
from runtime.speech.prompt import greeting_history_note, greeting_request, system_prompt
from runtime.speech.session import SessionConfig
from tests.speech.conftest import SECRET, speak

pytestmark = pytest.mark.timeout(60)

RESTAURANT = "Trattoria Lumen"
GREETING = f"Good evening, thank you for calling {RESTAURANT}. How can I help you?"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The production default (greet first), with a restaurant name no other text in the project uses."""
    return Settings(data_dir=tmp_path, speech_engine="nova-sonic", session_secret=SECRET, restaurant_name=RESTAURANT)


def greeting_turn() -> Turn:
    return Turn("(the greeting prompt: no transcript, the turn starts from text)", Say(GREETING, 200))


async def stored(store: Any, session_id: str) -> list[tuple[str, str]]:
    return [(t.role, t.text) for t in await store.conversations.list(session_id)]


def interactive_blocks(stream: StreamRecord) -> list[dict[str, Any]]:
    return [b for n, b in stream.events if n == "contentStart" and b.get("type") == "TEXT" and b.get("interactive")]


def assert_prompt_follows_the_audio_start_unbroken(stream: StreamRecord) -> None:
    """The documented order: history, the audio content, then the text block - with no audio inside it."""
    names = [(n, b.get("type"), bool(b.get("interactive"))) for n, b in stream.events]
    audio_start = names.index(("contentStart", "AUDIO", True))
    text_start = names.index(("contentStart", "TEXT", True))
    assert audio_start < text_start
    block = stream.events[text_start:]
    end = next(i for i, (n, b) in enumerate(block) if n == "contentEnd"
               and b.get("contentName") == block[0][1]["contentName"])
    assert [n for n, _ in block[: end + 1]] == ["contentStart", "textInput", "contentEnd"]


@pytest.mark.parametrize("echo", [False, True], ids=["no-echo", "prompt-echoed-as-user-text"])
async def test_nova_sonic_greets_first_once_in_the_restaurants_name(harness, store, settings, echo: bool) -> None:
    script = Script([greeting_turn(), Turn("a table for two please", Say("For which day?", 200))])
    async with harness(script, echo_text_input=echo) as h:
        session, out = await h.session()
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 2)
        await session.end("done")
        streams, played = h.emulator.streams, h.emulator.turns_played

    [stream] = streams
    assert stream.error is None
    # Asked once, with the documented cross-modal input, naming the restaurant.
    assert stream.text_inputs == [greeting_request(settings)]
    assert RESTAURANT in stream.text_inputs[0]
    assert len(interactive_blocks(stream)) == 1
    assert_prompt_follows_the_audio_start_unbroken(stream)
    assert played == 2  # the greeting and the guest's turn: nothing was asked twice
    # The greeting is the first turn, stored and shown like any other; the prompt is no guest turn.
    assert [m["text"] for m in out.finals("ASSISTANT")] == [GREETING, "For which day?"]
    assert [m["text"] for m in out.finals("USER")] == ["a table for two please"]
    assert await stored(store, session.session_id) == [
        ("ASSISTANT", GREETING), ("USER", "a table for two please"), ("ASSISTANT", "For which day?")]


async def test_a_renewal_carries_the_greeting_in_its_history_and_does_not_greet_again(harness, store,
                                                                                      settings) -> None:
    script = Script([greeting_turn(), Turn("is there a table tonight", Say("Yes, for how many?", 200))])
    config = SessionConfig(renew_after_seconds=0.6, renew_deadline_seconds=1.5, quiet_boundary_seconds=0.2,
                           backoff_initial_seconds=0.05)
    async with harness(script, config=config, stream_limit_seconds=3.0) as h:
        session, out = await h.session()
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await out.wait_for(lambda: session.renewals == 1, within=5)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 2)
        await session.end("done")
        streams, played = h.emulator.streams, h.emulator.turns_played

    assert len(streams) == 2
    assert [s.error for s in streams] == [None, None]
    first, renewed = streams
    assert first.text_inputs == [greeting_request(settings)]
    # The new stream is never asked to greet; its history holds the greeting as the assistant's, behind a
    # note (the service wants USER first) that is not the prompt and not something the guest said.
    assert renewed.text_inputs == []
    assert interactive_blocks(renewed) == []
    assert renewed.history() == [("USER", greeting_history_note(settings)), ("ASSISTANT", GREETING)]
    assert greeting_history_note(settings) != greeting_request(settings)
    assert played == 2
    assert [m["text"] for m in out.finals("ASSISTANT")] == [GREETING, "Yes, for how many?"]
    assert await stored(store, session.session_id) == [
        ("ASSISTANT", GREETING), ("USER", "is there a table tonight"), ("ASSISTANT", "Yes, for how many?")]


async def test_a_stream_lost_before_the_greeting_asks_again_on_the_next_one(harness, store, settings) -> None:
    """Nothing was said yet: the recovered stream asks for the greeting (the guest hears it once)."""
    # sessionStart, promptStart, the system block, the audio contentStart, the prompt's block: the stream dies
    # on the prompt's contentEnd, before the model could answer it.
    prompt_end = 2 + len(split_utf8(system_prompt(settings))) + 2 + 1 + len(split_utf8(greeting_request(settings))) + 2
    async with harness(Script([greeting_turn()])) as h:
        h.emulator.inject_stream_fault("modelStreamErrorException", "Model stream error", after_events=prompt_end)
        session, out = await h.session()
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        streams = h.emulator.streams

    assert [s.error for s in streams] == ["modelStreamErrorException", None]
    assert streams[0].names()[-1] == "contentEnd"
    assert streams[0].text_inputs == []
    assert streams[1].history() == []
    assert streams[1].text_inputs == [greeting_request(settings)]
    assert [m["text"] for m in out.finals("ASSISTANT")] == [GREETING]
    assert await stored(store, session.session_id) == [("ASSISTANT", GREETING)]


@pytest.mark.parametrize("echo", [False, True], ids=["no-echo", "texts-echoed-as-user-text"])
async def test_a_recovery_after_the_greeting_resumes_the_guest_without_greeting_again(harness, store, settings,
                                                                                      echo: bool) -> None:
    script = Script([greeting_turn(), Turn("a table for four", Fail("modelStreamErrorException")),
                     Turn("(re-asked as text)", Say("For which day?", 200))])
    async with harness(script, echo_text_input=echo) as h:
        session, out = await h.session()
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 2)
        await session.end("done")
        streams = h.emulator.streams

    assert [s.error for s in streams] == ["modelStreamErrorException", None]
    assert session.recoveries == 1
    recovered = streams[1]
    assert recovered.history() == [("USER", greeting_history_note(settings)), ("ASSISTANT", GREETING)]
    assert recovered.text_inputs == ["a table for four"]  # the unanswered question, not the greeting prompt
    assert [m["text"] for m in out.finals("USER")] == ["a table for four"]
    assert await stored(store, session.session_id) == [
        ("ASSISTANT", GREETING), ("USER", "a table for four"), ("ASSISTANT", "For which day?")]


async def test_with_greet_first_off_the_model_waits_for_the_guest(harness, store, settings) -> None:
    quiet = settings.model_copy(update={"speech_greet_first": False})
    async with harness(Script([Turn("hello", Say("Hi, how can I help?", 200))])) as h:
        h.manager.settings = quiet
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        [stream] = h.emulator.streams
    assert stream.text_inputs == []
    assert await stored(store, session.session_id) == [("USER", "hello"), ("ASSISTANT", "Hi, how can I help?")]
