"""Records and repository protocols: the store seam (DESIGN §3.2).

SQLite (standalone) and DynamoDB (AWS) both implement ``Store`` and pass one shared contract suite
(``tests/test_store_contract.py``). Everything above this seam - the booking service, the speech
session core, the events - sees only these types.

Records serialise to plain JSON-able dicts with ``to_dict()``; those dicts are also the "images" the
change seam (``runtime.changes``) maps to events, so a DynamoDB stream image with its key attributes
removed must equal ``to_dict()`` of the same record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

BookingStatus = Literal["confirmed", "cancelled"]
Role = Literal["USER", "ASSISTANT"]
TableName = Literal["bookings", "conversations", "sessions"]


@dataclass(frozen=True, slots=True)
class Booking:
    booking_id: str
    name: str
    date: str  # YYYY-MM-DD, restaurant local date
    hour: str  # HH:MM, restaurant local time
    num_guests: int
    status: BookingStatus
    created_at: str  # ISO 8601 UTC
    session_id: str | None = None
    cancellation_reason: str | None = None
    cancelled_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Booking:
        return cls(
            booking_id=str(data["booking_id"]), name=str(data["name"]), date=str(data["date"]),
            hour=str(data["hour"]), num_guests=int(data["num_guests"]), status=data["status"],
            created_at=str(data["created_at"]), session_id=data.get("session_id"),
            cancellation_reason=data.get("cancellation_reason"), cancelled_at=data.get("cancelled_at"),
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One finished transcript turn of a conversation, ordered by ``seq`` within its session."""

    session_id: str
    seq: int
    role: Role
    text: str
    created_at: str  # ISO 8601 UTC
    turn_id: str  # caller-chosen idempotency key: appending the same turn_id twice stores it once

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(session_id=str(data["session_id"]), seq=int(data["seq"]), role=data["role"],
                   text=str(data["text"]), created_at=str(data["created_at"]), turn_id=str(data["turn_id"]))


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """State of a voice session (which transport, engine, when it ends); expires by TTL."""

    session_id: str
    status: Literal["active", "ended"]
    created_at: str
    expires_at: int  # epoch seconds (the DynamoDB TTL attribute)
    transport: str = "webrtc"
    engine: str = "local"
    ended_at: str | None = None
    end_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)  # token usage totals reported by the model

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionRecord:
        return cls(
            session_id=str(data["session_id"]), status=data["status"], created_at=str(data["created_at"]),
            expires_at=int(data["expires_at"]), transport=str(data.get("transport", "webrtc")),
            engine=str(data.get("engine", "local")), ended_at=data.get("ended_at"),
            end_reason=data.get("end_reason"),
            usage={k: int(v) for k, v in (data.get("usage") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Change:
    """A committed data change: the input of the change seam. Images are ``to_dict()`` shapes."""

    table: TableName
    old: dict[str, Any] | None
    new: dict[str, Any] | None


ChangeListener = Callable[[Change], Awaitable[None]]


# --- errors the repositories raise (the service maps them to HTTP / tool results) ---------------

class StoreError(Exception):
    pass


class CapacityExceeded(StoreError):
    """The slot cannot take this many more guests."""

    def __init__(self, seats_left: int) -> None:
        super().__init__(f"only {seats_left} seats left in this slot")
        self.seats_left = seats_left


class IdempotencyMismatch(StoreError):
    """The idempotency key was used before for a different request."""


class BookingNotFound(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class HolderLimits:
    """What one holder (a client key such as ``addr:<ip>`` or ``session:<id>``) may hold; 0 = no limit.

    Holdings are the holder's *confirmed* bookings: a cancellation gives its allowance back. ``seats``
    counts only bookings whose slot starts after ``now`` (restaurant-local ``(date, HH:MM)``), so a
    regular guest's past dinners never count against the next one.
    """

    per_slot: int
    per_day: int
    seats: int
    now: tuple[str, str]  # (YYYY-MM-DD, HH:MM), restaurant local


LimitName = Literal["per_slot", "per_day", "seats"]


class HolderLimitExceeded(StoreError):
    """A holder of the booking already holds as much as ``limit`` allows (``held`` of ``allowed``)."""

    def __init__(self, holder: str, limit: LimitName, allowed: int, held: int) -> None:
        super().__init__(f"{holder} holds {held} of {allowed} ({limit})")
        self.holder = holder
        self.limit: LimitName = limit
        self.allowed = allowed
        self.held = held


@dataclass(frozen=True, slots=True)
class Holding:
    """One confirmed booking as a holder's ledger sees it."""

    booking_id: str
    date: str
    hour: str
    num_guests: int


def check_holder_limits(holder: str, held: list[Holding], booking: Booking, limits: HolderLimits) -> None:
    """Raise HolderLimitExceeded if ``booking`` would take ``holder`` past a limit; both stores use it."""
    same_day = [h for h in held if h.date == booking.date]
    if limits.per_slot and sum(h.hour == booking.hour for h in same_day) + 1 > limits.per_slot:
        raise HolderLimitExceeded(holder, "per_slot", limits.per_slot, sum(h.hour == booking.hour for h in same_day))
    if limits.per_day and len(same_day) + 1 > limits.per_day:
        raise HolderLimitExceeded(holder, "per_day", limits.per_day, len(same_day))
    seats = sum(h.num_guests for h in held if (h.date, h.hour) > limits.now)
    if limits.seats and seats + booking.num_guests > limits.seats:
        raise HolderLimitExceeded(holder, "seats", limits.seats, seats)


# --- repositories ---------------------------------------------------------------------------------

@runtime_checkable
class BookingRepository(Protocol):
    async def create(self, booking: Booking, *, seats_per_slot: int, idempotency_key: str | None,
                     request_hash: str, holders: Sequence[str] = (),
                     limits: HolderLimits | None = None) -> tuple[Booking, bool]:
        """Store a confirmed booking unless its slot would exceed ``seats_per_slot`` guests.

        Atomic with respect to concurrent creates of the same slot. With an idempotency key already
        used for the same ``request_hash`` it returns ``(original, False)`` and stores nothing (a replay
        is checked before any limit, so it never counts twice); with a different hash it raises
        IdempotencyMismatch. Returns ``(booking, True)`` when stored. Raises CapacityExceeded when it
        does not fit. The booking is recorded in each of ``holders``' ledgers; with ``limits`` it raises
        HolderLimitExceeded when it would take a holder past one - atomic with concurrent creates of the
        same holder in any process or host.
        """
        ...

    async def get(self, booking_id: str) -> Booking | None: ...

    async def cancel(self, booking_id: str, reason: str | None, *, now: str) -> tuple[Booking, bool]:
        """Cancel and free the seats and the holders' allowance; idempotent: cancelling again returns
        ``(booking, False)``."""
        ...

    async def list_by_date(self, date: str) -> list[Booking]: ...

    async def seats_taken(self, date: str, hour: str) -> int: ...


@runtime_checkable
class ConversationRepository(Protocol):
    async def append(self, session_id: str, role: Role, text: str, *, turn_id: str, now: str) -> Turn:
        """Append the next turn (seq = previous + 1); the same ``turn_id`` is stored only once."""
        ...

    async def list(self, session_id: str) -> list[Turn]: ...


@runtime_checkable
class SessionRepository(Protocol):
    async def put(self, record: SessionRecord) -> None: ...

    async def get(self, session_id: str) -> SessionRecord | None: ...


@runtime_checkable
class Store(Protocol):
    # Read-only properties, not attributes: a protocol attribute is assignable, so an implementation's
    # narrower repository type (SQLiteBookings) would not satisfy it; callers only ever read these.
    @property
    def bookings(self) -> BookingRepository: ...

    @property
    def conversations(self) -> ConversationRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    async def start(self) -> None:
        """Open connections / create tables as needed. Idempotent."""
        ...

    async def ready(self) -> bool:
        """True when the store can serve (used by /readyz)."""
        ...

    async def close(self) -> None:
        """Flush and release everything (graceful shutdown)."""
        ...

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` after each committed change; returns an unsubscribe function.

        SQLite emits changes itself after commit. DynamoDB emits them too when running in-process (for
        the standalone gateway and the tests); in AWS the DynamoDB stream + Lambda does that job.
        """
        ...
