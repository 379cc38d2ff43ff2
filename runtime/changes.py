"""The event seam: one committed data change -> the real-time event it causes (DESIGN §3.3).

Local change capture (the stores' ``subscribe`` listeners) and the cloud DynamoDB-stream Lambda both
call ``to_event``, so a browser sees byte-identical payloads in standalone and AWS mode. The
``eventId`` is derived from the data alone (never a clock or a random id): the stream delivers
at-least-once and a standalone process may also re-emit, so clients de-duplicate on it.

Only the standard library and ``runtime.stores.base`` may be imported here, because the Lambda
bundles this file with nothing else. For the same reason the DynamoDB stream helpers
(``change_from_stream_record``) live here and not in the boto3-based store.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from runtime.stores.base import Booking, Change, SessionRecord, TableName, Turn

BOOKINGS_NAMESPACE = "restaurant-booking"
CONVERSATIONS_NAMESPACE = "conversations"

# Every DynamoDB item carries a ``kind`` so the stream publisher can tell record items (booking, turn,
# session) from bookkeeping items in the same tables (slot counters, idempotency keys, turn guards).
KIND_ATTR = "kind"
RECORD_KIND: dict[TableName, str] = {"bookings": "booking", "conversations": "turn", "sessions": "session"}


def booking_channel(booking_id: str) -> str:
    return f"/{BOOKINGS_NAMESPACE}/{booking_id}"


def conversation_channel(session_id: str) -> str:
    return f"/{CONVERSATIONS_NAMESPACE}/{session_id}"


def _is_record(table: TableName, image: Mapping[str, Any] | None) -> bool:
    if image is None:
        return False
    kind = image.get(KIND_ATTR)
    return kind is None or kind == RECORD_KIND[table]


def _booking(image: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return Booking.from_dict(dict(image)).to_dict()
    except (KeyError, TypeError, ValueError):
        return None


def to_event(change: Change) -> tuple[str, dict[str, Any]] | None:
    """Return ``(channel, payload)`` for a change worth telling browsers about, else None.

    Images may be ``to_dict()`` shapes or raw DynamoDB items (key/TTL-only attributes are dropped by
    re-reading them through the record types). Deletes (TTL expiry) and bookkeeping items give None.
    """
    table, old, new = change.table, change.old, change.new
    if new is None or not _is_record(table, new):
        return None
    if old is not None and not _is_record(table, old):
        old = None
    try:
        if table == "bookings":
            return _booking_event(old, new)
        if table == "conversations":
            if old is not None:
                return None  # turns are immutable; a rewrite is not news
            turn = Turn.from_dict(dict(new)).to_dict()
            return conversation_channel(turn["session_id"]), {
                "type": "turn.added", "eventId": f"turn:{turn['session_id']}:{turn['seq']}", "turn": turn,
            }
        if table == "sessions":
            return _session_event(old, new)
    except (KeyError, TypeError, ValueError):
        return None  # an image that is not a record of this table
    return None


def _booking_event(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    booking = _booking(new)
    if booking is None:
        return None
    booking_id = booking["booking_id"]
    if old is None:
        kind = "created"
    elif old.get("status") == "confirmed" and booking["status"] == "cancelled":
        kind = "cancelled"
    else:
        return None
    return booking_channel(booking_id), {
        "type": f"booking.{kind}", "eventId": f"booking:{booking_id}:{kind}", "booking": booking,
    }


def _session_event(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    session = SessionRecord.from_dict(dict(new)).to_dict()
    session_id = session["session_id"]
    if old is None:
        kind = "started"
    elif old.get("status") == "active" and session["status"] == "ended":
        kind = "ended"
    else:
        return None
    return conversation_channel(session_id), {
        "type": f"session.{kind}", "eventId": f"session:{session_id}:{kind}", "session": session,
    }


# --- DynamoDB stream records (used by the cloud Lambda; stdlib only) -----------------------------

def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def deserialize(attr: Mapping[str, Any]) -> Any:
    """One DynamoDB typed attribute (``{"S": "x"}``, ``{"N": "1"}``, ...) -> plain Python.

    Hand-written because ``boto3.dynamodb.types.TypeDeserializer`` would drag boto3 into the Lambda
    bundle and returns Decimals the record types do not want; only the types our items use are needed.
    """
    (kind, value), = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        return _number(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: deserialize(v) for k, v in value.items()}
    if kind == "L":
        return [deserialize(v) for v in value]
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {_number(v) for v in value}
    raise ValueError(f"unsupported DynamoDB attribute type {kind}")


def deserialize_item(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: deserialize(v) for k, v in item.items()}


def change_from_stream_record(record: Mapping[str, Any], table: TableName) -> Change:
    """A Lambda DynamoDB stream record (``NEW_AND_OLD_IMAGES``) of ``table`` -> a ``Change``."""
    data = record.get("dynamodb", {})
    return Change(table=table, old=deserialize_item(data.get("OldImage")), new=deserialize_item(data.get("NewImage")))
