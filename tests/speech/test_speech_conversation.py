"""A whole booking conversation through the real Bedrock SDK client, against the wire-level emulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from emulators.nova_sonic import CallTool, Say, Script, Turn
from runtime.speech.ports import OUTPUT_RATE
from tests.speech.conftest import speak

pytestmark = pytest.mark.timeout(60)


async def test_spoken_booking_is_stored_confirmed_and_read_back(harness, store) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    script = Script([
        Turn("I'd like a table for four tomorrow at seven, the name is Ana Lopez",
             CallTool("get_current_date_time", {}),
             CallTool("create_restaurant_booking",
                      {"name": "Ana Lopez", "date": tomorrow, "hour": "19:00", "num_guests": 4}),
             Say("You're booked, Ana. Your booking id is {booking_id}.", audio_ms=600)),
    ])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("caller hung up")

    # The booking exists, confirmed, tied to this conversation.
    [booking] = await store.bookings.list_by_date(tomorrow)
    assert (booking.name, booking.hour, booking.num_guests, booking.status) == ("Ana Lopez", "19:00", 4, "confirmed")
    assert booking.session_id == session.session_id

    # The model got a toolResult for exactly the toolUseIds it issued (the emulator rejects others).
    stream = h.emulator.streams[0]
    results = list(stream.tool_results.values())
    assert len(results) == 2
    assert stream.error is None
    assert results[0]["date"] == datetime.now(UTC).date().isoformat()
    assert results[1]["booking"]["booking_id"] == booking.booking_id
    tool_blocks = [b["toolResultInputConfiguration"]["toolUseId"] for n, b in stream.events
                   if n == "contentStart" and b.get("type") == "TOOL"]
    assert tool_blocks == list(stream.tool_results)

    # The assistant's audio reached the sink (600 ms at 24 kHz s16le) and the id was read back.
    assert out.audio_bytes == 600 * OUTPUT_RATE // 1000 * 2
    assert out.of_type("booking")[0]["booking"]["booking_id"] == booking.booking_id
    assert out.of_type("latency")[0]["endOfSpeechToAudioMs"] >= 0

    # The speculative preview reached the caller as a non-final transcript, but only finals are stored.
    previews = [m for m in out.of_type("transcript") if not m["final"]]
    assert [m["role"] for m in previews] == ["ASSISTANT"]
    # Both finished turns are stored, in order, with the id spoken back.
    turns = await store.conversations.list(session.session_id)
    assert [(t.seq, t.role) for t in turns] == [(1, "USER"), (2, "ASSISTANT")]
    assert turns[0].text.startswith("I'd like a table for four")
    assert turns[1].text == f"You're booked, Ana. Your booking id is {booking.booking_id}."

    # The session record closed with the usage the model reported.
    record = await store.sessions.get(session.session_id)
    assert record is not None
    assert record.status == "ended"
    assert record.engine == "nova-sonic"
    assert record.usage["output_speech_tokens"] == 600 // 40
    # The stream was closed in the documented order.
    assert stream.names()[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert stream.input_closed


async def test_response_latency_counts_from_when_the_guest_stopped_talking(harness) -> None:
    """The model reports a turn only after its own endpointing; the guest waits from their last word.

    The emulator uses the service's pause here (``turn_pause_seconds=None``): MEDIUM sensitivity, the
    runtime's default, is 1.75 s per the Nova 2 turn-taking documentation. The lenient emulator ended a turn
    after four quiet frames (~0.13 s), so this bound could not hold against it.
    """
    script = Script([Turn("a table for two", Say("Certainly.", audio_ms=200))])
    async with harness(script, turn_pause_seconds=None) as h:
        session, out = await h.session()
        await speak(session)
        stopped_talking = time.monotonic()
        await out.wait_for(lambda: bool(out.of_type("latency")))
        seen = time.monotonic()
        await session.end("caller hung up")

    latency_ms = out.of_type("latency")[0]["endOfSpeechToAudioMs"]
    [stream] = h.emulator.streams
    assert stream.turn_pause_seconds == 1.75
    # At least the endpointing wait the emulator imposed (frames are paced in real time), and never more
    # than the wall time since the guest's last word.
    assert latency_ms >= 0.9 * 1750
    assert latency_ms <= (seen - stopped_talking) * 1000 + 50


async def test_turns_the_store_refuses_for_a_while_are_stored_later_in_order(harness, store, monkeypatch) -> None:
    """A store outage longer than one turn's retries: that turn waits and is written before the next one."""
    script = Script([
        Turn("hello there", Say("Hello! How can I help?", audio_ms=200)),
        Turn("a table for two please", Say("For which day?", audio_ms=200)),
    ])
    real_append = store.conversations.append
    refusals = {"left": 4}  # one full round of retries for the first turn

    async def flaky_append(*args, **kwargs):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise ConnectionError("the store is unreachable")
        return await real_append(*args, **kwargs)

    monkeypatch.setattr(store.conversations, "append", flaky_append)
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 2)
        await session.end("caller hung up")
    turns = await store.conversations.list(session.session_id)
    assert [(t.role, t.text) for t in turns] == [
        ("USER", "hello there"), ("ASSISTANT", "Hello! How can I help?"),
        ("USER", "a table for two please"), ("ASSISTANT", "For which day?")]
    assert refusals["left"] == 0
