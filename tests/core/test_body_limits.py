"""Body limits per route: REST bodies are capped small; the events publish endpoint takes AppSync's sizes."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.settings import Settings


def _app(tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, appsync_api_key="k" * 24,
                        workers=1)
    return TestClient(create_app(settings))


def test_rest_bodies_are_capped_but_event_publishes_reach_the_gateway(tmp_path: Path) -> None:
    with _app(tmp_path) as client:
        big_booking = {"name": "A" * 70_000, "date": "2030-01-01", "hour": "19:00", "num_guests": 2}
        response = client.post("/api/bookings", json=big_booking)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        # 250 KB event: over AppSync's 240 KB per-event limit but well within the 1.2 MB request limit,
        # so the gateway answers with AppSync's per-event failure instead of a blanket 413.
        events = [json.dumps({"n": 1}), json.dumps({"blob": "x" * 250_000})]
        response = client.post("/event", headers={"x-api-key": "k" * 24},
                               json={"channel": "/restaurant-booking/BK-TEST", "events": events})
        assert response.status_code == 200, response.text
        body = response.json()
        assert [entry["index"] for entry in body["successful"]] == [0]
        assert body["failed"][0]["index"] == 1
        assert body["failed"][0]["code"] == "EventTooLargeException"

        response = client.post("/event", headers={"x-api-key": "k" * 24},
                               content=b'{"channel":"/restaurant-booking/x","events":["' + b"x" * 1_400_000 + b'"]}')
        assert response.status_code == 413
        assert client.get("/healthz").status_code == 200
