"""Engine fixtures: one offline engine per test (models are process-wide, so this is cheap), a real
BookingService on a SQLite store to execute the engine's tool calls, and a scripted caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runtime.bookings.service import BookingService
from runtime.engine import OfflineEngine
from runtime.settings import Settings, load_settings
from runtime.speech.model import StreamOptions
from runtime.speech.tools import ToolRunner, tool_specs
from runtime.stores.sqlite import SQLiteStore
from tools.engine_caller import ScriptedCaller


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture
def settings(engine_cache: Path, tmp_path: Path) -> Settings:
    return load_settings(data_dir=engine_cache, sqlite_path=tmp_path / "bookings.db", restaurant_name="Nova Bistro",
                         session_secret="engine-tests-secret")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[OfflineEngine]:
    engine = OfflineEngine(settings)
    await engine.warm_up()
    yield engine
    await engine.close()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(settings.sqlite_file)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
def bookings(store: SQLiteStore, settings: Settings) -> BookingService:
    return BookingService(store.bookings, settings)


class ToolLog:
    """Executes tool calls like the session core does (ToolRunner on the real BookingService) and records them."""

    def __init__(self, bookings: BookingService, session_id: str) -> None:
        self.runner = ToolRunner(bookings, session_id=session_id)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, tool_use_id: str, content: str) -> dict[str, Any]:
        outcome = await self.runner.run(name, tool_use_id, content)
        self.calls.append((name, outcome.result))
        return outcome.result

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def tool_log(bookings: BookingService) -> ToolLog:
    return ToolLog(bookings, "engine-test")


@pytest.fixture
async def caller(engine: OfflineEngine, tool_log: ToolLog) -> AsyncIterator[ScriptedCaller]:
    stream = await engine.open(StreamOptions(session_id="engine-test"))
    caller = ScriptedCaller(stream, tool_log)
    await caller.start(tool_specs=tool_specs())
    yield caller
    await caller.hang_up()


def today(settings: Settings) -> datetime:
    return datetime.now(settings.tz)
