"""DynamoDB store (AWS mode), boto3 behind a thread pool so no call ever blocks the event loop.

Key schema - the platform code creates the tables from these constants (``TABLES`` /
``table_spec``), so keep them the single source of truth:

Every table: ``pk`` (S, HASH) + ``sk`` (S, RANGE), PAY_PER_REQUEST, SSE on, streams
``NEW_AND_OLD_IMAGES``, TTL on ``expires_at`` (Number, epoch seconds). Every item has ``kind`` so the
stream publisher (``runtime.changes``) can skip bookkeeping items.

Bookings table (``BOOKING_TABLE``)::

    booking      pk=BOOKING#<bookingId>  sk=BOOKING                           kind=booking      + Booking fields
    day listing  pk=DAY#<date>           sk=<HH:MM>#<createdAt>#<bookingId>   kind=booking_day  + Booking fields
    slot counter pk=SLOT#<date>#<HH:MM>  sk=SLOT                              kind=slot         booked (N)
    idempotency  pk=IDEMPOTENCY#<key>    sk=IDEMPOTENCY                       kind=idempotency  booking_id,
                                                                              request_hash, expires_at
    ledger       pk=HOLDER#<holder>      sk=HOLDER                            kind=holder       held (M: booking
                                                                              id -> {d, h, n}), ver (N), expires_at
    holders      pk=BOOKING#<bookingId>  sk=HOLDERS                           kind=booking_holders  holders (L),
                                                                              expires_at

No secondary index: the staff's day list is a strongly consistent Query on ``DAY#<date>``, whose copy of
the booking is written and cancelled in the same transactions as the booking item itself.

Conversations table (``CHAT_HISTORY_TABLE``)::

    turn         pk=SESSION#<sessionId>  sk=TURN#<seq, 10 digits>  kind=turn     + Turn fields, expires_at
    turn guard   pk=SESSION#<sessionId>  sk=TURNID#<turnId>        kind=turn_id  seq, expires_at

Sessions table (``SESSION_TABLE``)::

    session      pk=SESSION#<sessionId>  sk=STATE                  kind=session  + SessionRecord fields

Atomicity: a booking is one ``TransactWriteItems`` - conditional counter update
(``booked <= seats - n``), conditional put of the booking and, with a key, of a *persistent*
idempotency item. ``ClientRequestToken`` is deliberately not relied on: it only lasts 10 minutes and
moto does not emulate it; the idempotency item makes replays exact for as long as it lives (7 days).
A turn's ``seq`` is allocated by a conditional put of ``TURN#<seq>`` together with its turn-id guard.

Booking abuse limits (docs/abuse-limits.md) are shared by every host through the holders' ledger items:
a create reads each holder's ledger, checks the limits, and puts the ledger back in the same transaction
on the condition that its ``ver`` is still the one read (optimistic locking: a concurrent create of the
same holder on any host makes one of the two retry on fresh counts). A cancel removes the booking from the
ledgers named by its ``holders`` item. Ledger and holders items expire by TTL two days after the last
booking they name, so client addresses are not kept beyond the bookings' dates.

Concurrency under moto: moto's ``transact_write_items`` rolls a failed transaction back by restoring a
deep copy of the whole table taken when it began, which silently discards other threads' writes made
meanwhile. Tests and the bench therefore pass ``max_concurrency=1`` (calls still interleave at the
asyncio level; conditions are still what refuse the overbooking). Real DynamoDB isolates transactions
itself and answers ``TransactionConflict``, which is retried here with jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runtime.changes import KIND_ATTR, deserialize_item
from runtime.stores.base import (
    Booking,
    BookingNotFound,
    CapacityExceeded,
    Change,
    ChangeListener,
    HolderLimitExceeded,
    HolderLimits,
    Holding,
    IdempotencyMismatch,
    Role,
    SessionRecord,
    StoreError,
    Turn,
    check_holder_limits,
)
from runtime.stores.listeners import Listeners

log = logging.getLogger("runtime.stores.dynamodb")

# --- schema constants (imported or copied by platform/) -------------------------------------------
PK = "pk"
SK = "sk"
TTL_ATTR = "expires_at"
KIND = KIND_ATTR
STREAM_VIEW = "NEW_AND_OLD_IMAGES"
IDEMPOTENCY_TTL_SECONDS = 7 * 86400
HOLDER_TTL_MARGIN_SECONDS = 2 * 86400  # past the booking's date in any time zone
SEQ_DIGITS = 10

KEY_SCHEMA = [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": PK, "AttributeType": "S"}, {"AttributeName": SK, "AttributeType": "S"}]
TABLES = ("bookings", "conversations", "sessions")

_serializer = TypeSerializer()
_RECORD_FIELDS = {
    "bookings": set(Booking.__dataclass_fields__),
    "conversations": set(Turn.__dataclass_fields__),
    "sessions": set(SessionRecord.__dataclass_fields__),
}


def table_spec(name: str) -> dict[str, Any]:
    """``create_table`` arguments for any of our tables (used when ``create_tables`` is on)."""
    return {
        "TableName": name,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
        "SSESpecification": {"Enabled": True},
    }


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items()}


def _plain(item: dict[str, Any] | None) -> dict[str, Any] | None:
    return deserialize_item(item)


def _record(table: str, item: dict[str, Any]) -> dict[str, Any]:
    plain = _plain(item) or {}
    return {k: v for k, v in plain.items() if k in _RECORD_FIELDS[table]}


def _booking_key(booking_id: str) -> dict[str, Any]:
    return _item({PK: f"BOOKING#{booking_id}", SK: "BOOKING"})


def _slot_key(date: str, hour: str) -> dict[str, Any]:
    return _item({PK: f"SLOT#{date}#{hour}", SK: "SLOT"})


def _day_key(booking: Booking) -> dict[str, Any]:
    return _item({PK: f"DAY#{booking.date}", SK: f"{booking.hour}#{booking.created_at}#{booking.booking_id}"})


def _idem_key(key: str) -> dict[str, Any]:
    return _item({PK: f"IDEMPOTENCY#{key}", SK: "IDEMPOTENCY"})


def _holder_key(holder: str) -> dict[str, Any]:
    return _item({PK: f"HOLDER#{holder}", SK: "HOLDER"})


def _holders_key(booking_id: str) -> dict[str, Any]:
    return _item({PK: f"BOOKING#{booking_id}", SK: "HOLDERS"})


def _date_expiry(date: str) -> int:
    return int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp()) + HOLDER_TTL_MARGIN_SECONDS


class _Ledger:
    """A holder's ledger item as read: its holdings and the version a conditional write must still see."""

    def __init__(self, holder: str, item: dict[str, Any] | None) -> None:
        plain = _plain(item) or {}
        self.holder = holder
        self.version: int | None = int(plain["ver"]) if "ver" in plain else None
        self.held = {bid: Holding(bid, str(v["d"]), str(v["h"]), int(v["n"]))
                     for bid, v in (plain.get("held") or {}).items()}

    def holdings(self, today_floor: str) -> list[Holding]:
        return [h for h in self.held.values() if h.date >= today_floor]

    def write(self, table: str, held: list[Holding]) -> dict[str, Any]:
        """The conditional Put of this ledger holding ``held`` (next version)."""
        item = {**_holder_key(self.holder), **_item({
            KIND: "holder", "ver": (self.version or 0) + 1,
            "held": {h.booking_id: {"d": h.date, "h": h.hour, "n": h.num_guests} for h in held},
            TTL_ATTR: max((_date_expiry(h.date) for h in held), default=int(time.time()) + HOLDER_TTL_MARGIN_SECONDS),
        })}
        if self.version is None:
            return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
        return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "ver = :seen",
                        "ExpressionAttributeValues": _values({":seen": self.version})}}


def _session_pk(session_id: str) -> str:
    return f"SESSION#{session_id}"


def _turn_sk(seq: int) -> str:
    return f"TURN#{seq:0{SEQ_DIGITS}d}"


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _reasons(exc: ClientError) -> list[str]:
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Retry(Exception):
    """A transaction lost a race (TransactionConflict or a taken sequence number): run it again."""


class _Part:
    def __init__(self, store: DynamoDBStore, table: str) -> None:
        self._store = store
        self.table = table

    async def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        return await self._store.call(op, **kwargs)

    async def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        response = await self._call("get_item", TableName=self.table, Key=key, ConsistentRead=True)
        return response.get("Item")


async def _with_retries[T](attempt: Callable[[], Awaitable[T]], *, tries: int = 12) -> T:
    for n in range(tries):
        try:
            return await attempt()
        except _Retry:
            if n == tries - 1:
                break
            await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** n)))
    raise StoreError("the write kept conflicting with concurrent writes; try again")


class DynamoBookings(_Part):
    async def create(self, booking: Booking, *, seats_per_slot: int, idempotency_key: str | None,
                     request_hash: str, holders: Sequence[str] = (),
                     limits: HolderLimits | None = None) -> tuple[Booking, bool]:
        unique = list(dict.fromkeys(holders))

        async def attempt() -> tuple[Booking, bool]:
            return await self._create_once(booking, seats_per_slot, idempotency_key, request_hash, unique, limits)

        stored, created = await _with_retries(attempt)
        if created:
            await self._store.emit(Change("bookings", None, stored.to_dict()))
        return stored, created

    async def _ledgers(self, holders: list[str]) -> list[_Ledger]:
        items = await asyncio.gather(*(self._get(_holder_key(h)) for h in holders))
        return [_Ledger(h, item) for h, item in zip(holders, items, strict=True)]

    async def _create_once(self, booking: Booking, seats: int, key: str | None, request_hash: str,
                           holders: list[str], limits: HolderLimits | None) -> tuple[Booking, bool]:
        n = booking.num_guests
        if n > seats:
            raise CapacityExceeded(seats - await self.seats_taken(booking.date, booking.hour))
        ledgers = await self._ledgers(holders)
        # Entries of dates two days gone never count again (any time zone); dropping them bounds the item.
        floor = datetime.fromtimestamp(time.time() - HOLDER_TTL_MARGIN_SECONDS, UTC).date().isoformat()
        if limits is not None:
            try:
                for ledger in ledgers:
                    check_holder_limits(ledger.holder, ledger.holdings(floor), booking, limits)
            except HolderLimitExceeded:
                if key is not None and await self._get(_idem_key(key)) is not None:
                    return await self._replay(key, request_hash)  # a retry of a booking made: no second count
                raise
        new = Holding(booking.booking_id, booking.date, booking.hour, n)
        items: list[dict[str, Any]] = []
        if key is not None:
            items.append({"Put": {
                "TableName": self.table,
                "Item": {**_idem_key(key), **_item({
                    KIND: "idempotency", "booking_id": booking.booking_id, "request_hash": request_hash,
                    "created_at": booking.created_at, TTL_ATTR: _epoch(booking.created_at) + IDEMPOTENCY_TTL_SECONDS,
                })},
                "ConditionExpression": "attribute_not_exists(pk)",
            }})
        items.append({"Update": {
            "TableName": self.table,
            "Key": _slot_key(booking.date, booking.hour),
            "UpdateExpression": "SET booked = if_not_exists(booked, :zero) + :n, #kind = :kind, "
                                "slot_date = :date, slot_hour = :hour",
            "ConditionExpression": "attribute_not_exists(booked) OR booked <= :limit",
            "ExpressionAttributeNames": {"#kind": KIND},
            "ExpressionAttributeValues": _values({":zero": 0, ":n": n, ":limit": seats - n, ":kind": "slot",
                                                  ":date": booking.date, ":hour": booking.hour}),
        }})
        items.append({"Put": {
            "TableName": self.table,
            "Item": {**_booking_key(booking.booking_id), **_item({KIND: "booking", **booking.to_dict()})},
            "ConditionExpression": "attribute_not_exists(pk)",
        }})
        items.append({"Put": {
            "TableName": self.table,
            "Item": {**_day_key(booking), **_item({KIND: "booking_day", **booking.to_dict()})},
        }})
        ledger_start = len(items)
        items += [ledger.write(self.table, [*ledger.holdings(floor), new]) for ledger in ledgers]
        if holders:
            items.append({"Put": {"TableName": self.table, "Item": {**_holders_key(booking.booking_id), **_item({
                KIND: "booking_holders", "holders": holders, TTL_ATTR: _date_expiry(booking.date)})}}})
        try:
            await self._call("transact_write_items", TransactItems=items)
        except ClientError as exc:
            if _error_code(exc) != "TransactionCanceledException":
                raise
            reasons = _reasons(exc)
            if key is not None and reasons[:1] == ["ConditionalCheckFailed"]:
                return await self._replay(key, request_hash)
            if "TransactionConflict" in reasons:
                raise _Retry from None
            if "ConditionalCheckFailed" in reasons[ledger_start:ledger_start + len(ledgers)]:
                raise _Retry from None  # another create of the same holder won: recount on fresh ledgers
            slot_reason = reasons[1 if key is not None else 0] if reasons else ""
            if slot_reason == "ConditionalCheckFailed":
                seats_left = seats - await self.seats_taken(booking.date, booking.hour)
                if seats_left >= n:
                    raise _Retry from None  # a cancellation freed seats since: try again
                raise CapacityExceeded(seats_left) from None
            raise StoreError(f"booking transaction cancelled: {reasons}") from None
        return booking, True

    async def _replay(self, key: str, request_hash: str) -> tuple[Booking, bool]:
        item = _plain(await self._get(_idem_key(key)))
        if item is None:
            raise _Retry  # expired between the transaction and this read
        if item["request_hash"] != request_hash:
            raise IdempotencyMismatch(key)
        original = await self.get(str(item["booking_id"]))
        if original is None:
            raise StoreError("idempotency record points at a missing booking")
        return original, False

    async def get(self, booking_id: str) -> Booking | None:
        item = await self._get(_booking_key(booking_id))
        return Booking.from_dict(_record("bookings", item)) if item else None

    async def cancel(self, booking_id: str, reason: str | None, *, now: str) -> tuple[Booking, bool]:
        async def attempt() -> tuple[Booking, Booking | None]:
            old = await self.get(booking_id)
            if old is None:
                raise BookingNotFound(booking_id)
            if old.status == "cancelled":
                return old, None
            new = replace(old, status="cancelled", cancellation_reason=reason, cancelled_at=now)
            sets = "#status = :cancelled, cancelled_at = :now" + (", cancellation_reason = :reason" if reason else "")
            values = {":cancelled": "cancelled", ":confirmed": "confirmed", ":now": now}
            if reason:
                values[":reason"] = reason
            update = {
                "TableName": self.table, "UpdateExpression": f"SET {sets}",
                "ConditionExpression": "#status = :confirmed",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": _values(values),
            }
            items = [
                {"Update": {**update, "Key": _booking_key(booking_id)}},
                {"Update": {**update, "Key": _day_key(old)}},
                {"Update": {
                    "TableName": self.table, "Key": _slot_key(old.date, old.hour),
                    "UpdateExpression": "SET booked = booked - :n",
                    "ConditionExpression": "booked >= :n",
                    "ExpressionAttributeValues": _values({":n": old.num_guests}),
                }},
            ]
            holders = _plain(await self._get(_holders_key(booking_id))) or {}
            for ledger in await self._ledgers([str(h) for h in holders.get("holders", [])]):
                if booking_id in ledger.held:  # give the allowance back (a ledger gone by TTL has nothing to give)
                    kept = [h for h in ledger.held.values() if h.booking_id != booking_id]
                    items.append(ledger.write(self.table, kept))
            try:
                await self._call("transact_write_items", TransactItems=items)
            except ClientError as exc:
                if _error_code(exc) == "TransactionCanceledException":
                    raise _Retry from None  # cancelled concurrently or conflicted: re-read and decide again
                raise
            return new, old

        booking, old = await _with_retries(attempt)
        if old is None:
            return booking, False
        await self._store.emit(Change("bookings", old.to_dict(), booking.to_dict()))
        return booking, True

    async def list_by_date(self, date: str) -> list[Booking]:
        bookings: list[Booking] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True, "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _values({":pk": f"DAY#{date}"}),
        }
        while True:
            page = await self._call("query", **kwargs)
            bookings += [Booking.from_dict(_record("bookings", i)) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return bookings  # sort key order: hour, then creation time

    async def seats_taken(self, date: str, hour: str) -> int:
        item = _plain(await self._get(_slot_key(date, hour)))
        return int(item.get("booked", 0)) if item else 0


class DynamoConversations(_Part):
    async def append(self, session_id: str, role: Role, text: str, *, turn_id: str, now: str) -> Turn:
        pk = _session_pk(session_id)
        guard_key = _item({PK: pk, SK: f"TURNID#{turn_id}"})
        expires_at = _epoch(now) + self._store.retention_days * 86400

        async def existing() -> Turn | None:
            guard = _plain(await self._get(guard_key))
            if guard is None:
                return None
            item = await self._get(_item({PK: pk, SK: _turn_sk(int(guard["seq"]))}))
            return Turn.from_dict(_record("conversations", item)) if item else None

        async def attempt() -> tuple[Turn, bool]:
            found = await existing()
            if found is not None:
                return found, False
            last = await self._call(
                "query", TableName=self.table, ConsistentRead=True, ScanIndexForward=False, Limit=1,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues=_values({":pk": pk, ":prefix": "TURN#"}),
            )
            items = last.get("Items", [])
            seq = int(_plain(items[0])["seq"]) + 1 if items else 1  # type: ignore[index]
            turn = Turn(session_id=session_id, seq=seq, role=role, text=text, created_at=now, turn_id=turn_id)
            try:
                await self._call("transact_write_items", TransactItems=[
                    {"Put": {"TableName": self.table,
                             "Item": _item({PK: pk, SK: _turn_sk(seq), KIND: "turn", TTL_ATTR: expires_at,
                                            **turn.to_dict()}),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Put": {"TableName": self.table,
                             "Item": _item({PK: pk, SK: f"TURNID#{turn_id}", KIND: "turn_id", "seq": seq,
                                            TTL_ATTR: expires_at}),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                ])
            except ClientError as exc:
                if _error_code(exc) == "TransactionCanceledException":
                    raise _Retry from None  # seq taken or same turn_id raced in: re-check the guard first
                raise
            return turn, True

        turn, created = await _with_retries(attempt, tries=30)
        if created:
            await self._store.emit(Change("conversations", None, turn.to_dict()))
        return turn

    async def list(self, session_id: str) -> list[Turn]:
        now = int(time.time())
        turns: list[Turn] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _values({":pk": _session_pk(session_id), ":prefix": "TURN#"}),
        }
        while True:
            page = await self._call("query", **kwargs)
            for item in page.get("Items", []):
                plain = _plain(item) or {}
                if int(plain.get(TTL_ATTR, now + 1)) > now:  # TTL deletion is lazy: hide expired turns
                    turns.append(Turn.from_dict(_record("conversations", item)))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return turns


class DynamoSessions(_Part):
    async def put(self, record: SessionRecord) -> None:
        new = record.to_dict()
        response = await self._call(
            "put_item", TableName=self.table, ReturnValues="ALL_OLD",
            Item=_item({PK: _session_pk(record.session_id), SK: "STATE", KIND: "session", **new}),
        )
        old_item = response.get("Attributes")
        old = SessionRecord.from_dict(_record("sessions", old_item)).to_dict() if old_item else None
        if old != new:
            await self._store.emit(Change("sessions", old, new))

    async def get(self, session_id: str) -> SessionRecord | None:
        item = await self._get(_item({PK: _session_pk(session_id), SK: "STATE"}))
        if item is None:
            return None
        record = SessionRecord.from_dict(_record("sessions", item))
        return record if record.expires_at > time.time() else None


class DynamoDBStore:
    """``Store`` on three DynamoDB tables; see the module docstring for the key schema."""

    def __init__(self, *, booking_table: str, chat_history_table: str, session_table: str,
                 region: str = "us-east-1", client: Any = None, retention_days: int = 90,
                 create_tables: bool = False, max_concurrency: int = 16) -> None:
        self.names = {"bookings": booking_table, "conversations": chat_history_table, "sessions": session_table}
        self.retention_days = retention_days
        self.create_tables = create_tables
        self._client = client or boto3.client(
            "dynamodb", region_name=region,
            config=Config(retries={"mode": "standard", "max_attempts": 5},
                          max_pool_connections=max(10, max_concurrency)),
        )
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="dynamodb-store")
        self._listeners = Listeners()
        self.bookings = DynamoBookings(self, booking_table)
        self.conversations = DynamoConversations(self, chat_history_table)
        self.sessions = DynamoSessions(self, session_table)
        self._started = False

    async def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self._client, op)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: method(**kwargs))

    async def emit(self, change: Change) -> None:
        await self._listeners.emit(change)

    async def start(self) -> None:
        if self._started:
            return
        if self.create_tables:
            for name in self.names.values():
                await self._ensure_table(name)
        self._started = True

    async def _ensure_table(self, name: str) -> None:
        try:
            await self.call("create_table", **table_spec(name))
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
            return
        loop = asyncio.get_running_loop()
        waiter = self._client.get_waiter("table_exists")
        await loop.run_in_executor(self._executor, lambda: waiter.wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}))
        await self.call("update_time_to_live", TableName=name,
                        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTR})
        log.info("created DynamoDB table", extra={"table": name})

    async def ready(self) -> bool:
        try:
            await self.call("get_item", TableName=self.names["bookings"], Key=_item({PK: "READY", SK: "READY"}))
        except (ClientError, BotoCoreError):
            return False
        return True

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._started = False

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        return self._listeners.add(listener)
