"""Soak-test fixtures: the session core on the offline engine, as ``serve`` wires it (models are process-wide)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.bookings.service import BookingService
from runtime.engine import OfflineEngine
from runtime.settings import Settings, load_settings
from runtime.speech.session import SessionManager
from runtime.stores.sqlite import SQLiteStore

SECRET = "soak-tests-secret"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, sqlite_path=tmp_path / "bookings.db", session_secret=SECRET)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[OfflineEngine]:
    engine = OfflineEngine(settings)
    await engine.warm_up()
    yield engine
    await engine.close()


@pytest.fixture
async def sessions(engine: OfflineEngine, settings: Settings) -> AsyncIterator[SessionManager]:
    store = SQLiteStore(settings.sqlite_file)
    await store.start()
    manager = SessionManager(engine, BookingService(store.bookings, settings), store, settings, session_secret=SECRET)
    yield manager
    await manager.close_all()
    await store.close()
