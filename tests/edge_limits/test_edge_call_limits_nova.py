"""Call limits on Nova Sonic: the real SDK client against the strict emulator (tests/speech uses the same).

What the session sends the service when a limit is reached: the warning and the goodbye request as
cross-modal interactive text (refused by the emulator if out of order), answered as turns; then the call
ends with the reason. Limits of about a second, set through settings.
"""

from __future__ import annotations

import asyncio

import pytest
from nova_support import Output, nova_manager

from emulators.nova_sonic import Say, Script, Turn, make_test_certificates
from emulators.nova_sonic import TestCertificates as Certificates

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_test_certificates(str(tmp_path_factory.mktemp("edge-nova-tls")))


def _said(output: Output) -> list[str]:
    return [m["text"] for m in output.messages
            if m.get("type") == "transcript" and m.get("role") == "ASSISTANT" and m.get("final")]


async def test_a_silent_nova_sonic_call_is_asked_for_a_goodbye_then_ended(tmp_path, certs, monkeypatch) -> None:
    script = Script([Turn("(text)", Say("Thank you for calling Nova Bistro. Goodbye!", 300))], fallback=None)
    async with nova_manager(tmp_path, certs, monkeypatch, script, call_idle_timeout_seconds=0.8) as (emulator, mgr):
        output = Output()
        session = await mgr.create(output, transport="websocket")
        await session.start()
        async with asyncio.timeout(20):
            await output.ended.wait()
        [record] = emulator.streams
    assert record.error is None  # the goodbye request was valid cross-modal input, in order
    assert len(record.text_inputs) == 1
    assert "goodbye" in record.text_inputs[0].lower()
    assert _said(output) == ["Thank you for calling Nova Bistro. Goodbye!"]
    ended = output.messages[-1]
    assert (ended["type"], ended["state"], ended["reason"]) == ("status", "ended", "idle")
    assert session.end_reason == "idle"
    # The instruction is not a guest turn: nothing of it was stored as the guest's.
    assert not [m for m in output.messages if m.get("type") == "transcript" and m.get("role") == "USER"]


async def test_a_long_nova_sonic_call_is_warned_aloud_then_ended(tmp_path, certs, monkeypatch) -> None:
    script = Script([Turn("(text)", Say("We have about a minute left.", 200)),
                     Turn("(text)", Say("Thank you for calling. Goodbye!", 200))], fallback=None)
    async with nova_manager(tmp_path, certs, monkeypatch, script, call_idle_timeout_seconds=600,
                            call_max_seconds=2.5, call_max_warning_seconds=1.5) as (emulator, mgr):
        output = Output()
        session = await mgr.create(output, transport="webrtc")
        await session.start()
        async with asyncio.timeout(20):
            await output.ended.wait()
        [record] = emulator.streams
    assert record.error is None
    assert len(record.text_inputs) == 2
    assert "time limit" in record.text_inputs[0]
    assert "goodbye" in record.text_inputs[1].lower()
    notices = [m for m in output.messages if m.get("type") == "notice"]
    assert [n["code"] for n in notices] == ["call_ending_soon"]
    assert _said(output) == ["We have about a minute left.", "Thank you for calling. Goodbye!"]
    assert output.messages[-1]["reason"] == "max_duration"
