"""One contract for every store: SQLite (temp file) and DynamoDB (moto), run by the same tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from runtime.bookings.service import new_booking_id
from runtime.stores.base import (
    Booking,
    BookingNotFound,
    CapacityExceeded,
    Change,
    IdempotencyMismatch,
    SessionRecord,
    Store,
)

from .conftest import DAY

CREATED = "2026-12-03T09:00:00.000Z"


def booking(name: str = "Ada Lovelace", hour: str = "19:00", guests: int = 2, day: str = DAY) -> Booking:
    return Booking(booking_id=new_booking_id(), name=name, date=day, hour=hour, num_guests=guests,
                   status="confirmed", created_at=CREATED)


class Recorder:
    """A change listener that also proves each change is already committed when it is told."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.changes: list[Change] = []
        self.visible: list[bool] = []

    async def __call__(self, change: Change) -> None:
        self.changes.append(change)
        if change.table == "bookings" and change.new is not None:
            stored = await self.store.bookings.get(change.new["booking_id"])
            self.visible.append(stored is not None and stored.status == change.new["status"])


async def test_create_get_list_cancel_round_trip(store: Store) -> None:
    first = booking("José Ñúñez", "19:00", 4)
    second = booking("محمد علي", "12:30", 2)
    other_day = booking("O'Brien", "19:00", 2, day="2026-12-11")
    for b in (first, second, other_day):
        stored, created = await store.bookings.create(b, seats_per_slot=40, idempotency_key=None,
                                                      request_hash="h-" + b.booking_id)
        assert created
        assert stored == b

    assert await store.bookings.get(first.booking_id) == first
    assert await store.bookings.get("BK-NOSUCHXXXX") is None
    assert [b.booking_id for b in await store.bookings.list_by_date(DAY)] == [second.booking_id, first.booking_id]
    assert await store.bookings.seats_taken(DAY, "19:00") == 4

    cancelled, changed = await store.bookings.cancel(first.booking_id, "plans changed", now="2026-12-04T10:00:00.000Z")
    assert changed
    assert cancelled == replace(first, status="cancelled", cancellation_reason="plans changed",
                                cancelled_at="2026-12-04T10:00:00.000Z")
    assert await store.bookings.get(first.booking_id) == cancelled
    assert await store.bookings.seats_taken(DAY, "19:00") == 0

    again, changed = await store.bookings.cancel(first.booking_id, "other reason", now="2026-12-05T10:00:00.000Z")
    assert not changed
    assert again == cancelled
    with pytest.raises(BookingNotFound):
        await store.bookings.cancel("BK-NOSUCHXXXX", None, now=CREATED)


async def test_idempotency_replay_and_mismatch(store: Store) -> None:
    recorder = Recorder(store)
    store.subscribe(recorder)
    original = booking(guests=3)
    _stored, created = await store.bookings.create(original, seats_per_slot=40, idempotency_key="key-1",
                                                  request_hash="hash-A")
    assert created
    retry = booking(guests=3)  # a retry gets a fresh id from the service; the store must return the first
    replayed, created = await store.bookings.create(retry, seats_per_slot=40, idempotency_key="key-1",
                                                    request_hash="hash-A")
    assert not created
    assert replayed == original
    with pytest.raises(IdempotencyMismatch):
        await store.bookings.create(booking(guests=5), seats_per_slot=40, idempotency_key="key-1",
                                    request_hash="hash-B")
    assert await store.bookings.get(retry.booking_id) is None
    assert await store.bookings.seats_taken(DAY, "19:00") == 3
    assert len(recorder.changes) == 1  # only the first create was news


async def test_fifty_concurrent_creates_never_overbook(store: Store) -> None:
    attempts = [booking(f"Guest {chr(65 + i % 26)}", "20:00", 3) for i in range(50)]
    results = await asyncio.gather(
        *(store.bookings.create(b, seats_per_slot=40, idempotency_key=None, request_hash=b.booking_id)
          for b in attempts),
        return_exceptions=True,
    )
    confirmed = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, CapacityExceeded)]
    assert len(confirmed) == 13  # 13 parties of 3 fit in 40 seats, the 14th would need 42
    assert len(refused) == 37
    assert all(r.seats_left == 1 for r in refused)
    assert await store.bookings.seats_taken(DAY, "20:00") == 39
    listed = await store.bookings.list_by_date(DAY)
    assert sorted(b.booking_id for b in listed) == sorted(b.booking_id for b, _ in confirmed)


async def test_party_bigger_than_the_slot_is_refused(store: Store) -> None:
    with pytest.raises(CapacityExceeded) as info:
        await store.bookings.create(booking(guests=12), seats_per_slot=10, idempotency_key=None, request_hash="x")
    assert info.value.seats_left == 10


async def test_cancel_frees_seats_for_the_next_guest(store: Store) -> None:
    big = booking(guests=38)
    await store.bookings.create(big, seats_per_slot=40, idempotency_key=None, request_hash="a")
    with pytest.raises(CapacityExceeded) as info:
        await store.bookings.create(booking(guests=4), seats_per_slot=40, idempotency_key=None, request_hash="b")
    assert info.value.seats_left == 2
    await store.bookings.cancel(big.booking_id, None, now=CREATED)
    _, created = await store.bookings.create(booking(guests=4), seats_per_slot=40, idempotency_key=None,
                                             request_hash="c")
    assert created
    assert await store.bookings.seats_taken(DAY, "19:00") == 4


async def test_conversation_turns_are_ordered_and_idempotent(store: Store) -> None:
    recorder = Recorder(store)
    store.subscribe(recorder)
    turns = await asyncio.gather(*(
        store.conversations.append("sess-0001", "USER" if i % 2 else "ASSISTANT", f"line {i}",
                                   turn_id=f"t{i}", now=CREATED)
        for i in range(12)
    ))
    assert sorted(t.seq for t in turns) == list(range(1, 13))
    again = await store.conversations.append("sess-0001", "USER", "line 3 (resent)", turn_id="t3", now=CREATED)
    assert again == next(t for t in turns if t.turn_id == "t3")
    other = await store.conversations.append("sess-0002", "USER", "hello", turn_id="t3", now=CREATED)
    assert other.seq == 1

    listed = await store.conversations.list("sess-0001")
    assert [t.seq for t in listed] == list(range(1, 13))
    assert {t.turn_id for t in listed} == {f"t{i}" for i in range(12)}
    assert await store.conversations.list("sess-none") == []
    assert len(recorder.changes) == 13  # 12 + the other session; the resent t3 emitted nothing
    assert all(c.table == "conversations" and c.old is None for c in recorder.changes)


async def test_sessions_put_get_and_changes(store: Store) -> None:
    recorder = Recorder(store)
    store.subscribe(recorder)
    expires = int(time.time()) + 3600
    record = SessionRecord(session_id="sess-abc1", status="active", created_at=CREATED, expires_at=expires,
                           transport="websocket", engine="local")
    await store.sessions.put(record)
    assert await store.sessions.get("sess-abc1") == record
    ended = replace(record, status="ended", ended_at="2026-12-03T09:05:00.000Z", end_reason="hangup",
                    usage={"input_tokens": 120, "output_tokens": 80})
    await store.sessions.put(ended)
    await store.sessions.put(ended)  # unchanged: no change event
    assert await store.sessions.get("sess-abc1") == ended
    assert await store.sessions.get("sess-none") is None
    assert [(c.old, c.new) for c in recorder.changes] == [(None, record.to_dict()),
                                                           (record.to_dict(), ended.to_dict())]

    expired = replace(record, session_id="sess-old1", expires_at=int(time.time()) - 10)
    await store.sessions.put(expired)
    assert await store.sessions.get("sess-old1") is None  # TTL deletion is lazy; reads hide expired records


async def test_changes_follow_commits_only(store: Store) -> None:
    recorder = Recorder(store)
    unsubscribe = store.subscribe(recorder)
    b = booking(guests=40)
    await store.bookings.create(b, seats_per_slot=40, idempotency_key="k", request_hash="h")
    with pytest.raises(CapacityExceeded):
        await store.bookings.create(booking(guests=1), seats_per_slot=40, idempotency_key=None, request_hash="x")
    await store.bookings.create(booking(guests=40), seats_per_slot=40, idempotency_key="k", request_hash="h")
    await store.bookings.cancel(b.booking_id, None, now=CREATED)
    await store.bookings.cancel(b.booking_id, None, now=CREATED)

    assert [(c.old is None, c.new["status"]) for c in recorder.changes if c.new] == [(True, "confirmed"),
                                                                                    (False, "cancelled")]
    assert recorder.visible == [True, True]  # each listener call saw the committed row
    unsubscribe()
    await store.bookings.create(booking(hour="12:00"), seats_per_slot=40, idempotency_key=None, request_hash="y")
    assert len(recorder.changes) == 2


async def test_a_failing_listener_does_not_fail_the_write(store: Store) -> None:
    async def broken(change: Change) -> None:
        raise RuntimeError("gateway down")

    recorder = Recorder(store)
    store.subscribe(broken)
    store.subscribe(recorder)
    b = booking()
    stored, created = await store.bookings.create(b, seats_per_slot=40, idempotency_key=None, request_hash="h")
    assert created
    assert await store.bookings.get(b.booking_id) == stored
    assert len(recorder.changes) == 1


async def test_ready(store: Store) -> None:
    assert await store.ready()


async def test_turns_past_retention_are_hidden(store: Store) -> None:
    # Retention is 90 days from the turn's time; DynamoDB deletes lazily, so reads must filter.
    await store.conversations.append("sess-old-1", "USER", "long ago", turn_id="t1", now="2020-01-01T00:00:00Z")
    assert await store.conversations.list("sess-old-1") == []
