"""Configuration comes from the environment and bad values are refused with a clear message."""

from __future__ import annotations

import subprocess
import sys
from datetime import time

import pytest
from pydantic import ValidationError

from runtime.settings import Settings


def test_defaults_are_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.store == "sqlite"
    assert settings.speech_engine == "local"
    assert settings.booking_table == "RestaurantBookings"
    assert settings.chat_history_table == "NovaSonicConversations"
    assert settings.session_table == "NovaSonicSessions"
    assert settings.nova_sonic_model_id == "amazon.nova-2-sonic-v1:0"


def test_environment_names_match_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE", "dynamodb")
    monkeypatch.setenv("SPEECH_ENGINE", "nova-sonic")
    monkeypatch.setenv("BOOKING_TABLE", "b")
    monkeypatch.setenv("TURN_URLS", "turn:turn.example.com:3478?transport=udp, turns:turn.example.com:443")
    monkeypatch.setenv("OPENING_TIME", "12:00")
    settings = Settings()
    assert (settings.store, settings.speech_engine, settings.booking_table) == ("dynamodb", "nova-sonic", "b")
    assert settings.turn_urls == ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:443"]
    assert settings.opening_time == time(12, 0)


@pytest.mark.parametrize(("name", "value"), [
    ("STORE", "postgres"), ("RESTAURANT_TIMEZONE", "Mars/Olympus"), ("PORT", "70000"), ("SEATS_PER_SLOT", "0"),
])
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_closing_must_follow_opening(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENING_TIME", "22:00")
    monkeypatch.setenv("CLOSING_TIME", "11:00")
    with pytest.raises(ValidationError, match="CLOSING_TIME"):
        Settings()


def test_cli_reports_bad_configuration_without_a_trace() -> None:
    result = subprocess.run([sys.executable, "-m", "runtime", "serve"], env={"STORE": "postgres", "PATH": ""},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "store" in result.stderr.lower()
    assert "Traceback" not in result.stderr
