"""Stream renewal and fault recovery: no stored turn lost or duplicated, history replayed every time."""

from __future__ import annotations

import asyncio
import socket

import pytest

from emulators.nova_sonic import Fail, Pause, Say, Script, Turn
from runtime.errors import Unavailable
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.session import SessionConfig, SessionManager
from tests.speech.conftest import FAST, SECRET, RecordingOutput, speak

pytestmark = pytest.mark.timeout(60)


async def _turn_pairs(store, session_id: str) -> list[tuple[str, str]]:
    return [(t.role, t.text) for t in await store.conversations.list(session_id)]


async def test_three_renewals_keep_every_turn_once_and_replay_history(harness, store) -> None:
    script = Script([Turn(f"question {i}", Say(f"answer {i}", 200)) for i in range(4)])
    config = SessionConfig(renew_after_seconds=1.0, renew_deadline_seconds=2.2, quiet_boundary_seconds=0.3,
                           backoff_initial_seconds=0.05)
    # The emulator kills any stream older than 3 s, as the service does at 8 minutes.
    async with harness(script, config=config, stream_limit_seconds=3.0) as h:
        session, out = await h.session()
        for i in range(4):
            await speak(session)
            await out.wait_for(lambda i=i: len(out.finals("ASSISTANT")) == i + 1)
            if i < 3:
                await out.wait_for(lambda i=i: session.renewals == i + 1, within=5)
        await session.end("done")
        streams = h.emulator.streams

    expected = [pair for i in range(4) for pair in (("USER", f"question {i}"), ("ASSISTANT", f"answer {i}"))]
    assert await _turn_pairs(store, session.session_id) == expected
    assert session.renewals == 3
    assert session.recoveries == 0
    assert len(streams) == 4
    assert [s.error for s in streams] == [None] * 4
    # Each new stream was primed with everything said before it took over.
    for k, stream in enumerate(streams[1:], start=1):
        assert stream.history() == expected[: 2 * k]
        names = stream.names()
        assert names[:2] == ["sessionStart", "promptStart"]
        assert names.index("audioInput") > max(i for i, n in enumerate(names) if n == "textInput")
    assert len(out.of_type("error")) == 0


TRANSIENT = [
    ("modelTimeoutException", "Model has timed out in processing the request"),
    ("throttlingException", "Too many requests, please wait before trying again."),
    ("modelStreamErrorException", "Model stream error"),
    ("internalServerException", "Internal server error"),
    ("serviceUnavailableException", "Service unavailable"),
    ("validationException", "System instability detected. Please retry your request."),
    ("validationException", "InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR"),
]


async def test_every_transient_fault_is_recovered_with_history_and_the_pending_question(harness, store) -> None:
    turns = []
    for i, (kind, message) in enumerate(TRANSIENT):
        turns.append(Turn(f"question {i}", Fail(kind, message)))  # the stream dies right after the guest spoke
        turns.append(Turn("(re-asked as text)", Say(f"answer {i}", 120)))
    async with harness(Script(turns)) as h:
        session, out = await h.session()
        for i in range(len(TRANSIENT)):
            await speak(session)
            await out.wait_for(lambda i=i: len(out.finals("ASSISTANT")) == i + 1)
        await session.end("done")
        streams = h.emulator.streams

    assert [s.error for s in streams[:-1]] == [kind for kind, _ in TRANSIENT]
    assert session.recoveries == len(TRANSIENT)
    assert not out.of_type("error")
    expected = [pair for i in range(len(TRANSIENT))
                for pair in (("USER", f"question {i}"), ("ASSISTANT", f"answer {i}"))]
    assert await _turn_pairs(store, session.session_id) == expected
    for i, stream in enumerate(streams[1:]):
        # History up to the unanswered question, which is re-sent as interactive text instead.
        assert stream.history() == expected[: 2 * i]
        interactive = [b for n, b in stream.events if n == "contentStart" and b.get("interactive")
                       and b.get("type") == "TEXT"]
        assert len(interactive) == 1
        texts = [b["content"] for n, b in stream.events if n == "textInput"]
        assert texts[-1] == f"question {i}"


async def test_a_fault_while_opening_is_retried_with_backoff(harness, store) -> None:
    async with harness(Script([Turn("hello", Say("hi there", 100))])) as h:
        h.emulator.inject_stream_fault("throttlingException", "Too many requests", after_events=1)
        h.emulator.inject_stream_fault("serviceUnavailableException", "Service unavailable", after_events=3)
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        errors = [s.error for s in h.emulator.streams]
    assert errors == ["throttlingException", "serviceUnavailableException", None]
    assert await _turn_pairs(store, session.session_id) == [("USER", "hello"), ("ASSISTANT", "hi there")]


async def test_a_dead_service_ends_the_session_after_bounded_attempts(harness, store) -> None:
    config = SessionConfig(max_attempts=2, backoff_initial_seconds=0.05)
    async with harness(Script([Turn("hello", Say("hi", 100)), Turn("again", Fail("throttlingException"))]),
                       config=config) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        for _ in range(3):
            h.emulator.inject_stream_fault("throttlingException", "Too many requests", after_events=1)
        await speak(session)
        await out.wait_for(lambda: session.ended, within=10)
        streams = len(h.emulator.streams)
    assert streams == 1 + 2  # the first stream, then exactly max_attempts reconnects
    [error] = out.of_type("error")
    assert error["code"] == "throttled"
    assert await _turn_pairs(store, session.session_id) == [("USER", "hello"), ("ASSISTANT", "hi"),
                                                            ("USER", "again")]


async def test_validation_error_ends_the_session_cleanly_with_turns_intact(harness, store) -> None:
    script = Script([Turn("hello", Say("Hello, how can I help?", 100)),
                     Turn("book me a table", Fail("validationException", "Invalid input request"))])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await speak(session)
        await out.wait_for(lambda: session.ended)
        await asyncio.sleep(0.2)
        streams = len(h.emulator.streams)

    assert streams == 1  # not retried
    [error] = out.of_type("error")
    assert error["code"] == "validation_error"
    assert "Traceback" not in error["message"]
    assert out.of_type("status")[-1]["state"] == "error"
    assert await _turn_pairs(store, session.session_id) == [
        ("USER", "hello"), ("ASSISTANT", "Hello, how can I help?"), ("USER", "book me a table")]
    record = await store.sessions.get(session.session_id)
    assert record is not None
    assert record.status == "ended"
    assert record.end_reason == "error:validation_error"
    assert h.manager.active_count == 0


async def test_silence_keeps_a_quiet_caller_connected(harness) -> None:
    # The emulator, like the service, errors out an input stream that goes quiet for a while.
    async with harness(Script([]), idle_timeout_seconds=0.4) as h:
        session, out = await h.session()
        await asyncio.sleep(1.5)  # the caller says nothing at all
        assert not session.ended
        assert not out.of_type("error")
        stream = h.emulator.streams[0]
        assert stream.error is None
        assert stream.audio_frames() >= 25  # ~32 ms silence frames kept flowing
        await session.end("done")


async def test_capacity_is_enforced(harness, settings) -> None:
    settings.max_sessions_per_process = 1
    async with harness(Script([]), config=FAST) as h:
        first = await h.manager.create(RecordingOutput())
        with pytest.raises(Unavailable):
            await h.manager.create(RecordingOutput())
        await first.start()
        await first.end("done")
        second = await h.manager.create(RecordingOutput())  # a line is free again
        await second.end("unused")


async def test_unreachable_model_makes_start_fail_with_503_and_a_message(settings, store, bookings, certs,
                                                                         monkeypatch) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"https://127.0.0.1:{port}")
    monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
    model = NovaSonicModel(settings, connect_timeout_ms=1000, response_timeout=2.0)
    manager = SessionManager(model, bookings, store, settings, session_secret=SECRET,
                             config=SessionConfig(max_attempts=2, backoff_initial_seconds=0.05))
    output = RecordingOutput()
    session = await manager.create(output)
    with pytest.raises(Unavailable) as raised:
        await session.start()
    await model.close()
    assert raised.value.status == 503
    assert session.ended
    assert manager.active_count == 0
    [error] = output.of_type("error")
    assert error["code"] in ("connection_error", "connect_timeout")
    record = await store.sessions.get(session.session_id)
    assert record is not None
    assert record.status == "ended"


async def test_a_fault_mid_sentence_replays_the_callers_audio_to_the_new_stream(harness, store) -> None:
    async with harness(Script([Turn("what time do you open", Say("We open at eleven.", 100))])) as h:
        # The first stream dies after hearing 4 frames of the guest's sentence, before any transcript.
        h.emulator.inject_stream_fault("modelStreamErrorException", "stream error", after_speech_frames=4)
        session, out = await h.session()
        await speak(session, ms=480)  # 15 frames of speech
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        first, second = h.emulator.streams
    assert first.error == "modelStreamErrorException"
    assert second.speech_frames >= 10  # the buffered sentence, not just what came after the fault
    assert await _turn_pairs(store, session.session_id) == [("USER", "what time do you open"),
                                                            ("ASSISTANT", "We open at eleven.")]


async def test_a_long_conversation_is_replayed_within_the_services_history_limits(harness, store) -> None:
    config = SessionConfig(renew_after_seconds=0.3, renew_deadline_seconds=1.0, quiet_boundary_seconds=0.1)
    async with harness(Script([Turn("and one more thing", Say("Of course.", 100))]), config=config) as h:
        session, out = await h.session()
        # An hour of talk: 120 turns of ~900 bytes each, far over the 40 KB the service accepts.
        session.history.extend(("USER" if i % 2 else "ASSISTANT", f"turn {i} " + "blah " * 180) for i in range(120))
        await out.wait_for(lambda: session.renewals == 1, within=5)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        renewed = h.emulator.streams[1]
    assert renewed.error is None  # the emulator enforces 1 KB per textInput, 40 KB in all, USER first
    replayed = renewed.history()
    assert replayed[0][0] == "USER"
    assert replayed[-1][1].startswith("turn 119 ")
    assert sum(len(text.encode()) for _, text in replayed) <= 40_000


async def test_a_renewal_forced_mid_reply_gets_the_question_answered_by_the_new_stream(harness, store) -> None:
    config = SessionConfig(renew_after_seconds=0.4, renew_deadline_seconds=1.0, quiet_boundary_seconds=0.2)
    script = Script([Turn("are you open on sunday", Pause(3.0), Say("(never said: the stream was replaced)")),
                     Turn("(re-asked as text)", Say("Yes, we are open on Sunday.", 100))])
    async with harness(script, config=config) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1, within=5)
        await session.end("done")
        first, second = h.emulator.streams[:2]
    assert session.renewals >= 1
    assert first.error is None
    texts = [b["content"] for n, b in second.events if n == "textInput"]
    assert texts[-1] == "are you open on sunday"  # re-asked as interactive text, not replayed as history
    assert await _turn_pairs(store, session.session_id) == [("USER", "are you open on sunday"),
                                                            ("ASSISTANT", "Yes, we are open on Sunday.")]
