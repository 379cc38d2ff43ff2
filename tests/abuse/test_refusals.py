"""What a guest hears and a REST client gets when a booking limit says no: a 429 JSON error whose message
says why and what to do, the same sentence for the voice model's tool result, and the offline engine's
dialogue reading its own spoken version (dates and times in words)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.app import create_app
from runtime.auth import mint_session_token
from runtime.bookings.service import BookingService
from runtime.engine.dialogue import DialogueManager
from runtime.services import Overrides
from runtime.settings import Settings, load_settings
from runtime.speech.tools import ToolRunner
from runtime.stores.sqlite import SQLiteStore

STAFF = {"Authorization": "Bearer staff-secret-token"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, staff_token="staff-secret-token", session_secret="abuse-tests-secret",
                         restaurant_phone="+1 555 0100")


@pytest.fixture
async def bookings(settings: Settings) -> AsyncIterator[BookingService]:
    store = SQLiteStore(settings.sqlite_file)
    await store.start()
    yield BookingService(store.bookings, settings)
    await store.close()


def future(settings: Settings, days: int = 3) -> str:
    return (datetime.now(settings.tz).date() + timedelta(days=days)).isoformat()


async def test_rest_refuses_with_a_429_json_error_a_guest_can_act_on(settings: Settings) -> None:
    token = mint_session_token("abuse-tests-secret", str(uuid.uuid4()), 600)
    guest = {"Authorization": f"Bearer {token}"}
    day = future(settings)

    def body(hour: str) -> dict[str, Any]:
        return {"name": "Ada Lovelace", "date": day, "hour": hour, "num_guests": 2}

    app = create_app(settings, Overrides())
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                   base_url="http://testserver") as http:
        first = await http.post("/api/bookings", json=body("12:00"), headers={**guest, "Idempotency-Key": "k1"})
        assert first.status_code == 201
        assert (await http.post("/api/bookings", json=body("19:00"), headers=guest)).status_code == 201
        refused = await http.post("/api/bookings", json=body("20:00"), headers=guest)
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/json")
        error = refused.json()["error"]
        assert error["code"] == "booking_limit"
        assert error["details"] == {"limit": "per_day", "allowed": 2, "held": 2, "phone": "+1 555 0100"}
        assert "2 bookings per guest per day" in error["message"]
        assert "call Nova Bistro on +1 555 0100" in error["message"]
        # the retry of the first booking is its replay, not a third booking
        replay = await http.post("/api/bookings", json=body("12:00"), headers={**guest, "Idempotency-Key": "k1"})
        assert (replay.status_code, replay.json()) == (200, first.json())
        # cancelling gives the allowance back; staff (the front desk) are never limited
        booking_id = first.json()["booking_id"]
        assert (await http.delete(f"/api/bookings/{booking_id}")).status_code == 200
        assert (await http.post("/api/bookings", json=body("20:00"), headers=guest)).status_code == 201
        for hour in ("13:00", "14:00", "15:00"):
            assert (await http.post("/api/bookings", json=body(hour), headers=STAFF)).status_code == 201


async def test_the_voice_tool_result_carries_the_spoken_reason(bookings: BookingService, settings: Settings) -> None:
    runner = ToolRunner(bookings, session_id="call-2", client="198.51.100.9")
    args = {"name": "Ada", "date": future(settings), "hour": "19:00", "num_guests": 20}
    assert (await runner.run("create_restaurant_booking", "t1", json.dumps(args))).ok
    args = {**args, "date": future(settings, 4), "num_guests": 12}
    outcome = await runner.run("create_restaurant_booking", "t2", json.dumps(args))
    assert outcome.result["code"] == "booking_limit"
    assert outcome.result["details"]["limit"] == "seats"
    assert outcome.result["error"].startswith("Sorry, we hold at most 30 seats per guest online, and your bookings "
                                              "already hold 20, so a party of 12 does not fit.")
    # the same address in another call is the same client
    other_call = ToolRunner(bookings, session_id="call-3", client="198.51.100.9")
    outcome = await other_call.run("create_restaurant_booking", "t3", json.dumps(args))
    assert outcome.result["code"] == "booking_limit"


class Guest:
    def __init__(self, settings: Settings, bookings: BookingService) -> None:
        self.dialogue = DialogueManager(restaurant=settings.restaurant_name, opening=settings.opening_time,
                                        closing=settings.closing_time, max_party=settings.max_party_size,
                                        fallback_today=lambda: datetime.now(settings.tz).date())
        self.runner = ToolRunner(bookings, session_id="dialogue-call", client="198.51.100.9")

    async def _tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return (await self.runner.run(name, str(uuid.uuid4()), json.dumps(args))).result

    async def books(self, request: str, name: str = "my name is alice smith") -> str:
        await self.dialogue.respond(request, self._tool)
        await self.dialogue.respond(name, self._tool)
        return await self.dialogue.respond("yes please", self._tool)


async def test_the_offline_dialogue_speaks_each_refusal(bookings: BookingService, settings: Settings) -> None:
    guest = Guest(settings, bookings)
    assert "booking number" in await guest.books("book a table for twenty people tomorrow at seven pm")
    reply = await guest.books("book a table for two people tomorrow at seven pm")
    assert reply.startswith("Sorry, you already have a booking at seven p.m. tomorrow")  # date in words follows
    assert reply.endswith("and I can only take one per guest then. To book more, please call the restaurant on "
                          "+1 555 0100, or cancel a booking you no longer need. Is there anything else I can help "
                          "with?")
    assert "booking number" in await guest.books("book a table for two people tomorrow at eight pm")
    reply = await guest.books("book a table for two people tomorrow at nine pm")
    assert reply.startswith("Sorry, you already have two bookings tomorrow")
    assert "the most I can take for one guest in a day." in reply
    reply = await guest.books("book a table for ten people the day after tomorrow at seven pm")
    assert reply.startswith("Sorry, your bookings already hold twenty two seats, and I can hold at most thirty for "
                            "one guest, so I can't add ten more guests.")
    tomorrow = (datetime.now(settings.tz).date() + timedelta(days=1)).isoformat()
    assert [(b.hour, b.num_guests) for b in await bookings.list_by_date(tomorrow)] == [("19:00", 20), ("20:00", 2)]


async def test_rest_limits_the_address_the_alb_saw_whatever_the_client_forges(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, staff_token="staff-secret-token", session_secret="abuse-tests-secret",
                             trust_proxy_headers=True)
    day = future(settings)
    app = create_app(settings, Overrides())
    transport = httpx.ASGITransport(app=app, client=("10.0.3.7", 40000))  # the ALB's side of the connection

    async def post(hour: str, forwarded: str) -> httpx.Response:
        return await http.post("/api/bookings", json={"name": "Ada Lovelace", "date": day, "hour": hour,
                                                      "num_guests": 2}, headers={"X-Forwarded-For": forwarded})

    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                   base_url="http://testserver") as http:
        assert (await post("12:00", "1.1.1.1, 198.51.100.9")).status_code == 201
        assert (await post("13:00", "2.2.2.2, 198.51.100.9")).status_code == 201
        refused = await post("14:00", "3.3.3.3, 198.51.100.9")  # a fresh forged hop buys nothing
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "booking_limit")
        assert (await post("14:00", "198.51.100.9, 203.0.113.4")).status_code == 201  # another guest
