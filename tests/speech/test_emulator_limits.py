"""Service limits the emulator now imposes by default, and what the runtime does about them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulators.nova_sonic import CallTool, Fail, Say, Script, Turn
from runtime.errors import Unavailable
from runtime.speech.session import SessionConfig
from runtime.speech.tools import ToolRunner
from tests.speech.conftest import speak

pytestmark = pytest.mark.timeout(60)

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
BOOKING = {"name": "Ana Lopez", "date": TOMORROW, "hour": "19:00", "num_guests": 4}


async def test_recovery_ends_the_failed_stream_with_prompt_end_and_session_end(harness) -> None:
    """After a modelled error the input side is still open: the runtime closes it as the protocol asks.
    (It used to drop the connection without promptEnd/sessionEnd.)"""
    script = Script([Turn("hello", Fail("throttlingException", "Too many requests")), Turn("again", Say("Hi.", 100))])
    async with harness(script) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(h.emulator.streams) == 2, within=10)
        await out.wait_for(lambda: "sessionEnd" in h.emulator.streams[0].after_end, within=5)
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
    failed = h.emulator.streams[0]
    assert failed.error == "throttlingException"
    assert failed.after_end[-2:] == ["promptEnd", "sessionEnd"]


async def test_a_running_tool_never_holds_the_old_stream_past_the_8_minute_limit(
        harness, store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit scaled down (2 s instead of 480 s): a tool still running at the renewal deadline used to
    hold the handover until it finished - past the limit, where the service kills the stream."""
    real_run = ToolRunner.run

    async def slow_run(self: ToolRunner, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(2.5)  # the booking system is slow today
        return await real_run(self, *args, **kwargs)

    monkeypatch.setattr(ToolRunner, "run", slow_run)
    config = SessionConfig(renew_after_seconds=0.3, renew_deadline_seconds=0.5, stream_limit_seconds=2.0,
                           stream_limit_margin_seconds=0.6, tool_timeout_seconds=10.0, backoff_initial_seconds=0.05,
                           backoff_max_seconds=0.2, quiet_boundary_seconds=0.3)
    script = Script([Turn("a table for four", CallTool("create_restaurant_booking", BOOKING, timeout=10.0),
                          Say("Booked.", 100))],
                    fallback=Say("Your table is booked.", 100))
    async with harness(script, config=config, stream_limit_seconds=2.0) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(h.emulator.streams) >= 2, within=5)
        await out.wait_for(lambda: bool(out.of_type("booking")), within=5)
        await asyncio.sleep(0.2)
        await session.end("done")
    first = h.emulator.streams[0]
    assert first.error is None  # handed over before the service's limit, not killed by it
    assert first.closed_at is not None
    assert first.closed_at - first.opened_at < 2.0
    assert session.renewals >= 1
    assert len(await store.bookings.list_by_date(TOMORROW)) == 1  # the slow tool still booked, once


async def test_a_call_beyond_the_servers_concurrent_stream_limit_is_told_within_the_bound(harness) -> None:
    """HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (here 1): the SDK's CRT transport keeps one connection per
    endpoint, so a stream beyond the limit waits for a free slot. The caller must hear of it within the
    session's bound, the call already running must not suffer, and the slot is usable again afterwards."""
    config = SessionConfig(backoff_initial_seconds=0.05, backoff_max_seconds=0.2, quiet_boundary_seconds=0.3,
                           give_up_seconds=1.5)
    script = Script([], fallback=Say("Hello.", 100))
    async with harness(script, config=config, max_concurrent_streams=1) as h:
        one, out_one = await h.session()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await h.session()
        waited = time.monotonic() - started
        await speak(one)
        await out_one.wait_for(lambda: len(out_one.finals("ASSISTANT")) == 1)
        await one.end("done")
        three, out_three = await h.session()
        await speak(three)
        await out_three.wait_for(lambda: len(out_three.finals("ASSISTANT")) == 1)
        await three.end("done")
    assert waited < config.give_up_seconds + 1.0
    assert not out_one.of_type("error")
    assert not out_three.of_type("error")
