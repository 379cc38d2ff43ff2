"""The values, order and behaviour the emulator enforces as the service does (docs/nova-sonic-emulator.md).

Every refusal test sends, through the real SDK client, one event the previous emulator accepted without a
word (a v1-only voice, 44.1 kHz audio, temperature 1.5, ...): the service answers those with a
ValidationException, so a runtime that sent them would have passed its tests and failed in production.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulators.nova_sonic import (
    IDLE_TIMEOUT_SECONDS,
    NOVA_2_SONIC,
    STREAM_LIMIT_SECONDS,
    VOICES,
    CallTool,
    CutFrame,
    NovaSonicEmulator,
    Say,
    Script,
    Turn,
)
from runtime.speech import protocol as p
from runtime.speech.model import SpeechModelError, StreamOptions
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.voices import NOVA_SONIC_VOICES, default_voice, voices_for
from tests.speech.conftest import TEST_TURN_PAUSE_SECONDS, environment_credentials, served_model, speak

pytestmark = pytest.mark.timeout(60)

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
BOOKING = {"name": "Ana Lopez", "date": TOMORROW, "hour": "19:00", "num_guests": 4}
PROMPT = "p-1"


def raw_model(certs: Any, settings: Any, monkeypatch: pytest.MonkeyPatch,
              **options: Any) -> AbstractAsyncContextManager[tuple[NovaSonicEmulator, NovaSonicModel]]:
    options.setdefault("turn_pause_seconds", TEST_TURN_PAUSE_SECONDS)
    return served_model(certs, settings, monkeypatch, environment_credentials(), **options)


def opening(*, start: dict[str, Any] | None = None, voice: str = "matthew") -> list[dict[str, Any]]:
    return [start or p.session_start(), p.prompt_start(PROMPT, voice_id=voice),
            p.text_content_start(PROMPT, "sys", "SYSTEM"), p.text_input(PROMPT, "sys", "You take bookings."),
            p.content_end(PROMPT, "sys")]


async def outcome(model: NovaSonicModel, events: list[dict[str, Any]]) -> SpeechModelError | None:
    """Send ``events``; the service's verdict is the first error on the output stream (None: accepted)."""
    stream = await model.open(StreamOptions(session_id="rules"))
    try:
        for event in events:
            await stream.send(event)
        async with asyncio.timeout(0.5):
            while await stream.receive() is not None:
                pass
    except SpeechModelError as exc:
        return exc
    except TimeoutError:
        return None  # still open and quiet: everything was accepted
    finally:
        await stream.close()
    return None


def _with(event: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    (_name, body), = event["event"].items()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def audio_start(**changes: Any) -> dict[str, Any]:
    event = p.audio_content_start(PROMPT, "mic")
    for key, value in changes.items():
        _with(event, ("audioInputConfiguration", key), value)
    return event


REFUSED = [
    ("a Nova v1 voice on Nova 2", opening(voice="greta"), "invalid id"),
    ("a capitalised voice", opening(voice="Matthew"), "invalid id"),
    ("temperature above 1", opening(start=p.session_start(temperature=1.5)), "temperature"),
    ("topP below 0", opening(start=p.session_start(top_p=-0.1)), "topP"),
    ("maxTokens 0", opening(start=p.session_start(max_tokens=0)), "maxTokens"),
    ("unknown endpointing", opening(start=p.session_start(endpointing_sensitivity="FAST")), "endpointing"),
    ("44.1 kHz input", [*opening(), audio_start(sampleRateHertz=44_100)], "sampleRateHertz"),
    ("stereo input", [*opening(), audio_start(channelCount=2)], "channelCount"),
    ("8-bit input", [*opening(), audio_start(sampleSizeBits=8)], "sampleSizeBits"),
    ("mp3 input", [*opening(), audio_start(mediaType="audio/mpeg")], "mediaType"),
    ("raw (not base64) input", [*opening(), audio_start(encoding="none")], "encoding"),
    ("48 kHz output", [p.session_start(), _with(p.prompt_start(PROMPT, voice_id="matthew"),
                                                ("audioOutputConfiguration", "sampleRateHertz"), 48_000)],
     "sampleRateHertz"),
    ("promptStart before sessionStart", [p.prompt_start(PROMPT, voice_id="matthew")], "before sessionStart"),
    ("history before the system prompt", [p.session_start(), p.prompt_start(PROMPT, voice_id="matthew"),
                                          p.text_content_start(PROMPT, "h", "USER")], "SYSTEM"),
    ("a second system prompt", [*opening(), p.text_content_start(PROMPT, "sys2", "SYSTEM")], "system prompt"),
    ("events after sessionEnd", [*opening(), p.prompt_end(PROMPT), p.session_end(),
                                 p.text_content_start(PROMPT, "late", "USER")], "after sessionEnd"),
    ("content after promptEnd", [*opening(), p.prompt_end(PROMPT), p.text_content_start(PROMPT, "x", "USER")],
     "after promptEnd"),
]


@pytest.mark.parametrize(("label", "events", "hint"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_values_and_order_the_service_refuses(certs, settings, monkeypatch, label: str,
                                                    events: list[dict[str, Any]], hint: str) -> None:
    async with raw_model(certs, settings, monkeypatch) as (_, model):
        error = await outcome(model, events)
    assert error is not None, label
    assert (error.code, error.retryable) == ("validation_error", False), (label, str(error))
    assert hint.lower() in str(error).lower(), (label, str(error))


async def test_what_the_runtime_sends_is_accepted(certs, settings, monkeypatch) -> None:
    """The control for the table above: the same opening with documented values is accepted."""
    async with raw_model(certs, settings, monkeypatch) as (_, model):
        assert await outcome(model, [*opening(voice="tina"), audio_start()]) is None


async def test_an_unknown_model_id_is_refused_before_a_stream_opens(certs, settings, monkeypatch) -> None:
    settings = settings.model_copy(update={"nova_sonic_model_id": "amazon.nova-3-sonic-v9:0"})
    async with raw_model(certs, settings, monkeypatch) as (emulator, model):
        error = await outcome(model, opening())
    assert error is not None
    assert (error.code, error.retryable) == ("validation_error", False)
    assert [(r.status, r.code) for r in emulator.refusals] == [(400, "ValidationException")]
    assert emulator.streams == []


@pytest.mark.parametrize(("sensitivity", "pause"), [("HIGH", 1.5), ("MEDIUM", 1.75), ("LOW", 2.0)])
async def test_the_end_of_turn_pause_is_the_documented_one_for_each_sensitivity(
        certs, settings, monkeypatch, sensitivity: str, pause: float) -> None:
    """The lenient emulator ended every turn after four quiet frames, whatever the session asked for.
    (The pause itself is timed end to end in test_response_latency_counts_from_when_the_guest_stopped_talking.)"""
    async with raw_model(certs, settings, monkeypatch, turn_pause_seconds=None) as (emulator, model):
        assert await outcome(model, opening(start=p.session_start(endpointing_sensitivity=sensitivity))) is None
    assert emulator.streams[0].turn_pause_seconds == pause


def test_the_service_limits_are_on_by_default() -> None:
    """The previous emulator had no connection limit and no idle timeout unless a test asked for them."""
    emulator = NovaSonicEmulator()
    assert emulator.stream_limit_seconds == STREAM_LIMIT_SECONDS == 480.0
    assert emulator.idle_timeout_seconds == IDLE_TIMEOUT_SECONDS
    assert emulator.turn_pause_seconds is None  # the pause endpointingSensitivity gives


def test_the_offer_accepts_exactly_the_nova_2_voices() -> None:
    """A voice the service refuses must be refused at the offer (a client error), not fail the call later."""
    assert set(NOVA_SONIC_VOICES) == set(VOICES[NOVA_2_SONIC])
    assert "greta" not in voices_for("nova-sonic")
    assert default_voice("nova-sonic", "greta") == "matthew"  # a bad default is not advertised


async def test_double_encoded_tool_arguments_still_book(harness, store) -> None:
    script = Script([Turn("a table for four", CallTool("create_restaurant_booking", BOOKING, double_encoded=True),
                          Say("Booked as {booking_id}.", 100))])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
    [result] = h.emulator.streams[0].tool_results.values()
    assert "error" not in result, result
    [booking] = await store.bookings.list_by_date(TOMORROW)
    assert booking.name == "Ana Lopez"
    assert out.finals("ASSISTANT")[0]["text"] == f"Booked as {booking.booking_id}."


async def test_a_frame_cut_short_is_recovered_on_a_new_stream(harness, store) -> None:
    script = Script([Turn("hello", CutFrame()), Turn("hello again", Say("Hi there.", 100))])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(h.emulator.streams) == 2, within=10)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
    assert [s.error for s in h.emulator.streams] == ["InvalidEventBytes", None]
    assert not out.of_type("error")


@pytest.mark.parametrize("completion_end", [True, False])
async def test_a_conversation_works_with_and_without_completion_end(harness, completion_end: bool) -> None:
    """The docs list completionEnd; the samples rarely see it before the session ends. Both must work."""
    script = Script([Turn("hello", Say("Hi.", 100)), Turn("and now", Say("Yes?", 100))])
    async with harness(script, completion_end=completion_end, idle_usage_seconds=0.05) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await asyncio.sleep(0.2)  # idle: usage events keep coming
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 2)
        await session.end("done")
    assert [m["text"] for m in out.finals("ASSISTANT")] == ["Hi.", "Yes?"]
    assert not out.of_type("error")
