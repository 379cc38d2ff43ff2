"""All app state is built at start-up in ``build_services``; the voice catalogue is one rule everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.errors import ValidationFailed
from runtime.media.routes import MediaHub
from runtime.services import Overrides
from runtime.settings import Settings
from runtime.speech.session import SessionManager
from runtime.speech.voices import NOVA_SONIC_VOICES, check_voice, default_voice, voices_for
from tools.echo import EchoSessionFactory


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, staff_token="staff", session_secret="s" * 32, workers=1, **extra)


def test_the_media_hub_exists_before_any_request_and_serves_the_session_manager(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:
        services = client.app.state.services
        assert isinstance(services.sessions, SessionManager)
        assert services.media.session_factory is services.sessions
        assert not hasattr(client.app.state, "media"), "one place for the hub: services.media"


def test_an_overridden_hub_takes_the_calls(tmp_path: Path) -> None:
    echo = EchoSessionFactory()
    hub = MediaHub(session_factory=echo)
    with TestClient(create_app(_settings(tmp_path), Overrides(media=hub))) as client:
        assert client.app.state.services.media is hub
        with client.websocket_connect("/ws/audio") as ws:
            assert ws.receive_json()["type"] == "session"
            assert [s.transport for s in echo.active] == ["websocket"]
            ws.send_json({"type": "hangup"})
    assert echo.ended[0].end_reason == "caller hung up"


def test_config_offer_and_session_manager_apply_one_voice_rule(tmp_path: Path) -> None:
    assert voices_for("local") == ["heart"]
    assert voices_for("nova-sonic") == list(NOVA_SONIC_VOICES)
    assert default_voice("nova-sonic", "greta") == "matthew"  # a Nova Sonic v1 voice Nova 2 refuses
    assert default_voice("nova-sonic", "tina") == "tina"
    with pytest.raises(ValidationFailed):
        check_voice("local", "matthew")
    with pytest.raises(ValidationFailed):
        check_voice("nova-sonic", ["matthew"])
    settings = _settings(tmp_path, speech_engine="nova-sonic", voice_id="greta")
    with TestClient(create_app(settings)) as client:
        config = client.get("/api/config").json()
        assert config["voice"] == "matthew"
        assert "greta" not in config["voices"]
        refused = client.post("/api/webrtc/offer", json={"sdp": "v=0\r\n", "type": "offer", "voice": "greta"})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "validation_error"
        manager = client.app.state.services.sessions
        with pytest.raises(ValidationFailed):
            client.portal.call(lambda: manager.create(_Quiet(), transport="websocket", voice="greta"))
        session = client.portal.call(lambda: manager.create(_Quiet(), transport="websocket"))
        assert session.voice == "matthew", "the session's default is the catalogue's, as /api/config says"
        client.portal.call(session.end, "test over")


class _Quiet:
    """A SessionOutput that drops everything (these sessions are never started)."""

    async def audio(self, pcm: bytes) -> None:
        pass

    def flush_audio(self) -> None:
        pass

    async def message(self, message: dict[str, object]) -> None:
        pass
