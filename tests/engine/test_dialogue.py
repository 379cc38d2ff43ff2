"""The dialogue manager on text, with every tool call executed by the real ToolRunner + BookingService on
SQLite: what a guest experiences, minus the audio. Bookings are checked in the store, not in replies."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from runtime.bookings.service import BookingService
from runtime.engine.dialogue import DialogueManager
from runtime.engine.parsing import MONTHS, ordinal_words
from runtime.settings import Settings, load_settings
from runtime.speech.tools import ToolRunner
from runtime.stores.sqlite import SQLiteStore


class Guest:
    def __init__(self, settings: Settings, bookings: BookingService) -> None:
        self.dialogue = DialogueManager(restaurant=settings.restaurant_name, opening=settings.opening_time,
                                        closing=settings.closing_time, max_party=settings.max_party_size,
                                        fallback_today=lambda: datetime.now(settings.tz).date())
        self.runner = ToolRunner(bookings, session_id="dialogue-test")
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def _tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, args))
        return (await self.runner.run(name, str(uuid.uuid4()), json.dumps(args))).result

    async def says(self, text: str) -> str:
        reply = await self.dialogue.respond(text, self._tool)
        assert reply
        return reply


@pytest.fixture
def guest(settings: Settings, bookings: BookingService) -> Guest:
    return Guest(settings, bookings)


def _tomorrow(settings: Settings) -> date:
    return datetime.now(settings.tz).date() + timedelta(days=1)


async def test_booking_in_one_breath_then_name_then_yes(guest: Guest, bookings: BookingService,
                                                        settings: Settings) -> None:
    reply = await guest.says("i would like to book a table for four people tomorrow at seven pm")
    assert "name" in reply
    reply = await guest.says("my name is alice smith")
    assert "four people" in reply
    assert "seven p.m." in reply
    assert "Alice Smith" in reply
    assert "book it" in reply
    reply = await guest.says("yes please")
    stored = await bookings.list_by_date(_tomorrow(settings).isoformat())
    assert [(b.name, b.hour, b.num_guests, b.status) for b in stored] == [("Alice Smith", "19:00", 4, "confirmed")]
    spelled = " ".join(stored[0].booking_id.removeprefix("BK-"))
    assert spelled[:7] in reply.replace(",", "")  # the id is read back symbol by symbol
    assert guest.calls[0][0] == "get_current_date_time"  # today comes from the tool, like Nova


async def test_slots_asked_one_by_one_and_corrected_before_booking(guest: Guest, bookings: BookingService,
                                                                   settings: Settings) -> None:
    assert "What day" in await guest.says("hi i'd like to make a reservation")
    d = _tomorrow(settings) + timedelta(days=2)
    assert "time" in await guest.says(f"{MONTHS[d.month - 1]} the {ordinal_words(d.day)}")
    assert "How many" in await guest.says("half past eight")
    assert "name" in await guest.says("three")
    assert "three people" in await guest.says("bob jones")
    reply = await guest.says("actually make it five people")
    assert "five people" in reply
    assert "eight thirty p.m." in reply
    reply = await guest.says("no")
    assert "change" in reply
    reply = await guest.says("change the time to nine pm")
    assert "nine p.m." in reply
    assert "five people" in reply
    await guest.says("yes")
    stored = await bookings.list_by_date(d.isoformat())
    assert [(b.name, b.hour, b.num_guests) for b in stored] == [("Bob Jones", "21:00", 5)]


async def test_repeat_and_out_of_domain_change_nothing(guest: Guest, bookings: BookingService,
                                                       settings: Settings) -> None:
    first = await guest.says("book a table for two tomorrow at seven pm")
    assert await guest.says("sorry can you say that again") == first
    reply = await guest.says("what's the weather like in paris")
    assert reply.startswith("Sorry, I can only help with table bookings")
    assert "name" in reply  # and it goes back to the open question
    assert [name for name, _ in guest.calls] == ["get_current_date_time"]
    assert await bookings.list_by_date(_tomorrow(settings).isoformat()) == []


async def test_time_outside_opening_hours_is_refused_politely(guest: Guest) -> None:
    reply = await guest.says("a table for two tomorrow at eleven pm")
    assert "until ten p.m." in reply


async def test_full_slot_offers_alternatives_and_books_one(tmp_path: Any, engine_cache: Any) -> None:
    settings = load_settings(data_dir=engine_cache, sqlite_path=tmp_path / "small.db", seats_per_slot=4)
    store = SQLiteStore(settings.sqlite_file)
    await store.start()
    try:
        bookings = BookingService(store.bookings, settings)
        day = _tomorrow(settings)
        await bookings.create({"name": "Early Bird", "date": day.isoformat(), "hour": "19:00", "num_guests": 4})
        guest = Guest(settings, bookings)
        await guest.says("table for three tomorrow at seven pm under the name carol white")
        reply = await guest.says("yes")
        assert "fully booked" in reply
        assert "Which would you prefer" in reply
        assert "seven p.m." not in reply.split("offer", 1)[1]
        reply = await guest.says("seven thirty")
        assert "seven thirty p.m." in reply
        await guest.says("yes")
        stored = {(b.name, b.hour) for b in await bookings.list_by_date(day.isoformat())}
        assert ("Carol White", "19:30") in stored
    finally:
        await store.close()


async def test_cancel_by_id_asks_for_confirmation(guest: Guest, bookings: BookingService,
                                                  settings: Settings) -> None:
    booking, _ = await bookings.create({"name": "Dana Scott", "date": _tomorrow(settings).isoformat(),
                                        "hour": "20:00", "num_guests": 2})
    spoken = " ".join(c.lower() for c in booking.booking_id.removeprefix("BK-"))
    spoken = spoken.replace("2", "two").replace("3", "three").replace("4", "four").replace("5", "five") \
        .replace("6", "six").replace("7", "seven")
    assert "booking number" in await guest.says("i want to cancel my booking")
    assert guest.dialogue.search == "bookingid"  # the recogniser switches to the id grammar
    reply = await guest.says(f"b k {spoken}")
    assert "Dana Scott" in reply
    assert "cancel it" in reply
    assert "kept" in await guest.says("no")
    assert (await bookings.get(booking.booking_id)).status == "confirmed"
    await guest.says(f"cancel booking b k {spoken}")
    reply = await guest.says("yes")
    assert "has been cancelled" in reply
    assert (await bookings.get(booking.booking_id)).status == "cancelled"


async def test_lookup_of_unknown_id_asks_again(guest: Guest) -> None:
    await guest.says("can you look up my booking")
    reply = await guest.says("b k a a a a b b b b c c")
    assert "couldn't find" in reply
    assert guest.dialogue.search == "bookingid"



async def test_availability_question_checks_the_slot_then_continues_the_booking(guest: Guest) -> None:
    reply = await guest.says("do you have a table available tomorrow at seven pm")
    assert [name for name, _ in guest.calls] == ["get_current_date_time", "check_availability"]
    assert guest.calls[1][1]["hour"] == "19:00"
    assert reply.startswith("Yes, we have a table at seven p.m.")
    assert "How many people" in reply


async def test_guest_can_leave_the_booking_number_question(guest: Guest) -> None:
    await guest.says("i want to cancel my booking")
    reply = await guest.says("never mind")
    assert "anything else" in reply
    assert guest.dialogue.search == "domain"


@pytest.mark.parametrize("opening", ["hi there", "hello", "good evening", "how are you", "hi how are you doing",
                                     "hello there good afternoon"])
async def test_a_greeting_or_small_talk_gets_a_friendly_answer_and_the_booking_question(guest: Guest,
                                                                                         opening: str) -> None:
    reply = await guest.says(opening)
    assert not reply.startswith("Sorry"), reply
    assert "Would you like to book a table?" in reply
    assert guest.calls == []  # nothing to look up for a pleasantry


async def test_small_talk_answer_mirrors_the_greeting(guest: Guest) -> None:
    assert (await guest.says("good evening")).startswith("Good evening!")
    assert (await guest.says("how are you")).startswith("I'm very well")


async def test_small_talk_in_the_middle_of_a_booking_repeats_the_pending_question(guest: Guest) -> None:
    assert "What day" in await guest.says("i would like to book a table")
    reply = await guest.says("hello")
    assert reply == "Hello there! What day would you like to come?"


async def test_a_greeting_with_the_request_is_the_request(guest: Guest) -> None:
    reply = await guest.says("hi there i would like to book a table please")
    assert "What day" in reply


async def test_out_of_domain_is_still_declined(guest: Guest) -> None:
    assert (await guest.says("what's the weather like in paris")).startswith("Sorry, I can only help")
