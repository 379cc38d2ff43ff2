"""Admission by measured load: refuse a new WebRTC call before the calls already running degrade.

Every WebRTC call's audio is paced and encoded on the process's one event loop (runtime/media/outbound.py).
When the loop is saturated its 20 ms ticks run late, the callers' audio arrives in bursts, and each call's
delay and gaps grow together: the per-process session cap (``max_sessions_per_process``) bounds that from
a measured per-call cost, but the cost of a call depends on what else runs on the machine. So the loop's
own lag is measured continuously - how late a 100 ms timer fires - and a new call is refused with a 503
while the median lag of the last two seconds exceeds ``MAX_LOOP_LAG_SECONDS``: a loop that late cannot keep
the calls it already has in real time, and one call more only makes all of them worse. The caller (the web
app) retries or falls back, like at the session cap. docs/architecture.md ("Delay under load") has the
measurement behind both figures.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque

from runtime.errors import Unavailable

SAMPLE_SECONDS = 0.1
KEEP_SAMPLES = 20  # two seconds of samples
MIN_SAMPLES = 5  # half a second of evidence before refusing anyone
MAX_LOOP_LAG_SECONDS = 0.05  # 2.5 audio frames: every call's pacing ticks are already that late


class LoopLoad:
    """How late this event loop runs its timers, sampled in the background once the first call arrives."""

    def __init__(self, *, interval: float = SAMPLE_SECONDS, keep: int = KEEP_SAMPLES) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=keep)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.refused = 0

    def start(self) -> None:
        """Sample on the running loop (again, if an earlier loop has gone: tests run one loop each)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        self._loop = loop
        self.samples.clear()
        self._task = loop.create_task(self._run(), name="media-loop-load")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.record(loop.time() - before - self.interval)

    def record(self, lag: float) -> None:
        self.samples.append(max(0.0, lag))

    @property
    def lag(self) -> float | None:
        """Median lag of the recent samples, or None before there are enough to judge."""
        if len(self.samples) < MIN_SAMPLES:
            return None
        return statistics.median(self.samples)

    def admit(self, max_lag: float = MAX_LOOP_LAG_SECONDS) -> None:
        """Raise ``Unavailable`` (503) when the loop is too late to take one more call."""
        self.start()
        lag = self.lag
        if lag is not None and lag > max_lag:
            self.refused += 1
            raise Unavailable("this server is too busy to take another call without degrading the calls it has "
                              f"(its event loop runs {lag * 1000:.0f} ms late); try again shortly")


LOOP_LOAD = LoopLoad()
