"""Deterministic slot-filling dialogue for booking, looking up and cancelling tables.

No model that ships in a wheel can follow instructions or call tools reliably (reference §4), so the
embedded engine plays Nova Sonic's part with a small state machine: it fills name, date, time and party
size from whatever the guest says (in any order, with corrections), reads the booking back, and acts only
through the same tools Nova would call. The dialogue never touches the booking service itself: every
effect is a ``toolUse`` the session core executes, and the reply waits for its ``toolResult``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from runtime.engine.lm.corpus import NAMES
from runtime.engine.parsing import (
    Intents,
    is_small_talk,
    normalize,
    number_words,
    parse_booking_id,
    parse_date,
    parse_intents,
    parse_name,
    parse_party_size,
    parse_time,
    say_booking_id,
    say_date,
    say_time,
)

ToolCaller = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Emits a toolUse and resolves with the parsed toolResult (``{"error": ...}`` on failure/timeout)."""

_KNOWN_NAMES = set(NAMES)


@dataclass(slots=True)
class _Slots:
    name: str | None = None
    date: date | None = None
    time: str | None = None
    guests: int | None = None

    def missing(self) -> str | None:
        for slot in ("date", "time", "guests", "name"):
            if getattr(self, slot) is None:
                return slot
        return None


@dataclass(slots=True)
class _Facts:
    name: str | None = None
    date: date | None = None
    time: str | None = None
    guests: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.name, self.date, self.time, self.guests))


_QUESTIONS = {
    "date": "What day would you like to come?",
    "time": "And at what time?",
    "guests": "How many people will be joining?",
    "name": "May I have your name for the booking?",
}


class DialogueManager:
    """One conversation's state. ``respond`` is called once per user turn, never concurrently."""

    def __init__(
        self,
        *,
        restaurant: str,
        opening: time,
        closing: time,
        max_party: int,
        fallback_today: Callable[[], date],
    ) -> None:
        self._restaurant = restaurant
        self._opening = opening
        self._closing = closing
        self._max_party = max_party
        self._fallback_today = fallback_today
        self.today: date | None = None
        self.state = "start"
        self.intent: str | None = None
        self._slots = _Slots()
        self._last_reply = ""
        self._pending_id: str | None = None
        self._id_attempts = 0

    # ------------------------------------------------------------------------------------------
    @property
    def search(self) -> str:
        """The recogniser search the next answer should be decoded with."""
        if self.state == "ask_id":
            return "bookingid"
        if self.state == "ask_name":
            return "name"
        return "domain"

    def greeting(self) -> str:
        reply = (f"Hello, and welcome to {self._restaurant}. I can book a table for you, or look up or cancel a "
                 "booking. How can I help?")
        self._last_reply = reply
        return reply

    def next_question(self) -> str:
        """The question the conversation is waiting on (after a restore), kept for "say that again"."""
        reply = self._prompt()
        self._last_reply = reply
        return reply

    def restore(self, history: list[tuple[str, str]]) -> None:
        """Rebuild the booking in progress from replayed history (a renewed stream), calling no tools.

        A finished booking or cancellation in the history clears the slots, so a "yes" after renewal can
        never book the same table twice.
        """
        today = self._fallback_today()
        for role, text in history:
            if role == "ASSISTANT":
                if "is booked" in text or "has been cancelled" in text:
                    self._reset()
                continue
            if role != "USER":
                continue
            facts = self._extract(normalize(text), today)
            if facts.any() and self._apply(facts, today) is None:
                self.intent = "book"
        if self.intent == "book":
            missing = self._slots.missing()
            self.state = f"ask_{missing}" if missing else "confirm"

    def understands(self, text: str) -> bool:
        """Whether ``text`` means something in the current state (else the engine tries the generic model)."""
        words = normalize(text)
        if not words:
            return False
        if self.state == "ask_id":
            return parse_booking_id(words) is not None
        facts = self._extract(words, self.today or self._fallback_today())
        intents = parse_intents(words)
        return facts.any() or is_small_talk(words) or any((
            intents.yes, intents.no, intents.book, intents.lookup, intents.cancel, intents.repeat,
            intents.availability, intents.goodbye))

    async def respond(self, text: str, tools: ToolCaller) -> str | None:
        """The assistant's reply to one user utterance (None when there is nothing to answer)."""
        words = normalize(text)
        if not words:
            return None
        intents = parse_intents(words)
        if intents.repeat and not self._extract(words, self.today or self._fallback_today()).any():
            return self._last_reply or self._prompt()
        reply = await self._respond(words, intents, tools)
        self._last_reply = reply
        return reply

    # ------------------------------------------------------------------------------------------
    async def _respond(self, words: list[str], intents: Intents, tools: ToolCaller) -> str:
        if self.state == "ask_id":
            booking_id = parse_booking_id(words)
            if booking_id:
                return await self._with_id(booking_id, tools)
            if intents.no or intents.goodbye:
                self._reset()
                return "Okay. Is there anything else I can help with?"
            return ("Sorry, I didn't catch the booking number. Please say it one letter or digit at a time, "
                    "starting with B K.")
        if self.state == "confirm_cancel":
            if intents.yes and not intents.no:
                return await self._cancel(tools)
            if intents.no:
                self._reset()
                return "Okay, I have kept your booking. Is there anything else I can help with?"
            return "Please say yes to cancel the booking, or no to keep it."
        if intents.cancel or intents.lookup:
            self.intent = "cancel" if intents.cancel else "lookup"
            booking_id = parse_booking_id(words)
            if booking_id:
                return await self._with_id(booking_id, tools)
            self.state = "ask_id"
            self._id_attempts = 0
            return ("Sure. What is your booking number? Please say it one letter or digit at a time. Words like "
                    "Bravo and Kilo work best.")

        if is_small_talk(words):  # answered at once: no date to look up for a pleasantry
            return self._small_talk(words, intents)
        today = await self._today(tools)
        facts = self._extract(words, today)
        problem = self._apply(facts, today)
        if problem:
            return problem
        if self.state in {"confirm", "fix"} and not facts.any():
            if intents.yes and not intents.no:
                return await self._book(tools)
            if intents.no:
                self.state = "fix"
                return ("No problem. What would you like to change: the name, the date, the time, "
                        "or the number of guests?")
        if intents.availability and self._slots.date and self._slots.time:
            return await self._availability(tools)
        if facts.any() or intents.book:
            self.intent = "book"
            return self._next_question(facts)
        if intents.goodbye or (self.state == "done" and intents.no):
            self._reset()
            return f"Thank you for calling {self._restaurant}. Goodbye!"
        if self.state == "done" and intents.yes:
            self._reset()
            return "Sure. What can I do for you?"
        if intents.yes and self.state == "start":
            return "Great. Would you like to book a table, or look up or cancel a booking?"
        if intents.greeting or intents.small_talk:
            return self._small_talk(words, intents)
        return f"Sorry, I can only help with table bookings at {self._restaurant}. {self._prompt()}"

    def _small_talk(self, words: list[str], intents: Intents) -> str:
        """A greeting or pleasantry gets a friendly answer and the question the call is waiting on."""
        text = " ".join(words)
        if intents.small_talk:
            opener = "I'm very well, thank you for asking!"
        elif m := re.search(r"\bgood (morning|afternoon|evening)\b", text):
            opener = f"Good {m[1]}!"
        else:
            opener = "Hello there!"
        if self.state == "start":
            return (f"{opener} I can book a table for you at {self._restaurant}, or look up or cancel a booking. "
                    "Would you like to book a table?")
        return f"{opener} {self._prompt()}"

    def _extract(self, words: list[str], today: date) -> _Facts:
        asking = self._slots.missing() if self.intent == "book" else None
        name = parse_name(words, expecting=asking == "name", known=_KNOWN_NAMES)
        facts = _Facts(
            name=name,
            date=parse_date(words, today),
            time=parse_time(words, opening_hour=self._opening.hour, expecting=asking == "time"),
            guests=parse_party_size(words, expecting=asking == "guests"),
        )
        # Outside a booking, a lone date word in a longer sentence ("what's the weather like today") is
        # small talk, not a request for a table.
        lone_date = facts.date is not None and not (facts.name or facts.time or facts.guests)
        if self.intent is None and lone_date and len(words) > 3 and not parse_intents(words).book:
            return _Facts()
        return facts

    def _apply(self, facts: _Facts, today: date) -> str | None:
        """Fill (or correct) slots; a guest-facing problem message if a value cannot be used."""
        if facts.date is not None:
            if facts.date < today:
                return "That date has already passed. Which day would you like to come?"
            self._slots.date = facts.date
        if facts.time is not None:
            hh, mm = (int(p) for p in facts.time.split(":"))
            if not (self._opening <= time(hh, mm) < self._closing):
                return (f"We take bookings from {say_time(self._opening.strftime('%H:%M'))} until "
                        f"{say_time(self._closing.strftime('%H:%M'))}. What time would you like?")
            self._slots.time = facts.time
        if facts.guests is not None:
            if not 1 <= facts.guests <= self._max_party:
                return (f"I can book tables for up to {number_words(self._max_party)} guests. "
                        "How many people will be joining?")
            self._slots.guests = facts.guests
        if facts.name is not None:
            self._slots.name = facts.name
        return None

    def _next_question(self, facts: _Facts) -> str:
        missing = self._slots.missing()
        ack = f"Thank you, {facts.name.split()[0]}." if facts.name else ("Great." if facts.any() else "Sure.")
        if missing is not None:
            self.state = f"ask_{missing}"
            return f"{ack} {_QUESTIONS[missing]}"
        self.state = "confirm"
        return f"{ack} {self._summary()} Shall I book it?"

    def _summary(self) -> str:
        s = self._slots
        assert s.date
        assert s.time
        assert s.guests
        assert s.name
        today = self.today or self._fallback_today()
        people = "one person" if s.guests == 1 else f"{number_words(s.guests)} people"
        when = say_date(s.date, today)
        when = when if when.startswith(("today", "tomorrow")) else f"on {when}"
        return (f"That's a table for {people} {when} at {say_time(s.time)}, "
                f"under the name {s.name}.")

    def _prompt(self) -> str:
        if self.state.startswith("ask_") and self.state[4:] in _QUESTIONS:
            return _QUESTIONS[self.state[4:]]
        if self.state in {"confirm", "fix"}:
            return f"{self._summary()} Shall I book it?"
        return "Would you like to book a table, or look up or cancel a booking?"

    def _reset(self) -> None:
        self.state = "start"
        self.intent = None
        self._slots = _Slots()
        self._pending_id = None

    # --- tools ----------------------------------------------------------------------------------
    async def _today(self, tools: ToolCaller) -> date:
        if self.today is None:
            result = await tools("get_current_date_time", {})
            m = re.search(r"\b(\d{4})-(\d{2})-(\d{2})", json.dumps(result))
            self.today = date(int(m[1]), int(m[2]), int(m[3])) if m and not _error(result) else None
            if self.today is None:
                return self._fallback_today()
        return self.today

    async def _book(self, tools: ToolCaller) -> str:
        s = self._slots
        assert s.date
        assert s.time
        assert s.guests
        assert s.name
        result = await tools("create_restaurant_booking", {
            "name": s.name, "date": s.date.isoformat(), "hour": s.time, "num_guests": s.guests})
        error = _error(result)
        if error is not None and _find_value(result, "code") == "booking_limit":
            return self._limit_refusal(result)
        if error is not None:
            alternatives = [a for a in _find_list(result, "alternatives") if isinstance(a, str)]
            if alternatives:
                options = " or ".join(say_time(a) for a in alternatives[:3])
                full = say_time(s.time)
                self._slots.time = None
                self.state = "ask_time"
                return (f"Sorry, we are fully booked at {full} that day. I could offer {options}. "
                        "Which would you prefer?")
            self.state = "fix"
            return f"Sorry, I couldn't make that booking. {error} What would you like to change?"
        booking = _find_booking(result)
        booking_id = booking.get("booking_id") if booking else None
        self._reset()
        self.state = "done"
        if not booking_id:
            return "Your table is booked. Is there anything else I can help with?"
        return (f"Your table is booked. Your booking number is {say_booking_id(str(booking_id))}. "
                "Is there anything else I can help with?")

    def _limit_refusal(self, result: dict[str, Any]) -> str:
        """A booking limit said no: say why in words, and what to do; asking to change the booking won't help."""
        s = self._slots
        limit, allowed, held = (_find_value(result, k) for k in ("limit", "allowed", "held"))
        phone = _find_value(result, "phone")
        when = say_date(s.date, self.today or self._fallback_today()) if s.date else "that day"
        when = when if when.startswith(("today", "tomorrow", "that")) else f"on {when}"
        if limit == "per_slot" and s.time:
            why = f"you already have a booking at {say_time(s.time)} {when}, and I can only take one per guest then"
        elif limit == "per_day" and isinstance(allowed, int):
            bookings = "a booking" if allowed == 1 else f"{number_words(allowed)} bookings"
            why = f"you already have {bookings} {when}, the most I can take for one guest in a day"
        elif isinstance(allowed, int) and isinstance(held, int) and s.guests:
            party = "one more guest" if s.guests == 1 else f"{number_words(s.guests)} more guests"
            why = (f"your bookings already hold {number_words(held)} seats, and I can hold at most "
                   f"{number_words(allowed)} for one guest, so I can't add {party}")
        else:
            why = "that is more than I can book for one guest"
        self._reset()
        self.state = "done"
        call = f"please call the restaurant on {phone}" if isinstance(phone, str) and phone else \
            "please call the restaurant"
        return (f"Sorry, {why}. To book more, {call}, or cancel a booking you no longer need. "
                "Is there anything else I can help with?")

    async def _availability(self, tools: ToolCaller) -> str:
        s = self._slots
        assert s.date
        assert s.time
        result = await tools("check_availability", {
            "date": s.date.isoformat(), "hour": s.time, "num_guests": s.guests or 2})
        error = _error(result)
        if error is not None:
            return f"Sorry, I couldn't check that. {error}"
        available = _find_value(result, "available")
        self.intent = "book"
        if available:
            return f"Yes, we have a table at {say_time(s.time)}. {self._next_question(_Facts())}"
        alternatives = [a for a in _find_list(result, "alternatives") if isinstance(a, str)]
        full = say_time(s.time)
        self._slots.time = None
        self.state = "ask_time"
        if alternatives:
            return (f"Sorry, {full} is full. I could offer "
                    f"{' or '.join(say_time(a) for a in alternatives[:3])}. Which would you prefer?")
        return "Sorry, we are fully booked then. Would another time suit you?"

    async def _with_id(self, booking_id: str, tools: ToolCaller) -> str:
        result = await tools("get_restaurant_booking", {"booking_id": booking_id})
        booking = _find_booking(result)
        if _error(result) is not None or booking is None:
            self._id_attempts += 1
            if self._id_attempts >= 3:
                self._reset()
                return (f"Sorry, I couldn't find booking {say_booking_id(booking_id)}. "
                        "Is there anything else I can help with?")
            self.state = "ask_id"
            return (f"Sorry, I couldn't find a booking with the number {say_booking_id(booking_id)}. "
                    "Could you say it again, one letter or digit at a time?")
        details = _describe(booking, self.today or self._fallback_today())
        if booking.get("status") == "cancelled":
            self._reset()
            return f"I found {details} That booking has been cancelled. Is there anything else I can help with?"
        if self.intent == "cancel":
            self._pending_id = str(booking.get("booking_id") or booking_id)
            self.state = "confirm_cancel"
            return f"I found {details} Shall I cancel it?"
        self._reset()
        self.state = "done"
        return f"I found {details} It is confirmed. Is there anything else I can help with?"

    async def _cancel(self, tools: ToolCaller) -> str:
        booking_id = self._pending_id
        assert booking_id
        result = await tools("delete_restaurant_booking", {
            "booking_id": booking_id, "cancellation_reason": "cancelled by the guest on the phone"})
        error = _error(result)
        self._reset()
        self.state = "done"
        if error is not None:
            return f"Sorry, I couldn't cancel that booking. {error} Is there anything else I can help with?"
        return f"Your booking {say_booking_id(booking_id)} has been cancelled. Is there anything else I can help with?"


# --- reading tool results (the session core's JSON: tolerate wrappers and key styles) ------------


def _error(result: dict[str, Any]) -> str | None:
    err = result.get("error")
    if err:
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or "Something went wrong.")
        return str(err)
    if result.get("success") is False or result.get("status") == "error":
        return str(result.get("message") or "Something went wrong.")
    return None


def _find_value(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for value in obj.values():
            found = _find_value(value, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for value in obj:
            found = _find_value(value, key)
            if found is not None:
                return found
    return None


def _find_list(obj: Any, key: str) -> list[Any]:
    value = _find_value(obj, key)
    return value if isinstance(value, list) else []


def _find_booking(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, dict):
        if "booking_id" in obj:
            return obj
        if "bookingId" in obj:
            return {**obj, "booking_id": obj["bookingId"]}
        for value in obj.values():
            found = _find_booking(value)
            if found is not None:
                return found
    return None


def _describe(booking: dict[str, Any], today: date) -> str:
    parts = ["a booking"]
    guests = booking.get("num_guests")
    if isinstance(guests, int):
        parts = [f"a table for {'one person' if guests == 1 else number_words(guests) + ' people'}"]
    if booking.get("name"):
        parts.append(f"under the name {booking['name']}")
    with contextlib.suppress(ValueError):
        when = say_date(date.fromisoformat(str(booking.get("date"))), today)
        parts.append(when if when.startswith(("today", "tomorrow")) else f"on {when}")
    hour = str(booking.get("hour") or "")
    if re.fullmatch(r"\d{2}:\d{2}", hour):
        parts.append(f"at {say_time(hour)}")
    text = " ".join(parts)
    return text if text.endswith(".") else text + "."
