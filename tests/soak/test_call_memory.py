"""Per-call memory of the offline engine (docs/memory.md): what a call allocates is given back when it ends.

The leak was two things. A closed stream's recogniser (a ~20 MB pocketsphinx decoder and a Silero session,
native memory) was freed only with the stream, and the stream sat in reference cycles (cancelled tasks'
tracebacks) that only a full garbage collection breaks; with the models' ~1.3 M long-lived objects a full
collection is rare, so in ``serve`` every call's decoder stayed resident. And what was freed stayed in glibc's
arenas. These tests switch the cyclic collector off, which makes "rare" into "never" deterministically:
anything a call frees only through a collection then shows up. RSS bounds are generous (noise is a few MB,
the old growth was ~25 MB per call); the full measurement over both transports is bench/soak.py.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.engine import OfflineEngine
from runtime.speech.session import SessionManager

CALLS = 6
BUDGET_MB = 60.0  # for CALLS calls after warm-up; the leak kept ~20-25 MB per call


def rss_mb() -> float:
    with open("/proc/self/smaps_rollup", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Rss:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no Rss in smaps_rollup")


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


class Output:
    """The transport side of a call (``SessionOutput``): keeps the messages, discards the audio."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def audio(self, pcm: bytes) -> None:
        return None

    def flush_audio(self) -> None:
        return None

    async def message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


async def one_call(sessions: SessionManager, engine: OfflineEngine) -> weakref.ref[object]:
    """Greeting, a second of caller audio, hang-up; returns a weak reference to the call's recogniser."""
    output = Output()
    session = await sessions.create(output, transport="websocket")
    await session.start()
    (stream,) = engine._streams
    recognizer = weakref.ref(stream._recognizer)  # type: ignore[arg-type]
    del stream
    for _ in range(400):  # the greeting, synthesised and sent (bounded wait, not a timing assertion)
        if any(m.get("type") == "transcript" and m.get("role") == "ASSISTANT" and m.get("final")
               for m in output.messages):
            break
        await session.push_audio(bytes(1024))
        await asyncio.sleep(0.025)
    else:
        raise AssertionError(f"no greeting: {output.messages[-3:]}")
    for _ in range(30):  # a second of the caller's line
        await session.push_audio(bytes(1024))
        await asyncio.sleep(0.02)
    await session.end("hangup")
    return recognizer


async def gone(ref: weakref.ref[object]) -> bool:
    """A decode still running on an engine thread holds its own reference: wait for it (bounded)."""
    for _ in range(100):
        if ref() is None:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_hung_up_call_frees_its_recogniser_without_a_garbage_collection(
        sessions: SessionManager, engine: OfflineEngine, no_cyclic_gc: None) -> None:
    recognizer = await one_call(sessions, engine)
    assert await gone(recognizer), "the recogniser outlived its call: only a full collection would free it"


@pytest.mark.slow
async def test_rss_stays_within_budget_over_calls_and_the_heap_is_trimmed(
        sessions: SessionManager, engine: OfflineEngine, no_cyclic_gc: None) -> None:
    for _ in range(2):  # warm-up: first synthesis and decode set up onnxruntime's and malloc's arenas
        await one_call(sessions, engine)
    trims = getattr(engine, "trims", 0)
    await asyncio.sleep(2.5)  # runtime.engine.engine.TRIM_DELAY_SECONDS: the warm-up's trim has run
    base = rss_mb()
    refs = [await one_call(sessions, engine) for _ in range(CALLS)]
    released = [await gone(ref) for ref in refs]
    ended = getattr(engine, "trims", 0)
    for _ in range(100):  # a trim that started after the last call ended (TRIM_DELAY_SECONDS later)
        if getattr(engine, "trims", 0) > ended:
            break
        await asyncio.sleep(0.05)
    grew = rss_mb() - base
    assert grew < BUDGET_MB, f"RSS grew {grew:.0f} MB over {CALLS} calls (budget {BUDGET_MB:.0f} MB)"
    assert all(released), f"{released.count(False)} of {CALLS} recognisers outlived their calls"
    assert engine.trims > trims, "no heap trim ran after calls ended"
