"""The booking tools the assistant can call, and their execution against the BookingService.

Results are JSON objects the model can speak from. Anything that goes wrong - malformed JSON, a missing
field, a past date, a full slot, an unknown booking id, even a store outage - becomes
``{"error": "<sentence a guest understands>"}``: the model then explains or asks again, and the
conversation survives. An exception here would leave the model waiting for a toolResult forever.

Field rules (formats, opening hours, party size, dates in the future) live in the BookingService so
the REST API and the voice path apply the same ones; this module only checks the shape of the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime import metrics
from runtime.errors import ApiError
from runtime.speech.protocol import tool_spec

log = logging.getLogger("runtime.speech.tools")

GET_DATE_TIME = "get_current_date_time"
CREATE_BOOKING = "create_restaurant_booking"
GET_BOOKING = "get_restaurant_booking"
DELETE_BOOKING = "delete_restaurant_booking"
CHECK_AVAILABILITY = "check_availability"

_SLOT_PROPS: dict[str, Any] = {
    "date": {"type": "string", "description": "Date of the booking, YYYY-MM-DD, in the restaurant's time zone."},
    "hour": {"type": "string", "description": "Start time, HH:MM in 24-hour format, for example 19:30."},
    "num_guests": {"type": "integer", "description": "Number of guests in the party.", "minimum": 1},
}
_BOOKING_ID: dict[str, Any] = {"type": "string", "description": "The booking id the guest was given."}


def tool_specs(max_party_size: int = 20) -> list[dict[str, Any]]:
    """Tool declarations for ``promptStart``; schemas mirror what ``ToolRunner`` accepts."""
    slot_props = {**_SLOT_PROPS, "num_guests": {**_SLOT_PROPS["num_guests"], "maximum": max_party_size}}
    return [
        tool_spec(GET_DATE_TIME,
                  "Get the current date, time and weekday at the restaurant. Call this before working out "
                  "any date the guest says ('tomorrow', 'Friday') so bookings are in the future.",
                  {"type": "object", "properties": {}, "required": []}),
        tool_spec(CREATE_BOOKING,
                  "Book a table once you know the guest's name, the date, the time and the party size. "
                  "Returns the booking with its booking_id, which you read back to the guest.",
                  {"type": "object",
                   "properties": {"name": {"type": "string", "description": "Guest's name for the booking."},
                                  **slot_props},
                   "required": ["name", "date", "hour", "num_guests"]}),
        tool_spec(GET_BOOKING, "Look up an existing booking by its booking id.",
                  {"type": "object", "properties": {"booking_id": _BOOKING_ID}, "required": ["booking_id"]}),
        tool_spec(DELETE_BOOKING, "Cancel an existing booking by its booking id.",
                  {"type": "object",
                   "properties": {"booking_id": _BOOKING_ID,
                                  "cancellation_reason": {"type": "string",
                                                          "description": "Why the guest cancels (optional)."}},
                   "required": ["booking_id"]}),
        tool_spec(CHECK_AVAILABILITY,
                  "Check whether a table is free for a party at a date and time; suggests other times if not.",
                  {"type": "object", "properties": slot_props, "required": ["date", "hour", "num_guests"]}),
    ]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool call produced: the result for the model, plus a booking event for the caller's UI."""

    result: dict[str, Any]
    booking_action: str | None = None  # "created" | "cancelled" | "found"
    booking: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return "error" not in self.result


class ToolArgumentError(Exception):
    pass


def _parse_args(content: str | None) -> dict[str, Any]:
    if content is None or not str(content).strip():
        return {}
    try:
        args = json.loads(content)
        # Nova Sonic now and then sends the arguments double-encoded: a JSON string holding the JSON object
        # (livekit-plugins-aws handles the same case, tests/test_nova_sonic_tool_args.py). Unwrap once.
        if isinstance(args, str) and args.strip().startswith("{"):
            args = json.loads(args)
    except ValueError:
        raise ToolArgumentError("The tool arguments were not valid JSON.") from None
    if not isinstance(args, dict):
        raise ToolArgumentError("The tool arguments must be a JSON object.")
    return args


def _require(args: dict[str, Any], *names: str) -> None:
    missing = [name for name in names if args.get(name) in (None, "")]
    if missing:
        raise ToolArgumentError("Missing " + ", ".join(missing) + ". Please ask the guest for "
                                + ("it." if len(missing) == 1 else "them."))


def _booking_id(args: dict[str, Any]) -> str:
    _require(args, "booking_id")
    value = args["booking_id"]
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 100:
        raise ToolArgumentError("The booking id must be the text the guest was given.")
    return value.strip()


def _speakable_booking(booking: Any) -> dict[str, Any]:
    return booking.to_dict() if hasattr(booking, "to_dict") else dict(booking)


class ToolRunner:
    """Runs one session's tool calls. Stateless apart from the services it holds."""

    def __init__(self, bookings: Any, *, session_id: str, client: str | None = None) -> None:
        self._bookings = bookings
        self._session_id = session_id
        self._client = client  # the caller's runtime.ratelimit.client_key: the booking limits count per address too
        # Booking requests already made in this session -> the toolUseId that made them first. After a
        # stream recovery the model may ask again under a new toolUseId; reusing the first one's
        # idempotency key returns the same booking instead of booking the table twice.
        self._create_keys: dict[str, str] = {}
        self._handlers: dict[str, Callable[[dict[str, Any], str], Awaitable[ToolOutcome]]] = {
            GET_DATE_TIME: self._date_time,
            CREATE_BOOKING: self._create,
            GET_BOOKING: self._get,
            DELETE_BOOKING: self._delete,
            CHECK_AVAILABILITY: self._availability,
        }

    async def run(self, name: str, tool_use_id: str, content: str | None) -> ToolOutcome:
        """Never raises: every failure is a result the model can speak."""
        handler = self._handlers.get(name)
        if handler is None:
            return ToolOutcome({"error": f"There is no tool called {name}."})
        try:
            outcome = await handler(_parse_args(content), tool_use_id)
        except ToolArgumentError as exc:
            outcome = ToolOutcome({"error": str(exc)})
        except ApiError as exc:
            result: dict[str, Any] = {"error": exc.message, "code": exc.code}
            if isinstance(exc.details, dict) and exc.details:
                result["details"] = exc.details
            outcome = ToolOutcome(result)
        except Exception:
            log.exception("tool %s failed", name, extra={"session_id": self._session_id})
            outcome = ToolOutcome({"error": "The booking system is not answering right now. "
                                            "Please apologise and offer to try again in a moment."})
        metrics.BOOKINGS.labels(operation=f"tool:{name}", outcome="ok" if outcome.ok else "error").inc()
        return outcome

    async def _date_time(self, args: dict[str, Any], tool_use_id: str) -> ToolOutcome:
        now: datetime = self._bookings.now()
        return ToolOutcome({
            "date": now.date().isoformat(), "time": now.strftime("%H:%M"), "weekday": now.strftime("%A"),
            "timezone": str(now.tzinfo), "iso": now.isoformat(timespec="seconds"),
        })

    async def _create(self, args: dict[str, Any], tool_use_id: str) -> ToolOutcome:
        _require(args, "name", "date", "hour", "num_guests")
        data = {key: args[key] for key in ("name", "date", "hour", "num_guests")}
        same_request = json.dumps(data, sort_keys=True, default=str)
        first_id = self._create_keys.setdefault(same_request, tool_use_id)
        try:
            booking, created = await self._bookings.create(
                data, idempotency_key=f"tool:{first_id}", session_id=self._session_id, client=self._client)
        except Exception:
            if first_id == tool_use_id:
                self._create_keys.pop(same_request, None)  # nothing was booked: a retry may book afresh
            raise
        shown = _speakable_booking(booking)
        return ToolOutcome({"booking": shown, "created": created,
                            "message": f"Booking {shown['booking_id']} is confirmed."},
                           booking_action="created", booking=shown)

    async def _get(self, args: dict[str, Any], tool_use_id: str) -> ToolOutcome:
        booking = await self._bookings.get(_booking_id(args))
        shown = _speakable_booking(booking)
        return ToolOutcome({"booking": shown}, booking_action="found", booking=shown)

    async def _delete(self, args: dict[str, Any], tool_use_id: str) -> ToolOutcome:
        booking_id = _booking_id(args)
        reason = args.get("cancellation_reason")
        if reason is not None and not isinstance(reason, str):
            raise ToolArgumentError("The cancellation reason must be text.")
        booking, changed = await self._bookings.cancel(booking_id, reason or None)
        shown = _speakable_booking(booking)
        message = f"Booking {booking_id} is cancelled." if changed else f"Booking {booking_id} was already cancelled."
        return ToolOutcome({"booking": shown, "message": message}, booking_action="cancelled", booking=shown)

    async def _availability(self, args: dict[str, Any], tool_use_id: str) -> ToolOutcome:
        _require(args, "date", "hour", "num_guests")
        result = await self._bookings.availability(args["date"], args["hour"], args["num_guests"])
        return ToolOutcome(dict(result))
