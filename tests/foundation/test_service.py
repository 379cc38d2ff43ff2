"""Booking rules that depend on the clock and the restaurant's time zone, through the real service + SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime.bookings.service import BookingService, new_booking_id, normalise_booking_id
from runtime.bookings.validation import parse_hour
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.settings import Settings, load_settings
from runtime.stores.sqlite import SQLiteStore


@pytest.fixture
def paris(tmp_path: Path) -> Settings:
    # 11:00-22:00 in Paris, 30-minute slots, 10 seats a slot.
    return load_settings(data_dir=tmp_path, restaurant_timezone="Europe/Paris", seats_per_slot=10,
                         booking_horizon_days=30)


@pytest.fixture
async def make_service(paris: Settings, tmp_path: Path) -> AsyncIterator[Any]:
    store = SQLiteStore(tmp_path / "svc.db")
    await store.start()

    def make(now: datetime) -> BookingService:
        return BookingService(store.bookings, paris, clock=lambda: now)

    yield make
    await store.close()


def request(**changes: Any) -> dict[str, Any]:
    return {"name": "Ada", "date": "2026-12-03", "hour": "19:00", "num_guests": 2, **changes}


async def test_today_counts_only_while_the_slot_is_ahead(make_service: Any) -> None:
    # 18:40 in Paris is 17:40 UTC in December.
    service = make_service(datetime(2026, 12, 3, 17, 40, tzinfo=UTC))
    assert service.now().strftime("%Y-%m-%d %H:%M %Z") == "2026-12-03 18:40 CET"
    booking, created = await service.create(request(hour="19:00"))
    assert created
    assert booking.date == "2026-12-03"
    with pytest.raises(ValidationFailed) as info:
        await service.create(request(hour="18:30"))
    assert info.value.details == {"hour": "18:30 on 2026-12-03 has already passed; please choose a later time."}


async def test_the_restaurant_time_zone_decides_what_today_is(make_service: Any) -> None:
    # 23:30 UTC on Dec 2 is already Dec 3 in Paris: Dec 2 is the past there.
    service = make_service(datetime(2026, 12, 2, 23, 30, tzinfo=UTC))
    with pytest.raises(ValidationFailed) as info:
        await service.create(request(date="2026-12-02", hour="21:00"))
    assert "in the past" in info.value.details["date"]
    assert (await service.create(request(date="2026-12-03", hour="11:00")))[1]


async def test_booking_horizon(make_service: Any) -> None:
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    service = make_service(now)
    last = (now + timedelta(days=30)).date().isoformat()
    assert (await service.create(request(date=last)))[1]
    with pytest.raises(ValidationFailed) as info:
        await service.create(request(date=(now + timedelta(days=31)).date().isoformat()))
    assert info.value.details["date"] == f"We take bookings up to 30 days ahead (until {last})."


async def test_opening_hours_and_slot_boundaries(make_service: Any) -> None:
    service = make_service(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert (await service.create(request(hour="21:30")))[0].hour == "21:30"  # last slot before 22:00
    assert (await service.create(request(hour="11:00")))[0].hour == "11:00"  # first slot
    assert parse_hour("9:30", None) == time(9, 30)  # H:MM is accepted and normalised
    for hour, message in [("22:00", "We take bookings between 11:00 and 21:30."),
                          ("10:30", "We take bookings between 11:00 and 21:30."),
                          ("19:10", "Bookings start every 30 minutes; the nearest times are 19:00 and 19:30."),
                          ("7pm", "Please give the time as HH:MM in 24-hour format, for example 19:30.")]:
        with pytest.raises(ValidationFailed) as info:
            await service.create(request(hour=hour))
        assert info.value.details == {"hour": message}


async def test_availability_and_full_slot_message(make_service: Any) -> None:
    service = make_service(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    await service.create(request(hour="19:00", num_guests=9))
    await service.create(request(hour="19:30", num_guests=10))
    assert await service.availability("2026-12-03", "19:00", 1) == {
        "available": True, "seats_left": 1, "alternatives": []}
    assert await service.availability("2026-12-03", "19:00", 4) == {
        "available": False, "seats_left": 1, "alternatives": ["18:00", "18:30", "20:00"]}
    with pytest.raises(Conflict) as info:
        await service.create(request(hour="19:30", num_guests=2))
    assert info.value.code == "slot_full"
    assert info.value.message == ("Sorry, 19:30 on 2026-12-03 is fully booked. "
                                  "We do have room at 18:30, 20:00, 20:30.")
    with pytest.raises(ValidationFailed):
        await service.availability("2026-12-03", "19:00", 0)


async def test_tool_calls_are_idempotent_by_tool_use_id(make_service: Any) -> None:
    service = make_service(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    first, created = await service.create(request(), idempotency_key="tool:abc-123", session_id="sess-0001")
    again, created_again = await service.create(request(), idempotency_key="tool:abc-123", session_id="sess-0001")
    assert created
    assert not created_again
    assert again == first
    assert first.session_id == "sess-0001"
    with pytest.raises(Conflict) as info:
        await service.create(request(num_guests=3), idempotency_key="tool:abc-123", session_id="sess-0001")
    assert info.value.code == "idempotency_key_reused"


async def test_ids_lookup_and_cancel(make_service: Any) -> None:
    service = make_service(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    booking, _ = await service.create(request())
    spoken = " ".join(booking.booking_id.lower().replace("-", ""))  # "b k 7 q x ..." as a voice model may pass it
    assert (await service.get(spoken)) == booking
    with pytest.raises(NotFound):
        await service.get("BK-ZZZZZZZZZZ")
    cancelled, changed = await service.cancel(booking.booking_id, "  running   late ")
    assert changed
    assert cancelled.cancellation_reason == "running late"
    assert (await service.cancel(booking.booking_id))[1] is False
    with pytest.raises(ValidationFailed):
        await service.cancel(booking.booking_id, "x" * 501)
    with pytest.raises(NotFound):
        await service.cancel("nope")
    assert [b.booking_id for b in await service.list_by_date("2026-12-03")] == [booking.booking_id]


def test_booking_ids_are_unguessable_and_readable() -> None:
    ids = {new_booking_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(normalise_booking_id(i) == i for i in ids)
    assert normalise_booking_id("BK-0000000000") is None  # 0/1/8/9 are not base32 letters
    assert normalise_booking_id("hello") is None
