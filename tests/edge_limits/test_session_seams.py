"""What transports rely on from a voice session, on the real Nova Sonic client against the strict emulator.

``wait_ended`` (the session's own end, with its reason, after its last message), the call's trace (current in
every task the session and the model client create; ``first_audio_out`` stamped when a reply's audio goes
out; finished when the session ends) and ``report_heard`` (one caller figure per reply, bad ones dropped).
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from nova_support import Output, nova_manager
from prometheus_client import REGISTRY

from emulators.nova_sonic import Say, Script, Turn, make_test_certificates
from emulators.nova_sonic import TestCertificates as Certificates
from runtime import turn_trace
from runtime.speech.session import SpeechSession

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_test_certificates(str(tmp_path_factory.mktemp("seams-nova-tls")))


def _caller_figures(transport: str) -> tuple[float, float]:
    labels = {"transport": transport, "engine": "nova-sonic"}
    count = REGISTRY.get_sample_value("voice_caller_response_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("voice_caller_response_seconds_sum", labels) or 0.0
    return count, total


async def _speak(session: SpeechSession) -> None:
    """320 ms of a 300 Hz tone (speech energy) in 20 ms pieces, then the pump's silence ends the turn."""
    t = np.arange(int(0.32 * 16_000)) / 16_000
    pcm = (4000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    for offset in range(0, len(pcm), 640):
        await session.push_audio(pcm[offset:offset + 640])


async def test_a_reply_is_traced_and_the_callers_figure_is_counted_once(tmp_path, certs, monkeypatch) -> None:
    script = Script([Turn("I would like a table", Say("For how many guests?", 300))], fallback=None)
    async with nova_manager(tmp_path, certs, monkeypatch, script) as (_emulator, mgr):
        output = Output()
        session = await mgr.create(output, transport="websocket")
        trace = session.trace
        assert (trace.call_id, trace.transport, trace.engine) == (session.session_id, "websocket", "nova-sonic")
        await session.start()
        before = _caller_figures("websocket")
        session.report_heard(0.4)  # nothing has been said yet: there is no reply to report on
        assert _caller_figures("websocket") == before
        await _speak(session)
        async with asyncio.timeout(15):
            while "first_audio_out" not in [stage for stage, _ in trace.marks]:  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.02)
        # The reply's audio came through the model client's receive task: it carried the call's trace.
        assert output.audio_traces
        assert all(t is trace for t in output.audio_traces)
        for bad in (0.0, -1.0, 30.5, math.nan, math.inf):
            session.report_heard(bad)
        assert _caller_figures("websocket") == before, "out-of-range figures are dropped"
        session.report_heard(0.42)
        session.report_heard(0.5)  # a second report for the same reply
        count, total = _caller_figures("websocket")
        assert count == before[0] + 1
        assert total == pytest.approx(before[1] + 0.42)
        assert turn_trace.current() is None, "the test's own context never had the call's trace"
        await session.end("caller hung up")
        assert await session.wait_ended() == "caller hung up"
    assert trace in turn_trace.finished()


async def test_wait_ended_gives_the_sessions_own_reason_after_its_last_message(tmp_path, certs, monkeypatch) -> None:
    script = Script([Turn("(text)", Say("Thank you for calling. Goodbye!", 200))], fallback=None)
    async with nova_manager(tmp_path, certs, monkeypatch, script, call_idle_timeout_seconds=0.8) as (_emulator, mgr):
        output = Output(suspending=True)
        session = await mgr.create(output, transport="webrtc")
        seen: list[dict[str, object]] = []

        async def transport() -> str:
            reason = await session.wait_ended()
            seen.extend(output.messages)  # what a transport would flush before hanging up
            return reason

        waiter = asyncio.create_task(transport())
        await session.start()
        async with asyncio.timeout(20):
            reason = await waiter
    assert reason == "idle"
    assert session.ended
    last = seen[-1]
    assert (last["type"], last["state"], last["reason"]) == ("status", "ended", "idle")
