"""The session core on the real Nova Sonic client against the strict emulator, for the edge-limit tests.

One helper for every test here that needs a live session without a transport (call limits, the session's
declared seams); tests/speech has its own harness for the speech area.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from emulators.identity import CredentialBook, IssuedCredentials
from emulators.nova_sonic import NovaSonicEmulator, Script
from emulators.nova_sonic import TestCertificates as Certificates
from runtime import turn_trace
from runtime.bookings.service import BookingService
from runtime.settings import Settings
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.session import SessionConfig, SessionManager
from runtime.stores.factory import make_store
from runtime.turn_trace import TurnTrace


class Output:
    """A SessionOutput that keeps every message, and the call trace current where its audio came from.

    ``suspending``: each message first yields to the loop, as a real transport's send may; a session that
    declared itself ended before queueing its last message would then be caught out.
    """

    def __init__(self, *, suspending: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.audio_bytes = 0
        self.audio_traces: list[TurnTrace | None] = []
        self.ended = asyncio.Event()
        self._suspending = suspending

    async def audio(self, pcm: bytes) -> None:
        self.audio_bytes += len(pcm)
        self.audio_traces.append(turn_trace.current())

    def flush_audio(self) -> None:
        pass

    async def message(self, message: dict[str, Any]) -> None:
        if self._suspending:
            await asyncio.sleep(0)
        self.messages.append(message)
        if message.get("type") == "status" and message.get("state") == "ended":
            self.ended.set()


@asynccontextmanager
async def nova_manager(tmp_path: Path, certs: Certificates, monkeypatch: pytest.MonkeyPatch,
                       script: Script, **limits: Any) -> AsyncIterator[tuple[NovaSonicEmulator, SessionManager]]:
    settings = Settings(data_dir=tmp_path, speech_engine="nova-sonic", session_secret="s" * 32,
                        speech_greet_first=False, **limits)
    book = CredentialBook()  # the keys the suite's environment signs with (tests/conftest.py)
    book.add(IssuedCredentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                               os.environ.get("AWS_SESSION_TOKEN") or None))
    emulator = NovaSonicEmulator(script, credentials=book, turn_pause_seconds=0.12)
    store = make_store(settings)
    await store.start()
    try:
        async with emulator.serve(certs.cert_file, certs.key_file) as url:
            monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
            model = NovaSonicModel(settings, ca_file=certs.ca_file, connect_timeout_ms=2000)
            manager = SessionManager(model, BookingService(store.bookings, settings), store, settings,
                                     session_secret="s" * 32,
                                     config=SessionConfig.from_settings(settings))
            try:
                yield emulator, manager
            finally:
                await manager.close_all("test over")
                await model.close()
    finally:
        await store.close()
