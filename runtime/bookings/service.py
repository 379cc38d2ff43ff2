"""The booking domain: rules and messages on top of a ``BookingRepository``.

Both doors use it - the REST API and the voice assistant's tool calls - so a guest gets the same
answer either way. The repository guarantees atomicity (capacity and idempotency); this layer
validates, generates ids, computes the request fingerprint for idempotency and turns store errors
into ``ApiError``s whose messages can be read out to a guest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic_core import PydanticCustomError

from runtime.bookings.validation import (
    BookingRequest,
    CancelRequest,
    SlotRequest,
    check_idempotency_key,
    fmt_hour,
    parse_date,
    slot_start,
    slots,
    validate,
    validation_failed,
)
from runtime.errors import Conflict, NotFound, TooManyRequests, ValidationFailed
from runtime.metrics import BOOKINGS
from runtime.settings import Settings
from runtime.stores.base import (
    Booking,
    BookingRepository,
    CapacityExceeded,
    HolderLimitExceeded,
    HolderLimits,
    IdempotencyMismatch,
)

ID_PREFIX = "BK-"
ID_CHARS = 10
MAX_ALTERNATIVES = 3


def new_booking_id() -> str:
    """``BK-`` + 10 base32 characters (50 random bits): unguessable, yet short enough to read aloud."""
    return ID_PREFIX + base64.b32encode(secrets.token_bytes(7)).decode("ascii")[:ID_CHARS]


def normalise_booking_id(booking_id: str) -> str | None:
    """Accept ids as a guest or a speech model may say them (case, spaces); None when not an id."""
    if not isinstance(booking_id, str):
        return None
    text = "".join(booking_id.split()).upper()
    if not text.startswith(ID_PREFIX):
        text = ID_PREFIX + text.removeprefix("BK")
    body = text[len(ID_PREFIX):]
    if len(body) != ID_CHARS or not all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in body):
        return None
    return text


def request_hash(request: BookingRequest, session_id: str | None) -> str:
    canonical = json.dumps({**request.canonical(), "session_id": session_id}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def holders_of(client: str | None, session_id: str | None) -> list[str]:
    """The ledgers a booking counts against: the client's address key and, for a guest session, the session.

    Both, because neither alone is enough: many calls can come from one address, and one call's session
    token can be replayed on the REST API from other addresses.
    """
    return ([f"addr:{client}"] if client else []) + ([f"session:{session_id}"] if session_id else [])


def limit_message(exc: HolderLimitExceeded, request: BookingRequest, settings: Settings) -> str:
    """A refusal the assistant can read out: why, and what the guest can do instead."""
    phone = f" on {settings.restaurant_phone}" if settings.restaurant_phone else ""
    call = f"please call {settings.restaurant_name}{phone}"
    if exc.limit == "per_slot":
        bookings = "one booking" if exc.allowed == 1 else f"{exc.allowed} bookings"
        why = f"we take only {bookings} per guest for the same time online, and you already have that at " \
              f"{request.hour} on {request.date}"
    elif exc.limit == "per_day":
        bookings = "one booking" if exc.allowed == 1 else f"{exc.allowed} bookings"
        why = f"we take only {bookings} per guest per day online, and you already have that on {request.date}"
    else:
        why = f"we hold at most {exc.allowed} seats per guest online, and your bookings already hold {exc.held}, " \
              f"so a party of {request.num_guests} does not fit"
    return f"Sorry, {why}. To book more, {call}, or cancel a booking you no longer need first."


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BookingService:
    def __init__(self, repo: BookingRepository, settings: Settings, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.repo = repo
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The current time, aware, in the restaurant's time zone."""
        return self._clock().astimezone(self.settings.tz)

    def limits(self) -> HolderLimits | None:
        s = self.settings
        if not (s.booking_limit_per_slot or s.booking_limit_per_day or s.booking_limit_seats):
            return None
        now = self.now()
        return HolderLimits(per_slot=s.booking_limit_per_slot, per_day=s.booking_limit_per_day,
                            seats=s.booking_limit_seats, now=(now.date().isoformat(), now.strftime("%H:%M")))

    async def create(self, data: Mapping[str, Any], *, idempotency_key: str | None = None,
                     session_id: str | None = None, client: str | None = None) -> tuple[Booking, bool]:
        """Book a table; ``(booking, False)`` when ``idempotency_key`` replays an earlier request.

        ``client`` (``runtime.ratelimit.client_key``) and ``session_id`` are who holds the booking for the
        abuse limits; the caller leaves both out for staff, whom no limit applies to.
        """
        try:
            key = check_idempotency_key(idempotency_key)
            request: BookingRequest = validate(BookingRequest, data, self.settings, self.now())
        except ValidationFailed:
            BOOKINGS.labels("create", "invalid").inc()
            raise
        booking = Booking(
            booking_id=new_booking_id(), name=request.name, date=request.date, hour=request.hour,
            num_guests=request.num_guests, status="confirmed", created_at=_utc_iso(self._clock()),
            session_id=session_id,
        )
        try:
            stored, created = await self.repo.create(
                booking, seats_per_slot=self.settings.seats_per_slot, idempotency_key=key,
                request_hash=request_hash(request, session_id), holders=holders_of(client, session_id),
                limits=self.limits(),
            )
        except HolderLimitExceeded as exc:
            BOOKINGS.labels("create", f"limit_{exc.limit}").inc()
            raise TooManyRequests(limit_message(exc, request, self.settings), code="booking_limit",
                                  details={"limit": exc.limit, "allowed": exc.allowed, "held": exc.held,
                                           "phone": self.settings.restaurant_phone}) from None
        except IdempotencyMismatch:
            BOOKINGS.labels("create", "key_reused").inc()
            raise Conflict("This Idempotency-Key was already used for a different booking request; "
                           "use a new key for a new booking.", code="idempotency_key_reused") from None
        except CapacityExceeded as exc:
            BOOKINGS.labels("create", "slot_full").inc()
            raise await self._slot_full(request, exc.seats_left) from None
        BOOKINGS.labels("create", "created" if created else "replayed").inc()
        return stored, created

    async def _slot_full(self, request: BookingRequest, seats_left: int) -> Conflict:
        seats_left = max(0, seats_left)
        alternatives = await self._alternatives(request.date, request.hour, request.num_guests)
        if seats_left == 0:
            message = f"Sorry, {request.hour} on {request.date} is fully booked."
        else:
            guests = "guest" if seats_left == 1 else "guests"
            message = f"Sorry, {request.hour} on {request.date} has room for only {seats_left} more {guests}."
        if alternatives:
            message += f" We do have room at {', '.join(alternatives)}."
        return Conflict(message, code="slot_full", details={"seats_left": seats_left, "alternatives": alternatives})

    async def _alternatives(self, day: str, hour: str, num_guests: int) -> list[str]:
        """The nearest other slots of the same day that still fit the party and have not started."""
        wanted = time.fromisoformat(hour)
        now = self.now()
        candidates = [s for s in slots(self.settings)
                      if s != wanted and slot_start(self.settings, date.fromisoformat(day), s) > now]
        candidates.sort(key=lambda s: abs((s.hour * 60 + s.minute) - (wanted.hour * 60 + wanted.minute)))
        found: list[str] = []
        for candidate in candidates[:12]:  # bound the store reads; nearest slots are what a guest wants
            label = fmt_hour(candidate)
            taken = await self.repo.seats_taken(day, label)
            if self.settings.seats_per_slot - taken >= num_guests:
                found.append(label)
                if len(found) == MAX_ALTERNATIVES:
                    break
        return sorted(found)

    async def get(self, booking_id: str) -> Booking:
        normalised = normalise_booking_id(booking_id)
        booking = await self.repo.get(normalised) if normalised else None
        if booking is None:
            raise NotFound(f"No booking with id {booking_id!s:.40}.", code="booking_not_found")
        return booking

    async def cancel(self, booking_id: str, reason: str | None = None) -> tuple[Booking, bool]:
        """Cancel and free the seats; cancelling an already cancelled booking returns ``(booking, False)``."""
        cancel: CancelRequest = validate(CancelRequest, {"reason": reason}, self.settings, self.now())
        existing = await self.get(booking_id)
        booking, changed = await self.repo.cancel(existing.booking_id, cancel.reason, now=_utc_iso(self._clock()))
        BOOKINGS.labels("cancel", "cancelled" if changed else "already_cancelled").inc()
        return booking, changed

    async def list_by_date(self, day: str) -> list[Booking]:
        try:
            parsed = parse_date(day)
        except PydanticCustomError as exc:
            raise ValidationFailed(exc.message(), details={"date": exc.message()}) from None
        return await self.repo.list_by_date(parsed.isoformat())

    async def availability(self, day: str, hour: str, num_guests: int) -> dict[str, Any]:
        request: SlotRequest = validate(SlotRequest, {"date": day, "hour": hour, "num_guests": num_guests},
                                        self.settings, self.now())
        taken = await self.repo.seats_taken(request.date, request.hour)
        seats_left = max(0, self.settings.seats_per_slot - taken)
        available = seats_left >= request.num_guests
        alternatives = [] if available else await self._alternatives(request.date, request.hour, request.num_guests)
        return {"available": available, "seats_left": seats_left, "alternatives": alternatives}


__all__ = ["BookingService", "new_booking_id", "normalise_booking_id", "request_hash", "validation_failed"]
