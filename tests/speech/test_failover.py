"""Engine failover and the circuit breaker (docs/failover.md), against the strict Nova Sonic emulator.

The production client (NovaSonicModel over TLS + HTTP/2) talks to the emulator, which refuses streams with
``throttlingException`` as Bedrock does at its concurrency quota; the fallback is the real offline engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import REGISTRY

from emulators.nova_sonic import CallTool, Fail, NovaSonicEmulator, Say, Script, Turn
from runtime.bookings.service import BookingService
from runtime.errors import Unavailable
from runtime.settings import Settings
from runtime.speech.failover import CircuitBreaker, Failover, make_failover
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.session import SessionConfig, SessionManager, SpeechSession
from runtime.stores.base import Store
from tests.speech.conftest import SECRET, TEST_TURN_PAUSE_SECONDS, RecordingOutput, environment_credentials, speak

if TYPE_CHECKING:
    from emulators.nova_sonic import TestCertificates  # a dataclass pytest would try to collect

COOLDOWN = 1.0
# One reconnect per fault: a refused session costs exactly two emulator streams, which the tests count.
CONFIG = SessionConfig(max_attempts=1, backoff_initial_seconds=0.05, backoff_max_seconds=0.1,
                       quiet_boundary_seconds=0.3)


@pytest.fixture(scope="session")
def engine_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("failover-engine")  # the offline engine's built LM files, built once


@pytest.fixture
def settings(engine_data: Path, tmp_path: Path) -> Settings:
    return Settings(data_dir=engine_data, sqlite_path=tmp_path / "bookings.db", speech_engine="nova-sonic",
                    session_secret=SECRET, speech_fallback_engine="local", speech_breaker_failures=2,
                    speech_breaker_window_seconds=60, speech_breaker_cooldown_seconds=COOLDOWN,
                    # The scripts start with the guest speaking (tests/speech/test_greeting*.py cover greeting).
                    speech_greet_first=False)


class Rig:
    def __init__(self, emulator: NovaSonicEmulator, manager: SessionManager, failover: Failover) -> None:
        self.emulator = emulator
        self.manager = manager
        self.failover = failover

    def refuse(self, streams: int) -> None:
        """The next ``streams`` streams opened are refused with throttlingException, as at the quota."""
        for _ in range(streams):
            self.emulator.inject_stream_fault("throttlingException", "Too many requests, please wait",
                                              after_events=1)

    async def session(self, *, failed_over: bool = False) -> tuple[SpeechSession, RecordingOutput]:
        """A started session; with ``failed_over``, once it has moved to the fallback engine.

        A refused stream may first hand back its response headers and only then fail with the exception
        (the SDK's output stream raises it), so the failover can come just after ``start`` returned.
        """
        output = RecordingOutput()
        session = await self.manager.create(output, transport="websocket")
        await session.start()
        if failed_over:
            await output.wait_for(lambda: _marked(output), within=15)
        return session, output


@pytest.fixture
def rig(certs: TestCertificates, settings: Settings, store: Store, bookings: BookingService,
        monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(script: Script) -> AsyncIterator[Rig]:
        emulator = NovaSonicEmulator(script, credentials=environment_credentials(),
                                     turn_pause_seconds=TEST_TURN_PAUSE_SECONDS)
        async with emulator.serve(certs.cert_file, certs.key_file) as url:
            monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
            monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
            model = NovaSonicModel(settings, connect_timeout_ms=2000)
            failover = make_failover(settings)
            assert failover is not None
            manager = SessionManager(model, bookings, store, settings, session_secret=SECRET, config=CONFIG,
                                     failover=failover)
            try:
                yield Rig(emulator, manager, failover)
            finally:
                await manager.close_all("test over")
                await model.close()
                await failover.close()

    return make


def _marked(out: RecordingOutput) -> bool:
    return any(m.get("fallback") for m in out.of_type("status"))


def _failovers(reason: str) -> float:
    return REGISTRY.get_sample_value("speech_failovers_total", {"reason": reason}) or 0.0


def _texts(out: RecordingOutput, role: str) -> list[str]:
    return [m["text"] for m in out.finals(role)]


# --- the breaker on its own (a fake clock) -----------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_n_refusals_within_the_window_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, window_seconds=10, cooldown_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now += 11  # the first refusal leaves the window
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.admit() == "try"
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.admit() == "skip"


def test_breaker_half_open_lets_exactly_one_probe_and_its_outcome_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, window_seconds=10, cooldown_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now += 4.9
    assert breaker.admit() == "skip"
    clock.now += 0.2
    assert breaker.state == "half_open"
    assert breaker.admit() == "probe"
    assert breaker.admit() == "skip"  # one probe at a time
    breaker.release_probe()  # the probe hung up before knowing: the next session probes
    assert breaker.admit() == "probe"
    breaker.record_failure()  # the probe was refused: a whole new cool-down
    assert breaker.state == "open"
    clock.now += 5
    assert breaker.admit() == "probe"
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.admit() == "try"


def test_success_clears_earlier_refusals() -> None:
    breaker = CircuitBreaker(failures=2, window_seconds=60, cooldown_seconds=5, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_fallback_setting() -> None:
    assert Settings(speech_fallback_engine="").speech_fallback_engine is None
    assert make_failover(Settings(speech_engine="nova-sonic")) is None  # unset: today's error message
    assert make_failover(Settings(speech_engine="local", speech_fallback_engine="local")) is None
    with pytest.raises(ValueError, match="speech_fallback_engine"):
        Settings(speech_fallback_engine="nova-sonic")
    failover = make_failover(Settings(speech_engine="nova-sonic", speech_fallback_engine="local"))
    assert failover is not None
    assert not failover.loaded


# --- with the emulator ---------------------------------------------------------------------------------

async def test_a_stream_failing_after_a_booking_is_finished_by_the_fallback_without_rebooking(
        rig, settings: Settings, bookings: BookingService, store: Store) -> None:
    tomorrow = (datetime.now(settings.tz).date() + timedelta(days=1)).isoformat()
    args = {"name": "Alice Smith", "date": tomorrow, "hour": "19:00", "num_guests": 4}
    script = Script([
        Turn("i would like to book a table for four people tomorrow at seven pm",
             Say("Lovely. May I have your name for the booking?", 150)),
        Turn("my name is alice smith", Say("A table for four tomorrow at 7 pm for Alice Smith. Shall I book it?", 150)),
        # The booking is made, then the stream dies before the assistant could say so.
        Turn("yes please", CallTool("create_restaurant_booking", args),
             Fail("throttlingException", "Too many requests")),
    ])
    before = _failovers("throttled")
    async with rig(script) as r:
        session, out = await r.session()
        for expected in (1, 2):
            await speak(session)
            await out.wait_for(lambda n=expected: len(out.finals("ASSISTANT")) == n)
        r.refuse(CONFIG.max_attempts)  # Nova cannot take the call back: every reconnect is refused
        await speak(session)
        await out.wait_for(lambda: any("booked" in t for t in _texts(out, "ASSISTANT")), within=30)
        streams = len(r.emulator.streams)
        await session.end("done")
    assert streams == 1 + CONFIG.max_attempts
    assert session.fallback_reason == "throttled"
    assert _failovers("throttled") == before + 1
    [marker] = [m for m in out.of_type("status") if m.get("fallback")]
    assert marker["engine"] == "local"
    assert marker["reason"] == "throttled"
    assistant = _texts(out, "ASSISTANT")
    after = assistant[2:]  # what the fallback said
    assert "backup assistant" in after[0]
    assert not any("name" in t.lower() for t in after), after  # it knew the name already
    stored = await bookings.list_by_date(tomorrow)
    assert [(b.name, b.hour, b.num_guests) for b in stored] == [("Alice Smith", "19:00", 4)]  # booked once
    assert {m["booking"]["booking_id"] for m in out.of_type("booking")} == {stored[0].booking_id}
    spoken = "".join(ch for ch in after[-1] if ch.isalnum())  # "B K, 3 H V S, ..." as the engine says ids
    assert "is booked" in after[-1]
    assert stored[0].booking_id.replace("-", "") in spoken
    turns = [(t.role, t.text) for t in await store.conversations.list(session.session_id)]
    assert turns.count(("USER", "yes please")) == 1  # the re-asked question is not stored twice
    assert [role for role, _ in turns[:5]] == ["USER", "ASSISTANT", "USER", "ASSISTANT", "USER"]
    assert ("ASSISTANT", after[0]) in turns  # the notice is part of the transcript


async def test_circuit_breaker_opens_skips_nova_then_probes_and_closes(rig) -> None:
    async with rig(Script([])) as r:
        breaker = r.failover.breaker
        r.refuse(2 * (1 + CONFIG.max_attempts))  # two sessions' worth, then the emulator serves again
        for opened in (2, 4):
            session, out = await r.session(failed_over=True)
            assert session.fallback_reason == "throttled"
            assert len(r.emulator.streams) == opened
            await session.end("done")
        assert breaker.state == "open"
        # Open: new sessions go straight to the fallback (no stream opened), with the notice for them.
        skipped_before = _failovers("circuit_open")
        session, out = await r.session()
        assert session.fallback_reason == "circuit_open"
        assert len(r.emulator.streams) == 4
        await out.wait_for(lambda: any("backup assistant" in t for t in _texts(out, "ASSISTANT")), within=20)
        await session.end("done")
        assert _failovers("circuit_open") == skipped_before + 1
        await asyncio.sleep(COOLDOWN + 0.1)
        assert breaker.state == "half_open"
        probe, probe_out = await r.session()
        assert probe.fallback_reason is None
        assert len(r.emulator.streams) == 5
        other, _ = await r.session()  # while the probe is out, everyone else still skips
        assert other.fallback_reason == "circuit_open"
        assert len(r.emulator.streams) == 5
        await other.end("done")
        await speak(probe)
        await probe_out.wait_for(lambda: bool(probe_out.finals("ASSISTANT")))
        assert breaker.state == "closed"
        await probe.end("done")
        session, _ = await r.session()
        assert session.fallback_reason is None
        assert len(r.emulator.streams) == 6
        await session.end("done")
        # A refused probe re-opens the breaker at once, for a whole cool-down.
        r.refuse(2 * (1 + CONFIG.max_attempts))
        for _ in range(2):
            session, _ = await r.session(failed_over=True)
            await session.end("done")
        assert breaker.state == "open"
        assert len(r.emulator.streams) == 10
        await asyncio.sleep(COOLDOWN + 0.1)
        r.refuse(1 + CONFIG.max_attempts)
        probe, _ = await r.session(failed_over=True)
        assert probe.fallback_reason == "throttled"
        assert len(r.emulator.streams) == 12
        assert breaker.state == "open"
        await probe.end("done")
        session, _ = await r.session()
        assert session.fallback_reason == "circuit_open"
        assert len(r.emulator.streams) == 12
        await session.end("done")


async def test_without_the_setting_the_guest_gets_the_error_not_silence(rig, settings: Settings) -> None:
    async with rig(Script([])) as r:
        r.manager.failover = None
        r.refuse(1 + CONFIG.max_attempts)
        output = RecordingOutput()
        session = await r.manager.create(output, transport="websocket")
        with contextlib.suppress(Unavailable):  # refused while connecting (503) or just after
            await session.start()
        await output.wait_for(lambda: session.ended, within=15)
    [error] = output.of_type("error")
    assert error["code"] == "throttled"
    assert "problem" in error["message"]


async def test_after_a_confirmed_booking_the_fallback_carries_on_without_booking_again(
        rig, settings: Settings, bookings: BookingService) -> None:
    tomorrow = (datetime.now(settings.tz).date() + timedelta(days=1)).isoformat()
    args = {"name": "Alice Smith", "date": tomorrow, "hour": "19:00", "num_guests": 4}
    script = Script([
        Turn("i would like to book a table for four people tomorrow at seven pm for alice smith",
             Say("A table for four tomorrow at 7 pm for Alice Smith. Shall I book it?", 150)),
        Turn("yes please", CallTool("create_restaurant_booking", args),
             Say("Your table is booked. Your booking number is {booking_id}.", 150)),
        Turn("thank you that is all", Fail("modelStreamErrorException", "stream error")),
    ])
    async with rig(script) as r:
        session, out = await r.session()
        for expected in (1, 2):
            await speak(session)
            await out.wait_for(lambda n=expected: len(out.finals("ASSISTANT")) == n)
        r.refuse(CONFIG.max_attempts)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) >= 4, within=30)  # the notice, then the reply
        await asyncio.sleep(0.3)  # nothing else (a second booking) may follow
        await session.end("done")
    after = _texts(out, "ASSISTANT")[2:]
    assert "backup assistant" in after[0]
    assert not any("name" in t.lower() or "shall i book" in t.lower() for t in after), after
    assert "goodbye" in after[-1].lower()  # it answered what the guest said last, knowing the booking was done
    assert len(await bookings.list_by_date(tomorrow)) == 1
    assert len(out.of_type("booking")) == 1


async def test_the_fallback_is_loaded_only_when_needed_and_never_holds_up_readiness(
        engine_data: Path, tmp_path: Path) -> None:
    from runtime.services import build_services

    settings = Settings(data_dir=engine_data, sqlite_path=tmp_path / "b.db", speech_engine="nova-sonic",
                        speech_fallback_engine="local", session_secret=SECRET)
    services = await build_services(settings)
    try:
        assert services.sessions.failover is services.failover
        assert not services.failover.loaded
        assert await services.ready()  # Nova Sonic serves; the fallback is not even made yet
        assert not services.failover.loaded
    finally:
        await services.close()
    services = await build_services(settings.model_copy(update={"speech_warm_up": True}))
    try:
        assert await services.ready()  # readiness does not wait for the fallback's load ...
        for _ in range(1200):  # ... which starts at start-up with SPEECH_WARM_UP
            if services.failover.loaded:
                break
            await asyncio.sleep(0.05)
        assert services.failover.loaded
    finally:
        await services.close()


async def test_the_offline_engine_says_the_notice_then_what_the_conversation_waits_for(settings: Settings) -> None:
    from runtime.engine import OfflineEngine
    from runtime.speech import protocol as p
    from runtime.speech.failover import FAILOVER_NOTICE
    from runtime.speech.model import StreamOptions

    engine = OfflineEngine(settings)
    stream = await engine.open(StreamOptions(session_id="notice", notice=FAILOVER_NOTICE))
    try:
        prompt = "prompt-1"
        await stream.send(p.session_start())
        await stream.send(p.prompt_start(prompt, voice_id="matthew"))
        for index, (role, text) in enumerate([("SYSTEM", "You take bookings."),
                                              ("USER", "a table for four people tomorrow at seven pm please"),
                                              ("ASSISTANT", "Lovely. May I have your name for the booking?")]):
            for event in p.text_block(prompt, f"history-{index}", role, [text]):  # type: ignore[arg-type]
                await stream.send(event)
        await stream.send(p.audio_content_start(prompt, "audio-1"))
        said: list[str] = []
        async with asyncio.timeout(20):
            while not said:
                name, body = p.parse(await stream.receive())
                if name == "textOutput" and body.get("role") == "ASSISTANT":
                    said.append(body["content"])
    finally:
        await stream.close()
        await engine.close()
    # Nothing was left to answer, so the notice goes on with the question the booking is waiting on.
    assert said == [f"{FAILOVER_NOTICE} May I have your name for the booking?"]


async def test_a_fallback_that_cannot_start_still_gives_the_guest_the_error(rig, settings: Settings) -> None:
    def broken() -> Any:
        raise OSError("models missing")

    async with rig(Script([])) as r:
        r.manager.failover = Failover(settings, broken)
        r.refuse(1 + CONFIG.max_attempts)
        output = RecordingOutput()
        session = await r.manager.create(output, transport="websocket")
        # The refusal may come while connecting (start answers 503) or just after (the session then ends).
        with contextlib.suppress(Unavailable):
            await session.start()
        await output.wait_for(lambda: session.ended, within=15)
    [error] = output.of_type("error")
    assert error["code"] == "fallback_unavailable"
