"""The speech section of the service graph: the configured model, and shutdown ending live calls."""

from __future__ import annotations

import pytest

from emulators.nova_sonic import NovaSonicEmulator, Say, Script, Turn
from runtime.services import Overrides, build_services
from runtime.speech.factory import make_speech_model
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.session import SessionManager
from tests.speech.conftest import TEST_TURN_PAUSE_SECONDS, RecordingOutput, environment_credentials, speak

pytestmark = pytest.mark.timeout(60)


def test_engine_setting_picks_the_model(settings) -> None:
    assert isinstance(make_speech_model(settings), NovaSonicModel)


async def test_shutdown_ends_live_sessions_and_records_them(certs, settings, store, monkeypatch) -> None:
    emulator = NovaSonicEmulator(Script([Turn("hello", Say("hi", 100))]), credentials=environment_credentials(),
                                 turn_pause_seconds=TEST_TURN_PAUSE_SECONDS)
    async with emulator.serve(certs.cert_file, certs.key_file) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
        monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
        services = await build_services(settings, Overrides(store=store))
        assert isinstance(services.sessions, SessionManager)
        output = RecordingOutput()
        session = await services.sessions.create(output, transport="webrtc", voice="tiffany")
        await session.start()
        await speak(session)
        await output.wait_for(lambda: len(output.finals("ASSISTANT")) == 1)
        await services.close()  # what the app lifespan does on SIGTERM

        assert session.ended
        assert services.sessions.active_count == 0
        [stream] = emulator.streams
        assert stream.names()[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
        prompt = next(b for n, b in stream.events if n == "promptStart")
        assert prompt["audioOutputConfiguration"]["voiceId"] == "tiffany"
    await store.start()  # services.close() closed the shared store; reopen to read what it kept
    record = await store.sessions.get(session.session_id)
    assert record is not None
    assert (record.status, record.end_reason, record.transport) == ("ended", "shutdown", "webrtc")
    assert [t.role for t in await store.conversations.list(session.session_id)] == ["USER", "ASSISTANT"]
