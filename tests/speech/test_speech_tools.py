"""Tool calls with bad arguments come back to the model as error results; the conversation goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from emulators.nova_sonic import CallTool, Say, Script, Turn
from runtime.speech.tools import ToolRunner, tool_specs
from tests.speech.conftest import speak

pytestmark = pytest.mark.timeout(60)

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
GOOD = {"name": "Ana Lopez", "date": TOMORROW, "hour": "19:00", "num_guests": 4}

BAD_CALLS = [
    ("missing fields", "create_restaurant_booking", {"name": "Ana Lopez"}, "date"),
    ("wrong type", "create_restaurant_booking", {**GOOD, "num_guests": "four"}, "whole number"),
    ("past date", "create_restaurant_booking", {**GOOD, "date": YESTERDAY}, "past"),
    ("50 guests", "create_restaurant_booking", {**GOOD, "num_guests": 50}, "1 to 20"),
    ("not JSON", "create_restaurant_booking", "{name: Ana", "JSON"),
    ("unknown booking", "get_restaurant_booking", {"booking_id": "NOPE1234"}, "NOPE1234"),
    ("unknown booking to cancel", "delete_restaurant_booking", {"booking_id": "NOPE1234"}, "NOPE1234"),
    ("booking id of the wrong type", "get_restaurant_booking", {"booking_id": 42}, "booking id"),
    ("bad availability date", "check_availability", {"date": "soon", "hour": "19:00", "num_guests": 2}, "YYYY-MM-DD"),
    ("unknown tool", "order_pizza", {}, "no tool"),
]


async def test_bad_arguments_become_error_results_and_nothing_is_booked(harness, store) -> None:
    steps = [CallTool(name, args) for _, name, args, _ in BAD_CALLS]
    script = Script([Turn("let me try some odd things", *steps, Say("Sorry, I could not do that.", 100))])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        stream = h.emulator.streams[0]

    results = list(stream.tool_results.values())
    assert len(results) == len(BAD_CALLS)
    for (label, _, _, hint), result in zip(BAD_CALLS, results, strict=True):
        assert isinstance(result, dict), label
        assert hint.lower() in result["error"].lower(), (label, result)
    assert stream.error is None
    assert not out.of_type("error")
    assert await store.bookings.list_by_date(TOMORROW) == []


async def test_a_repeated_tool_use_id_is_answered_from_the_cache_and_books_once(harness, store) -> None:
    call = CallTool("create_restaurant_booking", GOOD, tool_use_id="6f1c0d7e-repeated")
    script = Script([Turn("book it", call, call, Say("Booked as {booking_id}.", 100))])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        stream = h.emulator.streams[0]
    answered = [b["toolResultInputConfiguration"]["toolUseId"] for n, b in stream.events
                if n == "contentStart" and b.get("type") == "TOOL"]
    assert answered == ["6f1c0d7e-repeated"] * 2
    [booking] = await store.bookings.list_by_date(TOMORROW)
    assert len(out.of_type("booking")) == 1
    assert out.finals("ASSISTANT")[0]["text"] == f"Booked as {booking.booking_id}."


async def test_the_booking_service_dedupes_by_tool_use_id_across_runners(bookings, store) -> None:
    runner = ToolRunner(bookings, session_id="session-1234")
    first = await runner.run("create_restaurant_booking", "tool-use-1", json.dumps(GOOD))
    again = await runner.run("create_restaurant_booking", "tool-use-1", json.dumps(GOOD))
    assert first.result["booking"]["booking_id"] == again.result["booking"]["booking_id"]
    assert again.result["created"] is False
    assert len(await store.bookings.list_by_date(TOMORROW)) == 1


async def test_cancel_and_lookup_speak_the_booking(bookings) -> None:
    runner = ToolRunner(bookings, session_id="session-1234")
    created = await runner.run("create_restaurant_booking", "t1", json.dumps(GOOD))
    booking_id = created.result["booking"]["booking_id"]
    found = await runner.run("get_restaurant_booking", "t2", json.dumps({"booking_id": booking_id}))
    assert found.booking_action == "found"
    assert found.result["booking"]["status"] == "confirmed"
    cancelled = await runner.run("delete_restaurant_booking", "t3",
                                 json.dumps({"booking_id": booking_id, "cancellation_reason": "ill"}))
    assert cancelled.booking_action == "cancelled"
    assert cancelled.result["booking"]["status"] == "cancelled"
    free = await runner.run("check_availability", "t4", json.dumps({"date": TOMORROW, "hour": "19:00",
                                                                    "num_guests": 4}))
    assert free.result["available"] is True


def test_tool_specs_carry_their_schema_as_a_json_string() -> None:
    specs = {s["toolSpec"]["name"]: s["toolSpec"] for s in tool_specs(20)}
    assert set(specs) == {"get_current_date_time", "create_restaurant_booking", "get_restaurant_booking",
                          "delete_restaurant_booking", "check_availability"}
    schema = json.loads(specs["create_restaurant_booking"]["inputSchema"]["json"])
    assert schema["required"] == ["name", "date", "hour", "num_guests"]
    assert schema["properties"]["num_guests"]["maximum"] == 20


async def test_the_same_request_under_a_new_tool_use_id_does_not_book_twice(bookings, store) -> None:
    # After a stream recovery the model asks again with a fresh toolUseId.
    runner = ToolRunner(bookings, session_id="session-1234")
    first = await runner.run("create_restaurant_booking", "before-recovery", json.dumps(GOOD))
    again = await runner.run("create_restaurant_booking", "after-recovery", json.dumps(GOOD))
    assert again.result["booking"]["booking_id"] == first.result["booking"]["booking_id"]
    # A different request (another time: one session holds one table per slot, tests/abuse) is a new booking.
    other = await runner.run("create_restaurant_booking", "another",
                             json.dumps({**GOOD, "hour": "20:00", "num_guests": 2}))
    assert other.result["booking"]["booking_id"] != first.result["booking"]["booking_id"]
    assert len(await store.bookings.list_by_date(TOMORROW)) == 2
