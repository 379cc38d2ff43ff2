"""The whole standalone runtime: REST writes reach event subscribers through local change capture."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from runtime.app import create_app
from runtime.settings import Settings, load_settings
from tests.events.helpers import SECRET, SESSION_A, SESSION_B, STAFF, guest_token, open_client, serve

FUTURE = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, staff_token=STAFF, session_secret=SECRET)


async def test_booking_made_over_rest_reaches_staff_subscriber_within_a_second(settings: Settings) -> None:
    async with serve(create_app(settings)) as address, \
            open_client(f"ws://{address}/event/realtime", {"Authorization": STAFF}) as staff, \
            httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
        await staff.send({"type": "connection_init"})
        assert (await staff.recv())["type"] == "connection_ack"
        assert await staff.subscribe("all", "/restaurant-booking/*") == {"type": "subscribe_success", "id": "all"}
        response = await http.post("/api/bookings", json={"name": "Ada Lovelace", "date": FUTURE, "hour": "19:00",
                                                          "num_guests": 2})
        assert response.status_code == 201, response.text
        frame = await staff.recv(wait=1.0)  # the event arrives within a second of the booking
        booking = response.json()
        assert frame["id"] == "all"
        assert json.loads(frame["event"]) == {"type": "booking.created",
                                              "eventId": f"booking:{booking['booking_id']}:created",
                                              "booking": booking}

        cancelled = await http.request("DELETE", f"/api/bookings/{booking['booking_id']}",
                                       json={"reason": "plans changed"})
        assert cancelled.status_code == 200, cancelled.text
        event = json.loads((await staff.recv(wait=1.0))["event"])
        assert event["type"] == "booking.cancelled"
        assert event["eventId"] == f"booking:{booking['booking_id']}:cancelled"
        assert event["booking"]["status"] == "cancelled"


async def test_guest_sees_its_own_conversation_and_is_refused_another(settings: Settings) -> None:
    app = create_app(settings)
    async with serve(app) as address, \
            open_client(f"ws://{address}/event/realtime", {"Authorization": guest_token(SESSION_A)}) as guest:
        assert (await guest.subscribe("mine", f"/conversations/{SESSION_A}"))["type"] == "subscribe_success"
        assert await guest.subscribe("theirs", f"/conversations/{SESSION_B}") == {
            "type": "subscribe_error", "id": "theirs",
            "errors": [{"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}]}
        store = app.state.services.store
        await store.conversations.append(SESSION_B, "USER", "not for A", turn_id="b1", now="2026-12-03T09:00:00Z")
        await store.conversations.append(SESSION_A, "USER", "a table for two", turn_id="a1",
                                         now="2026-12-03T09:00:00Z")
        event = json.loads((await guest.recv(wait=1.0))["event"])
        assert event["type"] == "turn.added"
        assert event["turn"]["text"] == "a table for two"
        await guest.nothing()


async def test_cloud_mode_serves_no_embedded_gateway(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, staff_token=STAFF, session_secret=SECRET,
                             appsync_endpoint="https://example.appsync-api.us-east-1.amazonaws.com/event")
    app = create_app(settings)
    async with serve(app) as address, httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
        assert app.state.services.gateway is None
        response = await http.post("/event", json={"channel": "/conversations/x", "events": ["1"]})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        with pytest.raises(InvalidStatus):
            async with open_client(f"ws://{address}/event/realtime", {"Authorization": STAFF}):
                pass
