"""Where a turn's latency goes: stage stamps taken where each stage happens, one trace per call.

The figure a guest feels is end of their speech -> first assistant sound at their ear, and only the
caller can measure it (bench/caller_latency.py does). To explain that figure the benchmark needs the
server's side of the same turn: when the end of speech was detected, when the transcript was final,
when the dialogue decided, when the first synthesised audio and the first non-silent packet left. Each
part stamps its own stage here with ``mark``; nothing here decides or changes behaviour.

A call's trace travels in a context variable so the speech engine (behind the SpeechModel seam, with no
idea which call it serves) can stamp stages without a new parameter on every interface: asyncio copies
the context into every task created while it is set, so the engine's tasks inherit the session's trace.
Transports whose tasks are created elsewhere (aiortc's sender) hold the trace object explicitly.

Stamps are ``time.monotonic()`` seconds. Memory is bounded: a trace keeps its last ``MAX_MARKS`` stamps
and the registry of finished traces (read by in-process benchmarks) its last ``KEEP_FINISHED`` calls.
"""

from __future__ import annotations

import contextvars
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Stage = Literal[
    "speech_end",  # the engine's estimate of the end of voiced speech (wall clock of that input frame)
    "endpoint",  # end of turn decided (the recogniser closed the utterance)
    "asr_final",  # final transcript ready
    "decision",  # the dialogue chose its reply (after any tool call)
    "tool_result",  # a tool call returned
    "tts_first_chunk",  # first synthesised audio of the reply
    "first_audio_out",  # the session handed the reply's first audio to the transport
    "first_packet_sent",  # the transport sent the reply's first non-silent frame
]
STAGES: tuple[Stage, ...] = ("speech_end", "endpoint", "asr_final", "decision", "tool_result", "tts_first_chunk",
                             "first_audio_out", "first_packet_sent")
MAX_MARKS = 512
KEEP_FINISHED = 64


@dataclass(slots=True)
class TurnTrace:
    """Stage stamps of one call, in the order they happened."""

    call_id: str
    transport: str
    engine: str
    marks: deque[tuple[Stage, float]] = field(default_factory=lambda: deque(maxlen=MAX_MARKS))

    def mark(self, stage: Stage, at: float | None = None) -> None:
        self.marks.append((stage, time.monotonic() if at is None else at))


_CURRENT: contextvars.ContextVar[TurnTrace | None] = contextvars.ContextVar("turn_trace", default=None)
_FINISHED: deque[TurnTrace] = deque(maxlen=KEEP_FINISHED)


def begin(trace: TurnTrace) -> contextvars.Token[TurnTrace | None]:
    """Make ``trace`` the current call's trace for this task and the tasks it creates from now on."""
    return _CURRENT.set(trace)


def end(token: contextvars.Token[TurnTrace | None]) -> None:
    trace = _CURRENT.get()
    _CURRENT.reset(token)
    if trace is not None:
        _FINISHED.append(trace)


def current() -> TurnTrace | None:
    return _CURRENT.get()


def mark(stage: Stage, at: float | None = None) -> None:
    """Stamp ``stage`` on the current call's trace; a no-op outside a call (unit tests, tools)."""
    trace = _CURRENT.get()
    if trace is not None:
        trace.mark(stage, at)


def finished() -> list[TurnTrace]:
    """The most recent finished calls' traces (in-process benchmarks read them after hanging up)."""
    return list(_FINISHED)
