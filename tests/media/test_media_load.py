"""Admission by event-loop lag: a process whose loop runs late refuses the next call, and recovers."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.errors import Unavailable
from runtime.media.load import MAX_LOOP_LAG_SECONDS, MIN_SAMPLES, LoopLoad


async def test_a_late_loop_refuses_new_calls_until_it_catches_up() -> None:
    load = LoopLoad()
    load.admit()  # no evidence yet: admitted
    for _ in range(MIN_SAMPLES):
        load.record(MAX_LOOP_LAG_SECONDS * 2)
    with pytest.raises(Unavailable, match="too busy"):
        load.admit()
    assert load.refused == 1
    for _ in range(load.samples.maxlen or 0):
        load.record(0.001)
    load.admit()  # the lag has gone: calls are taken again


async def test_one_slow_moment_does_not_refuse_anyone() -> None:
    """The median of the window decides: a single stall (a GC pause, a large offer) is not overload."""
    load = LoopLoad()
    for lag in [0.001] * 9 + [0.5]:
        load.record(lag)
    load.admit()


async def test_the_sampler_measures_a_blocked_loop() -> None:
    load = LoopLoad(interval=0.01)
    load.start()
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is the point: the sampler fires 200 ms late
    await asyncio.sleep(0.05)
    assert max(load.samples) >= 0.15
    assert load._task is not None
    load._task.cancel()
