"""Fixtures for the speech area: the emulator over real TLS + HTTP/2, the real SQLite store, a recording sink."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from emulators.identity import CredentialBook, IssuedCredentials
from emulators.nova_sonic import NovaSonicEmulator, Script, TestCertificates, make_test_certificates, tone
from runtime.bookings.service import BookingService
from runtime.settings import Settings
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.session import SessionConfig, SessionManager, SpeechSession
from runtime.stores.base import Store
from runtime.stores.factory import make_store

SECRET = "test-session-secret-0123456789"
# The service's end-of-turn pause is 1.5-2 s (per endpointingSensitivity); the fast tests use this instead,
# explicitly, so a conversation of a few turns takes well under a second. Tests of the pause itself pass
# ``turn_pause_seconds=None`` (the service's value).
TEST_TURN_PAUSE_SECONDS = 0.12


def environment_credentials() -> CredentialBook:
    """A book holding the keys the suite's environment signs with (tests/conftest.py sets them): the
    emulator then verifies every signature of the default harness against them."""
    book = CredentialBook()
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        book.add(IssuedCredentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                                   os.environ.get("AWS_SESSION_TOKEN") or None))
    return book


class RecordingOutput:
    """A SessionOutput that keeps everything, like a transport that never drops anything."""

    def __init__(self) -> None:
        self.audio_bytes = 0
        self.chunks: list[bytes] = []
        self.flushes = 0
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def audio(self, pcm: bytes) -> None:
        self.audio_bytes += len(pcm)
        self.chunks.append(pcm)
        self._changed.set()

    def flush_audio(self) -> None:
        self.flushes += 1
        self.chunks.clear()

    async def message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def finals(self, role: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.of_type("transcript") if m["final"] and (role is None or m["role"] == role)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                try:
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()
                except TimeoutError:
                    pass


@asynccontextmanager
async def served_model(certs: TestCertificates, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                       book: CredentialBook, **options: Any) -> AsyncIterator[tuple[NovaSonicEmulator, NovaSonicModel]]:
    """An empty-script emulator verifying against ``book``, and the real SDK client pointed at it."""
    emulator = NovaSonicEmulator(Script([]), credentials=book, **options)
    async with emulator.serve(certs.cert_file, certs.key_file) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
        model = NovaSonicModel(settings, ca_file=certs.ca_file, connect_timeout_ms=2000)
        try:
            yield emulator, model
        finally:
            await model.close()


async def speak(session: SpeechSession, ms: int = 320) -> None:
    """Push ``ms`` of 'speech' (a tone with energy), in 20 ms pieces like a WebRTC transport."""
    pcm = tone(ms, rate=16_000, freq=300.0, amplitude=4000)
    for offset in range(0, len(pcm), 640):
        await session.push_audio(pcm[offset:offset + 640])


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(str(tmp_path_factory.mktemp("nova-tls")))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Scripts here are written for a model that waits for the guest; the greeting at the start of a call
    # (on in production) would take their first turn. tests/speech/test_greeting*.py turn it on.
    return Settings(data_dir=tmp_path, speech_engine="nova-sonic", session_secret=SECRET, speech_greet_first=False)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = make_store(settings)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
def bookings(store: Store, settings: Settings) -> BookingService:
    return BookingService(store.bookings, settings)


FAST = SessionConfig(backoff_initial_seconds=0.05, backoff_max_seconds=0.2, quiet_boundary_seconds=0.3)


class Harness:
    def __init__(self, emulator: NovaSonicEmulator, manager: SessionManager) -> None:
        self.emulator = emulator
        self.manager = manager

    async def session(self) -> tuple[SpeechSession, RecordingOutput]:
        output = RecordingOutput()
        session = await self.manager.create(output, transport="websocket")
        await session.start()
        return session, output


@pytest.fixture
def harness(certs: TestCertificates, settings: Settings, store: Store, bookings: BookingService,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``async with harness(script, config=..., **emulator_options) as h`` - the production client path.

    The emulator is strict (signatures, values, limits) as the service is; by default it accepts the
    environment's keys (``credentials=`` another book to change that) and the test turn pause.
    """

    @asynccontextmanager
    async def make(script: Script, *, config: SessionConfig = FAST, **options: Any) -> AsyncIterator[Harness]:
        options.setdefault("credentials", environment_credentials())
        options.setdefault("turn_pause_seconds", TEST_TURN_PAUSE_SECONDS)
        emulator = NovaSonicEmulator(script, **options)
        async with emulator.serve(certs.cert_file, certs.key_file) as url:
            monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
            monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
            model = NovaSonicModel(settings, connect_timeout_ms=2000)
            manager = SessionManager(model, bookings, store, settings, session_secret=SECRET, config=config)
            try:
                yield Harness(emulator, manager)
            finally:
                await manager.close_all("test over")
                await model.close()

    return make
