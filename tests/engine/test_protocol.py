"""The engine speaks Nova Sonic's event protocol: the session core (and any Nova client) must not be able
to tell the difference in event order, shapes, audio format or error behaviour."""

from __future__ import annotations

import base64
import json

import pytest

from runtime.engine import OfflineEngine
from runtime.speech.model import SpeechModelError, StreamOptions
from runtime.speech.tools import tool_specs
from tools.engine_caller import ScriptedCaller


def _names(events: list[dict], *, skip: tuple[str, ...] = ()) -> list[str]:
    """Event names with content types/stages, runs of audioOutput/usageEvent collapsed to one."""
    out: list[str] = []
    for event in events:
        ((name, body),) = event["event"].items()
        if name in skip:
            continue
        if name == "contentStart":
            stage = json.loads(body.get("additionalModelFields") or "{}").get("generationStage")
            name = f"contentStart:{body['type']}:{body['role']}" + (f":{stage}" if stage else "")
        elif name == "contentEnd":
            name = f"contentEnd:{body['type']}:{body['stopReason']}"
        if not out or out[-1] != name or name not in {"audioOutput", "usageEvent"}:
            out.append(name)
    return out


async def test_greeting_follows_novas_turn_shape(caller: ScriptedCaller) -> None:
    turn = await caller.next_turn()
    names = _names(turn.events, skip=("usageEvent",))
    assert names == [
        "completionStart",
        "contentStart:TEXT:ASSISTANT:SPECULATIVE", "textOutput", "contentEnd:TEXT:PARTIAL_TURN",
        "contentStart:AUDIO:ASSISTANT", "audioOutput", "contentEnd:AUDIO:END_TURN",
        "contentStart:TEXT:ASSISTANT:FINAL", "textOutput", "contentEnd:TEXT:END_TURN",
        "completionEnd",
    ]
    assert "usageEvent" in _names(turn.events)
    assert turn.text == turn.speculative
    assert "welcome" in turn.text
    audio_start = next(e["event"]["contentStart"] for e in turn.events
                       if "contentStart" in e["event"] and e["event"]["contentStart"]["type"] == "AUDIO")
    assert audio_start["audioOutputConfiguration"]["sampleRateHertz"] == 24_000
    chunks = [base64.b64decode(e["event"]["audioOutput"]["content"])
              for e in turn.events if "audioOutput" in e["event"]]
    assert len(chunks) > 10
    assert all(len(c) <= 24_000 * 2 // 10 for c in chunks)
    assert 3.0 < turn.audio_seconds < 15.0
    ids = {e["event"][next(iter(e["event"]))]["completionId"] for e in turn.events}
    assert len(ids) == 1  # one completion id across the whole turn


async def test_typed_turn_and_lower_output_rate(engine: OfflineEngine, tool_log) -> None:  # type: ignore[no-untyped-def]
    stream = await engine.open(StreamOptions(session_id="typed"))
    caller = ScriptedCaller(stream, tool_log)
    try:
        await caller.start(tool_specs=tool_specs(), output_rate=16_000)
        greeting = await caller.next_turn()
        assert 3.0 < len(greeting.audio) / 2 / 16_000 < 15.0
        await caller.type_text("a table for two tomorrow at eight pm please")
        turn = await caller.next_turn()
        assert turn.user_text == "a table for two tomorrow at eight pm please"
        assert [name for name, _ in turn.tool_uses] == ["get_current_date_time"]
        assert "name" in turn.text
        tool_start = next(e["event"]["contentEnd"] for e in turn.events
                          if "contentEnd" in e["event"] and e["event"]["contentEnd"]["type"] == "TOOL")
        assert tool_start["stopReason"] == "TOOL_USE"
    finally:
        await caller.hang_up()


async def test_bad_input_events_are_refused_with_a_model_error(engine: OfflineEngine) -> None:
    stream = await engine.open(StreamOptions(session_id="bad"))
    with pytest.raises(SpeechModelError) as unknown:
        await stream.send({"event": {"bogus": {}}})
    assert unknown.value.code == "ValidationException"
    assert not unknown.value.retryable
    with pytest.raises(SpeechModelError):
        await stream.send({"nope": 1})
    with pytest.raises(SpeechModelError):
        await stream.send({"event": {"audioInput": {"content": "%%% not base64 %%%"}}})
    await stream.close()
    assert await stream.receive() is None
    with pytest.raises(SpeechModelError):
        await stream.send({"event": {"sessionEnd": {}}})


async def test_session_end_closes_the_output_stream(caller: ScriptedCaller) -> None:
    await caller.next_turn()
    await caller.hang_up()
    assert caller.closed.is_set()
    assert caller.error is None
    assert await caller.stream.receive() is None


async def test_renewed_stream_continues_the_booking_from_history(engine: OfflineEngine, tool_log,  # type: ignore[no-untyped-def]
                                                                 bookings) -> None:
    history = (("USER", "i would like a table for four tomorrow at seven pm"),
               ("ASSISTANT", "Great. May I have your name for the booking?"))
    stream = await engine.open(StreamOptions(session_id="renewed"))
    caller = ScriptedCaller(stream, tool_log)
    try:
        await caller.start(tool_specs=tool_specs(), history=history)
        await caller.type_text("my name is alice smith")
        turn = await caller.next_turn()  # no second greeting: the first turn answers the guest
        assert "four people" in turn.text
        assert "Alice Smith" in turn.text
        await caller.type_text("yes")
        booked = await caller.next_turn()
        assert "booked" in booked.text
        assert tool_log.names().count("create_restaurant_booking") == 1
    finally:
        await caller.hang_up()


async def test_renewal_after_a_finished_booking_cannot_book_it_twice(engine: OfflineEngine, tool_log  # type: ignore[no-untyped-def]
                                                                     ) -> None:
    history = (("USER", "a table for two tomorrow at eight pm under the name bob jones"),
               ("ASSISTANT", "That's a table for two people. Shall I book it?"), ("USER", "yes"),
               ("ASSISTANT", "Your table is booked. Your booking number is B K, A B C D, E F G H, I J."))
    stream = await engine.open(StreamOptions(session_id="renewed-2"))
    caller = ScriptedCaller(stream, tool_log)
    try:
        await caller.start(tool_specs=tool_specs(), history=history)
        await caller.type_text("yes")
        turn = await caller.next_turn()
        assert "create_restaurant_booking" not in tool_log.names()
        assert turn.text
    finally:
        await caller.hang_up()
