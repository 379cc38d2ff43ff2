"""The offline engine greets by itself: the session never sends it the greeting prompt, so the guest is greeted
once (docs/greeting.md). The real engine behind the real session core; its streams' input is recorded on the
way through, nothing is replaced."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runtime.engine import OfflineEngine
from runtime.engine.engine import OfflineStream
from runtime.settings import Settings
from runtime.speech.session import SessionManager
from tests.speech.conftest import SECRET, RecordingOutput

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture
def settings(engine_cache: Path, tmp_path: Path) -> Settings:
    return Settings(data_dir=engine_cache, sqlite_path=tmp_path / "concierge.db", speech_engine="local",
                    session_secret=SECRET, restaurant_name="Trattoria Lumen")


async def test_the_offline_engine_greets_once_and_gets_no_greeting_prompt(settings, store, bookings,
                                                                          monkeypatch) -> None:
    assert settings.speech_greet_first  # the default: on, and still no prompt for this engine
    sent: list[dict[str, Any]] = []
    send = OfflineStream.send

    async def recording_send(self: OfflineStream, event: dict[str, Any]) -> None:
        sent.append(event)
        await send(self, event)

    monkeypatch.setattr(OfflineStream, "send", recording_send)
    engine = OfflineEngine(settings)
    await engine.warm_up()
    manager = SessionManager(engine, bookings, store, settings, session_secret=SECRET)
    out = RecordingOutput()
    session = await manager.create(out, transport="websocket")
    try:
        await session.start()
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1, within=30)
        await asyncio.sleep(1.5)  # a second greeting, had one been asked for, would have come by now
        turns = [(t.role, t.text) for t in await store.conversations.list(session.session_id)]
    finally:
        await manager.close_all("test over")
        await engine.close()

    [greeting] = out.finals("ASSISTANT")
    assert "Trattoria Lumen" in greeting["text"]
    assert out.finals("USER") == []
    assert turns == [("ASSISTANT", greeting["text"])]
    interactive = [body for event in sent for name, body in event["event"].items()
                   if name == "contentStart" and body.get("interactive") and body.get("type") == "TEXT"]
    assert interactive == []
