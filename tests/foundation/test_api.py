"""The REST API as a client sees it: a real app (lifespan, middleware, store) over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from moto import mock_aws

from runtime.app import create_app
from runtime.auth import mint_session_token
from runtime.services import Overrides
from runtime.settings import Settings
from runtime.stores.base import Store

from .conftest import dynamodb_store

STAFF = {"Authorization": "Bearer staff-secret-token"}
FUTURE = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
PAST = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def guest(settings: Settings, session_id: str) -> dict[str, str]:
    assert settings.session_secret is not None
    token = mint_session_token(settings.session_secret.get_secret_value(), session_id, 600)
    return {"Authorization": f"Bearer {token}"}


def body(**changes: Any) -> dict[str, Any]:
    return {"name": "Ada Lovelace", "date": FUTURE, "hour": "19:00", "num_guests": 2, **changes}


@asynccontextmanager
async def running(settings: Settings, store: Store | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, Overrides(store=store))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
async def test_fifty_concurrent_posts_fill_the_slot_exactly(kind: str, settings: Settings) -> None:
    async def scenario(store: Store | None) -> None:
        async with running(settings, store) as client:
            responses = await asyncio.gather(*(
                client.post("/api/bookings", json=body(name=f"Guest {chr(65 + i % 26)}", num_guests=3))
                for i in range(50)
            ))
            created = [r for r in responses if r.status_code == 201]
            refused = [r for r in responses if r.status_code == 409]
            assert len(created) == 13
            assert len(refused) == 37
            for r in refused:
                error = assert_error(r, 409, "slot_full")
                assert error["message"].startswith(f"Sorry, 19:00 on {FUTURE} has room for only 1 more guest.")
                assert error["details"]["seats_left"] == 1
                assert "19:30" in error["details"]["alternatives"]
            listed = (await client.get(f"/api/bookings?date={FUTURE}", headers=STAFF)).json()["bookings"]
            assert sorted(b["booking_id"] for b in listed) == sorted(r.json()["booking_id"] for r in created)
            assert (await client.get("/healthz")).status_code == 200

    if kind == "sqlite":
        await scenario(None)
    else:
        with mock_aws():
            await scenario(dynamodb_store())


async def test_create_read_cancel(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/bookings", json=body(name="  Zoë   O'Brien ", num_guests=4))
    assert created.status_code == 201
    booking = created.json()
    assert booking["booking_id"].startswith("BK-")
    assert len(booking["booking_id"]) == 13
    assert {k: booking[k] for k in ("name", "date", "hour", "num_guests", "status")} == {
        "name": "Zoë O'Brien", "date": FUTURE, "hour": "19:00", "num_guests": 4, "status": "confirmed"}
    assert created.headers["location"] == f"/api/bookings/{booking['booking_id']}"
    assert (await client.get(created.headers["location"])).json() == booking
    # Read back the way a guest might type it off a receipt.
    assert (await client.get(f"/api/bookings/{booking['booking_id'].lower()}")).json() == booking

    cancelled = await client.request("DELETE", f"/api/bookings/{booking['booking_id']}", json={"reason": "flu"})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancellation_reason"] == "flu"
    again = await client.delete(f"/api/bookings/{booking['booking_id']}?reason=other")
    assert again.status_code == 200
    assert again.json() == cancelled.json()


async def test_cancelling_frees_the_seats(client: httpx.AsyncClient) -> None:
    parties = [await client.post("/api/bookings", json=body(num_guests=20)) for _ in range(2)]
    assert [p.status_code for p in parties] == [201, 201]
    assert_error(await client.post("/api/bookings", json=body(num_guests=1)), 409, "slot_full")
    await client.delete(f"/api/bookings/{parties[0].json()['booking_id']}?reason=no+show")
    assert (await client.post("/api/bookings", json=body(num_guests=20))).status_code == 201


async def test_idempotency_key_replay_and_reuse(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-7d1f"}
    first = await client.post("/api/bookings", json=body(), headers=headers)
    replay = await client.post("/api/bookings", json=body(), headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    reused = await client.post("/api/bookings", json=body(num_guests=5), headers=headers)
    assert_error(reused, 409, "idempotency_key_reused")
    listed = (await client.get(f"/api/bookings?date={FUTURE}", headers=STAFF)).json()["bookings"]
    assert len(listed) == 1
    assert_error(await client.post("/api/bookings", json=body(), headers={"Idempotency-Key": "x" * 201}), 422)


@pytest.mark.parametrize(("payload", "field"), [
    ({"date": FUTURE, "hour": "19:00", "num_guests": 2}, "name"),
    (body(num_guests="4"), "num_guests"),
    (body(num_guests=4.0), "num_guests"),
    (body(num_guests=True), "num_guests"),
    (body(num_guests=0), "num_guests"),
    (body(num_guests=21), "num_guests"),
    (body(num_guests=None), "num_guests"),
    (body(hour="25:00"), "hour"),
    (body(hour="19:15"), "hour"),
    (body(hour="07:00"), "hour"),
    (body(hour="22:00"), "hour"),
    (body(hour=1900), "hour"),
    (body(date=PAST), "date"),
    (body(date="2027-02-30"), "date"),
    (body(date="12/03/2026"), "date"),
    (body(date=(datetime.now(UTC) + timedelta(days=400)).date().isoformat()), "date"),
    (body(name=""), "name"),
    (body(name="   "), "name"),
    (body(name="12345"), "name"),
    (body(name="😀😀"), "name"),
    (body(name="Ada 😀"), "name"),
    (body(name="Robert'); DROP TABLE bookings;--"), "name"),
    (body(name="<script>alert(1)</script>"), "name"),
    (body(name="Ada\u0000Lovelace"), "name"),
    (body(name="Ada\nLovelace\u0007"), "name"),
    (body(name="A" * 101), "name"),
    (body(name=["Ada"]), "name"),
])
async def test_bad_booking_input_is_a_422_naming_the_field(client: httpx.AsyncClient, payload: dict[str, Any],
                                                           field: str) -> None:
    error = assert_error(await client.post("/api/bookings", json=payload), 422, "validation_error")
    assert field in error["details"]
    assert (await client.get("/healthz")).status_code == 200


async def test_malformed_requests(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/bookings", content=b'{"name": "Ada",',
                                   headers={"content-type": "application/json"}), 400, "invalid_json")
    assert_error(await client.post("/api/bookings", content=b"\xff\xfe{}",
                                   headers={"content-type": "application/json"}), 400, "invalid_json")
    assert_error(await client.post("/api/bookings", content=b"", headers={"content-type": "application/json"}),
                 400, "invalid_json")
    assert_error(await client.post("/api/bookings", data={"name": "Ada"}), 415, "unsupported_media_type")
    assert_error(await client.post("/api/bookings", json=[body()]), 422, "validation_error")
    assert_error(await client.post("/api/bookings", json="Ada"), 422, "validation_error")
    huge = b'{"name": "' + b"A" * (1024 * 1024) + b'"}'
    assert_error(await client.post("/api/bookings", content=huge, headers={"content-type": "application/json"}),
                 413, "payload_too_large")
    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(64):
            yield b"x" * 16384

    assert_error(await client.post("/api/bookings", content=streamed(), headers={"content-type": "application/json"}),
                 413, "payload_too_large")
    assert_error(await client.request("DELETE", "/api/bookings/BK-AAAAAAAAAA", content=b"[1]",
                                      headers={"content-type": "application/json"}), 422)
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("name", ["O'Brien", "José", "محمد علي", "דוד כהן", "Jean-Luc Picard", "Dr. Who",
                                  "Nguyễn Thị Minh Khai", "देवनागरी", "李小龙", "Zoë D’Arcy"])
async def test_real_names_are_accepted(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("/api/bookings", json=body(name=name))
    assert response.status_code == 201, response.text
    assert (await client.get(f"/api/bookings/{response.json()['booking_id']}")).json()["name"] == name


async def test_unknown_things_are_json_404s(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/bookings/BK-AAAAAAAAAA"), 404, "booking_not_found")
    assert_error(await client.get("/api/bookings/not-an-id"), 404, "booking_not_found")
    assert_error(await client.delete("/api/bookings/BK-AAAAAAAAAA"), 404, "booking_not_found")
    assert_error(await client.get("/api/nothing-here"), 404, "not_found")
    assert_error(await client.put("/api/bookings", json=body()), 405)


async def test_staff_list_needs_the_staff_token(client: httpx.AsyncClient, settings: Settings) -> None:
    await client.post("/api/bookings", json=body(hour="12:00"))
    await client.post("/api/bookings", json=body(hour="11:00"))
    assert_error(await client.get(f"/api/bookings?date={FUTURE}"), 401, "unauthorized")
    assert_error(await client.get(f"/api/bookings?date={FUTURE}", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(await client.get(f"/api/bookings?date={FUTURE}", headers=guest(settings, "sess-guest-1")), 403)
    listed = await client.get(f"/api/bookings?date={FUTURE}", headers=STAFF)
    assert listed.status_code == 200
    assert [b["hour"] for b in listed.json()["bookings"]] == ["11:00", "12:00"]
    assert_error(await client.get("/api/bookings?date=tomorrow", headers=STAFF), 422)


async def test_guest_bookings_remember_their_session(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post("/api/bookings", json=body(), headers=guest(settings, "sess-guest-1"))
    assert response.json()["session_id"] == "sess-guest-1"


async def test_conversation_access(client: httpx.AsyncClient, settings: Settings) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    for i, (role, text) in enumerate([("USER", "Hi, a table for two"), ("ASSISTANT", "For which date?"),
                                      ("USER", "Friday at seven")]):
        await store.conversations.append("sess-guest-1", role, text, turn_id=f"t{i}", now="2026-12-03T09:00:00Z")
    url = "/api/conversations/sess-guest-1"
    assert_error(await client.get(url), 401)
    assert_error(await client.get(url, headers=guest(settings, "sess-guest-2")), 403)
    own = await client.get(url, headers=guest(settings, "sess-guest-1"))
    assert own.status_code == 200
    assert [(t["seq"], t["role"], t["text"]) for t in own.json()["turns"]] == [
        (1, "USER", "Hi, a table for two"), (2, "ASSISTANT", "For which date?"), (3, "USER", "Friday at seven")]
    staff = await client.get(url, headers=STAFF)
    assert staff.status_code == 200
    assert staff.json()["turns"] == own.json()["turns"]
    assert_error(await client.get("/api/conversations/x", headers=STAFF), 404)


async def test_operational_endpoints(client: httpx.AsyncClient) -> None:
    await client.post("/api/bookings", json=body())
    # Readiness also waits for the speech engine's models, which the first probe starts loading.
    for _ in range(600):
        if (ready := await client.get("/readyz")).status_code == 200:
            break
        assert ready.json() == {"status": "starting"}
        await asyncio.sleep(0.2)
    assert ready.json() == {"status": "ready"}
    metrics = (await client.get("/metrics")).text
    assert 'bookings_total{operation="create",outcome="created"}' in metrics
    spec = (await client.get("/openapi.json")).json()
    assert {"post", "get"} <= set(spec["paths"]["/api/bookings"])
    assert "delete" in spec["paths"]["/api/bookings/{booking_id}"]
    assert "get" in spec["paths"]["/api/conversations/{session_id}"]


async def test_rate_limit_on_creates(client: httpx.AsyncClient) -> None:
    statuses = [(await client.post("/api/bookings", content=b"{", headers={"content-type": "application/json"}))
                for _ in range(65)]
    assert [r.status_code for r in statuses[:60]] == [400] * 60
    limited = assert_error(statuses[-1], 429, "rate_limited")
    assert "slow down" in limited["message"]
    assert statuses[-1].headers["retry-after"] == "1"
    assert (await client.get(f"/api/bookings?date={FUTURE}", headers=STAFF)).status_code == 200
