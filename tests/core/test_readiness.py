"""Readiness means a caller can be served at once: stores open and the speech engine's models loaded."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.settings import Settings


def test_readyz_waits_for_the_offline_engine_and_health_does_not(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, workers=1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        first = client.get("/readyz")
        assert first.status_code == 503  # models not loaded yet: the probe starts loading them
        assert first.json() == {"status": "starting"}
        deadline = time.monotonic() + 120
        while (response := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "the offline engine never became ready"
            time.sleep(0.2)
        assert response.json() == {"status": "ready"}
        assert client.app.state.services.speech_model.ready


def test_serve_style_start_up_warms_the_engine(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, workers=1,
                        speech_warm_up=True)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the offline engine never became ready"
            time.sleep(0.2)
