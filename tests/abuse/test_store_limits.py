"""The booking abuse limits as each store enforces them: atomic, shared by every worker (one SQLite file)
and every host (one DynamoDB table, here moto), given back on cancel, and never charged twice for a retry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from runtime.bookings.service import new_booking_id
from runtime.changes import deserialize_item as plain
from runtime.changes import to_event
from runtime.stores.base import Booking, CapacityExceeded, Change, HolderLimitExceeded, HolderLimits, Store

from .conftest import dynamodb_host

DAY, OTHER_DAY = "2026-12-10", "2026-12-11"
CREATED = "2026-12-03T09:00:00.000Z"
NOW = ("2026-12-03", "09:00")
LIMITS = HolderLimits(per_slot=1, per_day=2, seats=30, now=NOW)
ADDR, SESSION = "addr:198.51.100.9", "session:call-1"


def booking(hour: str = "19:00", guests: int = 2, day: str = DAY) -> Booking:
    return Booking(booking_id=new_booking_id(), name="Guest", date=day, hour=hour, num_guests=guests,
                   status="confirmed", created_at=CREATED)


async def book(store: Store, b: Booking, holders: list[str], limits: HolderLimits = LIMITS,
               key: str | None = None) -> tuple[Booking, bool]:
    return await store.bookings.create(b, seats_per_slot=40, idempotency_key=key, request_hash="h-" + b.name,
                                       holders=holders, limits=limits)


async def refused(store: Store, b: Booking, holders: list[str], limits: HolderLimits = LIMITS) -> HolderLimitExceeded:
    with pytest.raises(HolderLimitExceeded) as caught:
        await book(store, b, holders, limits)
    assert await store.bookings.get(b.booking_id) is None  # nothing of a refused booking is stored
    return caught.value


async def test_one_booking_per_slot_then_refused(store: Store) -> None:
    await book(store, booking("19:00"), [ADDR])
    exc = await refused(store, booking("19:00"), [ADDR])
    assert (exc.limit, exc.allowed, exc.held, exc.holder) == ("per_slot", 1, 1, ADDR)
    assert await store.bookings.seats_taken(DAY, "19:00") == 2
    await book(store, booking("19:00"), ["addr:203.0.113.5"])  # another client is not affected


async def test_bookings_per_day(store: Store) -> None:
    await book(store, booking("12:00"), [ADDR])
    await book(store, booking("19:00"), [ADDR])
    exc = await refused(store, booking("20:00"), [ADDR])
    assert (exc.limit, exc.allowed, exc.held) == ("per_day", 2, 2)
    await book(store, booking("20:00", day=OTHER_DAY), [ADDR])  # the next day has its own allowance


async def test_seats_held_in_future_bookings(store: Store) -> None:
    await book(store, booking("19:00", 20), [ADDR])
    exc = await refused(store, booking("19:00", 12, day=OTHER_DAY), [ADDR])
    assert (exc.limit, exc.allowed, exc.held) == ("seats", 30, 20)
    await book(store, booking("19:00", 10, day=OTHER_DAY), [ADDR])  # exactly 30 fits


async def test_bookings_that_have_started_no_longer_hold_seats(store: Store) -> None:
    await book(store, booking("12:00", 20), [ADDR])
    later = HolderLimits(per_slot=1, per_day=2, seats=30, now=(DAY, "12:00"))  # the lunch has started
    await book(store, booking("19:00", 20), [ADDR], later)
    exc = await refused(store, booking("20:00", 20, day=OTHER_DAY), [ADDR], later)
    assert (exc.limit, exc.held) == ("seats", 20)


async def test_a_cancellation_gives_the_allowance_back(store: Store) -> None:
    first, _ = await book(store, booking("19:00"), [ADDR, SESSION])
    await refused(store, booking("19:00"), [ADDR])
    await refused(store, booking("19:00"), [SESSION])
    await store.bookings.cancel(first.booking_id, None, now=CREATED)
    await book(store, booking("19:00"), [ADDR])


async def test_a_booking_counts_against_each_of_its_holders(store: Store) -> None:
    await book(store, booking("19:00"), [ADDR, SESSION])
    # the same call from another address, and another call from the same address: both refused
    assert (await refused(store, booking("19:00"), ["addr:203.0.113.5", SESSION])).holder == SESSION
    assert (await refused(store, booking("19:00"), [ADDR, "session:call-2"])).holder == ADDR


async def test_an_idempotent_retry_is_not_counted_again(store: Store) -> None:
    original, created = await book(store, booking("19:00"), [ADDR], key="retry-1")
    assert created
    # The client is now at its per-slot limit; the retry with the same key still gets its booking back.
    again, created = await book(store, booking("19:00"), [ADDR], key="retry-1")
    assert (again, created) == (original, False)
    await book(store, booking("20:00"), [ADDR])  # per day: the retry did not use the second booking
    await refused(store, booking("21:00"), [ADDR])


async def test_no_limits_records_but_does_not_refuse(store: Store) -> None:
    for hour in ("19:00", "19:00", "19:00"):
        await book(store, booking(hour), [ADDR], HolderLimits(0, 0, 0, NOW))
    await refused(store, booking("20:00"), [ADDR])  # the unlimited bookings still count once limits apply


async def test_capacity_still_refuses_first_comers_of_a_full_slot(store: Store) -> None:
    await book(store, booking("19:00", 20), ["addr:a"])
    await book(store, booking("19:00", 20), ["addr:b"])
    with pytest.raises(CapacityExceeded):
        await book(store, booking("19:00", 2), ["addr:c"])
    await book(store, booking("20:00", 2), ["addr:c"])  # a refusal by capacity charged nothing


async def test_limits_hold_across_workers_or_hosts_under_a_burst(stores: Callable[[], Store]) -> None:
    """Two workers (two connections on one SQLite file) or two hosts (two DynamoDB clients on one table)
    receive one client's burst at once: exactly what the limits allow is booked, wherever it landed."""
    workers = [stores(), stores()]
    for worker in workers:
        await worker.start()
    attempts = [booking(hour, 4, day) for day in (DAY, OTHER_DAY, "2026-12-12")
                for hour in ("12:00", "12:00", "19:00", "19:00", "20:00")]
    results = await asyncio.gather(*(book(workers[i % 2], b, [ADDR]) for i, b in enumerate(attempts)),
                                   return_exceptions=True)
    made = [r[0] for r in results if isinstance(r, tuple)]
    assert all(isinstance(r, tuple | HolderLimitExceeded) for r in results), results
    # 2 per day x 3 days = 6 bookings of 4 guests = 24 seats (under 30): the per-day limit is what binds
    assert len(made) == 6
    for day in (DAY, OTHER_DAY, "2026-12-12"):
        listed = await workers[1].bookings.list_by_date(day)
        assert len(listed) == 2
        assert len({b.hour for b in listed}) == 2  # and never two in one slot


async def test_dynamodb_ledgers_are_bookkeeping_that_expires() -> None:
    """Ledger and holders items carry a kind the stream publisher skips, and a TTL past the booking's date so
    client addresses are not kept longer than the bookings need them."""
    with mock_aws():
        store = dynamodb_host(threading.Lock())
        await store.start()
        made, _ = await book(store, booking("19:00"), [ADDR])
        client = boto3.client("dynamodb", region_name="us-east-1")
        ledger = plain(client.get_item(TableName="Bookings", Key={"pk": {"S": f"HOLDER#{ADDR}"},
                                                                   "sk": {"S": "HOLDER"}})["Item"])
        holders = plain(client.get_item(TableName="Bookings", Key={"pk": {"S": f"BOOKING#{made.booking_id}"},
                                                                    "sk": {"S": "HOLDERS"}})["Item"])
        assert ledger is not None
        assert holders is not None
        two_days_after = int(datetime(2026, 12, 12, tzinfo=UTC).timestamp())  # DAY is 2026-12-10
        assert ledger["expires_at"] == holders["expires_at"] == two_days_after
        assert ledger["held"] == {made.booking_id: {"d": DAY, "h": "19:00", "n": 2}}
        for item in (ledger, holders):
            assert to_event(Change("bookings", None, item)) is None
        await store.close()
