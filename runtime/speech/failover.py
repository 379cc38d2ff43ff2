"""Engine failover: when Nova Sonic cannot give a session a stream, the offline engine takes over.

Bedrock refuses streams when an account reaches its Nova Sonic concurrency quota or the service is
throttling (``ThrottlingException``), and streams fail during regional faults. The session core already
retries with backoff under a bound (``SPEECH_GIVE_UP_SECONDS``); this module is what happens after that
bound, when ``SPEECH_FALLBACK_ENGINE=local``: the session moves to the offline engine, which speaks the
same event protocol and calls the same tools (docs/failover.md).

The circuit breaker spares new guests the bounded wait while Nova Sonic is known to be refusing: after
``SPEECH_BREAKER_FAILURES`` sessions within ``SPEECH_BREAKER_WINDOW_SECONDS`` could not get a stream, new
sessions go straight to the fallback for ``SPEECH_BREAKER_COOLDOWN_SECONDS``; then exactly one session
(the probe, "half-open") tries Nova Sonic, and its outcome closes or re-opens the breaker. The breaker is
per process: each worker learns on its own, which costs at most a few slow connects per worker.

Hand-written rather than a library (pybreaker, aiobreaker, purgatory): those wrap a call, whereas here a
"call" is a whole bounded retry loop inside the session core, and the outcome is reported from two
places (start and mid-call recovery); the state machine itself is a few lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from runtime import metrics
from runtime.settings import Settings
from runtime.speech.model import SpeechModel

log = logging.getLogger("runtime.speech.failover")

BreakerState = Literal["closed", "open", "half_open"]

# Spoken by the fallback engine before anything else. Short, says what changed and that nothing is lost.
FAILOVER_NOTICE = ("Sorry about that, our main assistant is not available right now, so I am the backup "
                   "assistant. I have everything you told me so far.")
BREAKER_NOTICE = "Our main assistant is busy right now, so you are talking to the backup assistant."


class CircuitBreaker:
    """Closed -> open after ``failures`` refusals within ``window``; open -> half-open after ``cooldown``.

    Half-open lets one probe through; its success closes the breaker, its failure re-opens it for another
    cool-down. A probe that ends without an outcome (the guest hung up while connecting) hands the probe
    to the next session.
    """

    def __init__(self, *, failures: int, window_seconds: float, cooldown_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window_seconds = window_seconds
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._refusals: deque[float] = deque()
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_seconds:
            self._move("half_open")
        return self._state

    def admit(self) -> Literal["try", "probe", "skip"]:
        """What a new session does: try Nova Sonic, try it as the half-open probe, or skip it (open)."""
        state = self.state
        if state == "closed":
            return "try"
        if state == "half_open" and not self._probing:
            self._probing = True
            return "probe"
        return "skip"

    def record_success(self) -> None:
        self._refusals.clear()
        self._probing = False
        if self._state != "closed":
            self._move("closed")

    def record_failure(self) -> None:
        now = self._clock()
        if self.state == "half_open":
            self._probing = False
            self._open(now)
            return
        self._refusals.append(now)
        while self._refusals and now - self._refusals[0] > self.window_seconds:
            self._refusals.popleft()
        if self._state == "closed" and len(self._refusals) >= self.failures:
            self._open(now)

    def release_probe(self) -> None:
        """The probe session ended before Nova Sonic answered either way: let the next session probe."""
        self._probing = False

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._refusals.clear()
        self._move("open")

    def _move(self, state: BreakerState) -> None:
        self._state = state
        metrics.SPEECH_BREAKER_TRANSITIONS.labels(state=state).inc()
        log.warning("nova sonic circuit breaker %s", state.replace("_", "-"), extra={"breaker_state": state})


class Failover:
    """The process's fallback engine (made, and loaded, only when first needed) and its breaker."""

    def __init__(self, settings: Settings, make_fallback: Callable[[], SpeechModel],
                 breaker: CircuitBreaker | None = None) -> None:
        self.engine_name = settings.speech_fallback_engine or "local"
        self.breaker = breaker or CircuitBreaker(
            failures=settings.speech_breaker_failures, window_seconds=settings.speech_breaker_window_seconds,
            cooldown_seconds=settings.speech_breaker_cooldown_seconds)
        self._make_fallback = make_fallback
        self._model: SpeechModel | None = None
        self._warm_up: asyncio.Task[None] | None = None

    @property
    def model(self) -> SpeechModel:
        if self._model is None:
            self._model = self._make_fallback()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None and self._model.ready

    def warm_up(self) -> None:
        """Load the fallback's models in the background (once): a failover then costs no model load.

        Started at start-up by ``serve`` (``SPEECH_WARM_UP``) and otherwise at the first refusal, so a
        process whose Nova Sonic never fails pays nothing until then. Readiness does not wait for it:
        Nova Sonic serves meanwhile, and a failover before it finishes waits for the load instead.
        """
        if self._warm_up is not None:
            return
        self._warm_up = asyncio.get_running_loop().create_task(self.model.warm_up(), name="fallback-warm-up")
        self._warm_up.add_done_callback(self._warm_up_done)

    def _warm_up_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("fallback engine warm-up failed", exc_info=task.exception())
            self._warm_up = None  # the next refusal tries again

    async def close(self) -> None:
        if self._warm_up is not None and not self._warm_up.done():
            self._warm_up.cancel()
        if self._model is not None:
            await self._model.close()
            self._model = None


def make_failover(settings: Settings) -> Failover | None:
    """The failover for a Nova Sonic process with ``SPEECH_FALLBACK_ENGINE`` set, else None."""
    if settings.speech_engine != "nova-sonic" or settings.speech_fallback_engine is None:
        return None
    from runtime.speech.factory import make_fallback_model

    return Failover(settings, lambda: make_fallback_model(settings))
