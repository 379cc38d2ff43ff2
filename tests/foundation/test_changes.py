"""The event seam: what browsers receive for each committed change, locally and from a DynamoDB stream."""

from __future__ import annotations

import ast
import inspect
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

import runtime.changes as changes
from runtime.changes import change_from_stream_record, to_event
from runtime.stores.base import Booking, Change, SessionRecord, Turn

BOOKING = Booking(booking_id="BK-ABCDEFGHIJ", name="Zoë O'Brien", date="2026-12-10", hour="19:00", num_guests=4,
                  status="confirmed", created_at="2026-12-03T09:00:00.000Z", session_id="sess-0001")
CANCELLED = Booking(**{**BOOKING.to_dict(), "status": "cancelled", "cancellation_reason": "ill",
                       "cancelled_at": "2026-12-04T08:00:00.000Z"})
TURN = Turn(session_id="sess-0001", seq=7, role="USER", text="a table for four", created_at="2026-12-03T09:00:01Z",
            turn_id="t-7")
SESSION = SessionRecord(session_id="sess-0001", status="active", created_at="2026-12-03T09:00:00Z",
                        expires_at=1_900_000_000)
ENDED = SessionRecord(**{**SESSION.to_dict(), "status": "ended", "ended_at": "2026-12-03T09:10:00Z",
                         "end_reason": "hangup"})


def test_booking_created_and_cancelled() -> None:
    assert to_event(Change("bookings", None, BOOKING.to_dict())) == (
        "/restaurant-booking/BK-ABCDEFGHIJ",
        {"type": "booking.created", "eventId": "booking:BK-ABCDEFGHIJ:created", "booking": BOOKING.to_dict()},
    )
    assert to_event(Change("bookings", BOOKING.to_dict(), CANCELLED.to_dict())) == (
        "/restaurant-booking/BK-ABCDEFGHIJ",
        {"type": "booking.cancelled", "eventId": "booking:BK-ABCDEFGHIJ:cancelled", "booking": CANCELLED.to_dict()},
    )


def test_turn_added_and_session_lifecycle() -> None:
    assert to_event(Change("conversations", None, TURN.to_dict())) == (
        "/conversations/sess-0001",
        {"type": "turn.added", "eventId": "turn:sess-0001:7", "turn": TURN.to_dict()},
    )
    assert to_event(Change("sessions", None, SESSION.to_dict())) == (
        "/conversations/sess-0001",
        {"type": "session.started", "eventId": "session:sess-0001:started", "session": SESSION.to_dict()},
    )
    channel, payload = to_event(Change("sessions", SESSION.to_dict(), ENDED.to_dict()))  # type: ignore[misc]
    assert channel == "/conversations/sess-0001"
    assert payload["type"] == "session.ended"
    assert payload["eventId"] == "session:sess-0001:ended"
    assert payload["session"]["end_reason"] == "hangup"


@pytest.mark.parametrize("change", [
    Change("bookings", BOOKING.to_dict(), None),  # TTL / delete
    Change("conversations", TURN.to_dict(), None),
    Change("sessions", SESSION.to_dict(), None),
    Change("bookings", CANCELLED.to_dict(), CANCELLED.to_dict()),  # no transition
    Change("sessions", SESSION.to_dict(), {**SESSION.to_dict(), "usage": {"input": 3}}),  # usage update
    Change("sessions", ENDED.to_dict(), ENDED.to_dict()),
    Change("bookings", None, {"pk": "SLOT#2026-12-10#19:00", "sk": "SLOT", "kind": "slot", "booked": 4}),
    Change("bookings", None, {"pk": "IDEMPOTENCY#k", "sk": "IDEMPOTENCY", "kind": "idempotency",
                              "booking_id": "BK-ABCDEFGHIJ", "request_hash": "h"}),
    Change("conversations", None, {"pk": "SESSION#s", "sk": "TURNID#t", "kind": "turn_id", "seq": 1}),
    Change("bookings", None, {"pk": "DAY#2026-12-10", "sk": "19:00#x", "kind": "booking_day", **BOOKING.to_dict()}),
    Change("bookings", None, {"unexpected": "shape"}),
])
def test_non_events(change: Change) -> None:
    assert to_event(change) is None


def test_event_ids_are_deterministic_and_payloads_are_json() -> None:
    first = to_event(Change("bookings", None, BOOKING.to_dict()))
    second = to_event(Change("bookings", None, dict(reversed(BOOKING.to_dict().items()))))
    assert first == second
    assert json.loads(json.dumps(first[1], ensure_ascii=False)) == first[1]  # type: ignore[index]


def test_module_needs_only_the_stdlib_and_the_store_records() -> None:
    """The cloud Lambda bundles runtime/changes.py alone (plus runtime/stores/base.py)."""
    tree = ast.parse(inspect.getsource(changes))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    allowed = {"__future__", "collections.abc", "decimal", "typing", "runtime.stores.base"}
    assert imported <= allowed


def _stream_records(client: Any, table: str) -> list[dict[str, Any]]:
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]  # type: ignore[no-any-return]


async def test_dynamodb_stream_gives_the_same_events_as_local_capture() -> None:
    """What the cloud Lambda computes from the stream equals what local change capture emits."""
    from runtime.stores.dynamodb import DynamoDBStore

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        store = DynamoDBStore(booking_table="B", chat_history_table="C", session_table="S", client=client,
                              create_tables=True, max_concurrency=1)
        await store.start()
        local: list[tuple[str, dict[str, Any]]] = []

        async def capture(change: Change) -> None:
            event = to_event(change)
            if event is not None:
                local.append(event)

        store.subscribe(capture)
        await store.bookings.create(BOOKING, seats_per_slot=40, idempotency_key="key-1", request_hash="h")
        await store.bookings.cancel(BOOKING.booking_id, "ill", now="2026-12-04T08:00:00.000Z")
        await store.conversations.append("sess-0001", "USER", "hello", turn_id="t-1", now="2026-12-03T09:00:01Z")
        await store.sessions.put(SESSION)
        await store.sessions.put(ENDED)

        cloud = []
        for table, kind in (("B", "bookings"), ("C", "conversations"), ("S", "sessions")):
            for record in _stream_records(client, table):
                event = to_event(change_from_stream_record(record, kind))  # type: ignore[arg-type]
                if event is not None:
                    cloud.append(event)
        await store.close()

    assert sorted(json.dumps(e, sort_keys=True) for e in cloud) == sorted(json.dumps(e, sort_keys=True)
                                                                          for e in local)
    assert [p["type"] for _, p in local] == ["booking.created", "booking.cancelled", "turn.added",
                                             "session.started", "session.ended"]
