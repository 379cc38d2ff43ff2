"""Booking input rules, phrased so a guest (or the voice assistant reading them out) understands them.

Rules, all in the restaurant's time zone (``settings.restaurant_timezone``):

- ``date`` is ``YYYY-MM-DD`` and no more than ``booking_horizon_days`` ahead.
- ``hour`` is ``HH:MM`` (``H:MM`` is accepted and normalised), on a ``slot_minutes`` boundary counted
  from opening time, at or after ``opening_time`` and strictly before ``closing_time``.
- The slot (date + hour) must start strictly after *now*: booking today is fine while the slot is
  still ahead, a slot that has already started is not. That is the rule a host at the door applies.
- ``num_guests`` is a JSON integer 1..``max_party_size``; booleans, floats and numeric strings are
  refused (a voice model that sends ``"4"`` gets told, rather than silently coerced).
- ``name`` is trimmed and inner whitespace collapsed; 1..100 characters of Unicode letters (with their
  combining marks, so Devanagari or vowelled Arabic work) plus spaces, apostrophes, hyphens and periods,
  with at least one letter. Control characters, digits, emoji and markup are refused.

Pydantic carries the rules (``BookingRequest``); the context (settings + now) arrives through
``model_validate(..., context=...)``. ``validation_failed`` turns any pydantic error into the API's
``ValidationFailed`` with one message per field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from runtime.errors import ValidationFailed
from runtime.settings import Settings

NAME_MAX = 100
REASON_MAX = 500
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
_NAME_PUNCT = frozenset(" '’-.")
_IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")

FIELD_LABELS = {"name": "name", "date": "date", "hour": "time", "num_guests": "number of guests"}


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def normalise_name(value: object) -> str:
    if not isinstance(value, str):
        raise _fail("name_type", "Please give the name as text.")
    name = " ".join(unicodedata.normalize("NFC", value).split())
    if not name:
        raise _fail("name_empty", "Please tell us the name for the booking.")
    if len(name) > NAME_MAX:
        raise _fail("name_too_long", f"The name can be at most {NAME_MAX} characters.")
    has_letter = False
    for char in name:
        category = unicodedata.category(char)
        if category.startswith("L"):
            has_letter = True
        elif not (category.startswith("M") or char in _NAME_PUNCT):
            raise _fail("name_chars", "The name may contain only letters, spaces, apostrophes, hyphens and periods.")
    if not has_letter:
        raise _fail("name_chars", "The name must contain letters.")
    return name


def parse_date(value: object) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value.strip()):
        raise _fail("date_format", "Please give the date as YYYY-MM-DD, for example 2026-12-03.")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise _fail("date_invalid", f"{value.strip()} is not a real calendar date.") from None


def parse_hour(value: object, settings: Settings | None) -> time:
    match = _HOUR_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _fail("hour_format", "Please give the time as HH:MM in 24-hour format, for example 19:30.")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 23 or minutes > 59:
        raise _fail("hour_invalid", f"{value} is not a valid time of day.")
    slot = time(hours, minutes)
    if settings is not None:
        first, last = settings.opening_time, last_slot(settings)
        if not first <= slot <= last:
            raise _fail("hour_closed", f"We take bookings between {fmt_hour(first)} and {fmt_hour(last)}.")
        offset = (_minutes(slot) - _minutes(first)) % settings.slot_minutes
        if offset:
            before = _add(slot, -offset)
            after = min(_add(before, settings.slot_minutes), last)
            raise _fail("hour_slot", f"Bookings start every {settings.slot_minutes} minutes; "
                                     f"the nearest times are {fmt_hour(before)} and {fmt_hour(after)}.")
    return slot


def check_guests(value: object, settings: Settings | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("guests_type", "The number of guests must be a whole number, like 4.")
    limit = settings.max_party_size if settings is not None else 100
    if not 1 <= value <= limit:
        raise _fail("guests_range", f"We can book tables for 1 to {limit} guests.")
    return value


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _add(t: time, minutes: int) -> time:
    total = _minutes(t) + minutes
    return time(total // 60 % 24, total % 60)


def fmt_hour(t: time) -> str:
    return t.strftime("%H:%M")


def last_slot(settings: Settings) -> time:
    """The latest slot start strictly before closing time."""
    span = _minutes(settings.closing_time) - _minutes(settings.opening_time) - 1
    return _add(settings.opening_time, span - span % settings.slot_minutes)


def slots(settings: Settings) -> Iterator[time]:
    """Every bookable slot start of a day, in order."""
    current, last = settings.opening_time, last_slot(settings)
    while current <= last:
        yield current
        current = _add(current, settings.slot_minutes)


def slot_start(settings: Settings, day: date, hour: time) -> datetime:
    return datetime.combine(day, hour, tzinfo=settings.tz)


class _Context:
    """What the date rules need besides the value: the settings and the restaurant's current time."""

    def __init__(self, info: ValidationInfo) -> None:
        context = info.context or {}
        self.settings: Settings | None = context.get("settings")
        self.now: datetime | None = context.get("now")


class SlotRequest(BaseModel):
    """A date + time + party size: what availability and booking share."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    date: str
    hour: str
    num_guests: int

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: object, info: ValidationInfo) -> str:
        day = parse_date(value)
        ctx = _Context(info)
        if ctx.settings is not None and ctx.now is not None:
            today = ctx.now.astimezone(ctx.settings.tz).date()
            if day < today:
                raise _fail("date_past", f"{day.isoformat()} is in the past; please choose a future date.")
            horizon = ctx.settings.booking_horizon_days
            if day > today + timedelta(days=horizon):
                raise _fail("date_horizon", f"We take bookings up to {horizon} days ahead "
                                            f"(until {(today + timedelta(days=horizon)).isoformat()}).")
        return day.isoformat()

    @field_validator("hour", mode="before")
    @classmethod
    def _hour(cls, value: object, info: ValidationInfo) -> str:
        return fmt_hour(parse_hour(value, _Context(info).settings))

    @field_validator("num_guests", mode="before")
    @classmethod
    def _guests(cls, value: object, info: ValidationInfo) -> int:
        return check_guests(value, _Context(info).settings)

    @model_validator(mode="after")
    def _not_started(self, info: ValidationInfo) -> SlotRequest:
        ctx = _Context(info)
        if ctx.settings is not None and ctx.now is not None:
            start = slot_start(ctx.settings, date.fromisoformat(self.date), time.fromisoformat(self.hour))
            if start <= ctx.now:
                raise _fail("slot_past", f"{self.hour} on {self.date} has already passed; "
                                         "please choose a later time.")
        return self


class BookingRequest(SlotRequest):
    """The body of ``POST /api/bookings`` and the arguments of ``create_restaurant_booking``."""

    name: str

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> str:
        return normalise_name(value)

    def canonical(self) -> dict[str, Any]:
        return {"name": self.name, "date": self.date, "hour": self.hour, "num_guests": self.num_guests}


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    reason: str | None = None

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: object) -> str | None:
        return clean_reason(value)


def clean_reason(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("reason_type", "The cancellation reason must be text.")
    reason = " ".join(value.split())
    if len(reason) > REASON_MAX:
        raise _fail("reason_too_long", f"The cancellation reason can be at most {REASON_MAX} characters.")
    if any(unicodedata.category(c) == "Cc" for c in reason):
        raise _fail("reason_chars", "The cancellation reason contains control characters.")
    return reason or None


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _IDEMPOTENCY_RE.fullmatch(key):
        raise ValidationFailed("The Idempotency-Key must be 1 to 200 visible ASCII characters.",
                               details={"Idempotency-Key": "1 to 200 visible ASCII characters"})
    return key


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """A pydantic error -> ``ValidationFailed`` with a per-field ``details`` map and a readable message."""
    details: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        field = str(loc[0]) if loc else ("hour" if error["type"] == "slot_past" else "body")
        if error["type"] == "missing":
            message = f"Please include the {FIELD_LABELS.get(field, field)}."
        elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
            field, message = "body", "The request body must be a JSON object."
        else:
            message = error["msg"]
        details.setdefault(field, message)
    return ValidationFailed(" ".join(details.values()), details=details)


def validate(model: type[SlotRequest] | type[CancelRequest], data: object, settings: Settings,
             now: datetime) -> Any:
    if not isinstance(data, Mapping):
        raise ValidationFailed("The request body must be a JSON object.",
                               details={"body": "The request body must be a JSON object."})
    try:
        return model.model_validate(dict(data), context={"settings": settings, "now": now})
    except ValidationError as exc:
        raise validation_failed(exc) from None
