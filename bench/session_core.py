"""Session-core cost: CPU per caller audio frame, and model-audio -> sink latency (p50 / p99).

Model, first run: an in-process scripted SpeechModel (no network), so the figures are the session
core's own cost, not TLS or the SDK's. Second run (skip with --no-emulator): the same sessions through
the real Bedrock SDK client (CRT, HTTP/2, TLS, SigV4 per event) against the Nova Sonic emulator running
in a child process, so this process's CPU is the client side only - what a Nova-mode runtime pays.
Each figure is printed next to a baseline measured in the same run, and as a ratio, because absolute
numbers on a shared 2-core machine mean little:

- CPU per frame, baseline = the irreducible work for one 32 ms frame: base64 + the audioInput event
  dict + json.dumps (what any client must do before the SDK).
- audio-to-sink latency, baseline = a bare loop doing queue.get + base64 decode + sink call (the
  minimum path from a received audioOutput event to the transport).

Run: .venv/bin/python bench/session_core.py [--seconds 10] [--sessions 4] [--no-emulator]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.bookings.service import BookingService
from runtime.settings import Settings
from runtime.speech import protocol as p
from runtime.speech.model import StreamOptions
from runtime.speech.session import SessionConfig, SessionManager
from runtime.stores.factory import make_store

ROOT = Path(__file__).resolve().parent.parent
FRAME = 1024  # bytes: 32 ms at 16 kHz s16le
OUT_CHUNK = 4800  # bytes: 100 ms at 24 kHz s16le


class ScriptedStream:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.audio_frames = 0
        self.closed = False

    async def send(self, event: dict[str, Any]) -> None:
        if "audioInput" in event["event"]:
            self.audio_frames += 1

    async def receive(self) -> dict[str, Any] | None:
        return await self.queue.get()  # type: ignore[no-any-return]

    async def ready(self) -> None:
        """In-process: nothing to confirm."""

    async def close(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)


class ScriptedModel:
    name = "scripted"
    greets_unprompted = False  # stands in for Nova Sonic, so it gets the greeting prompt too

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    async def open(self, options: StreamOptions) -> ScriptedStream:
        stream = ScriptedStream()
        self.streams.append(stream)
        return stream

    async def close(self) -> None:
        pass

    @property
    def ready(self) -> bool:
        return True

    async def warm_up(self) -> None:
        """Nothing to load."""


class TimingSink:
    def __init__(self, sent_at: deque[float]) -> None:
        self.sent_at = sent_at
        self.latencies: list[float] = []

    async def audio(self, pcm: bytes) -> None:
        self.latencies.append(time.perf_counter() - self.sent_at.popleft())

    def flush_audio(self) -> None:
        pass

    async def message(self, message: dict[str, Any]) -> None:
        pass


def baseline_frame_cpu(frames: int) -> float:
    pcm = bytes(FRAME)
    start = time.process_time()
    for _ in range(frames):
        json.dumps({"event": {"audioInput": {"promptName": "p" * 36, "contentName": "c" * 36,
                                             "content": base64.b64encode(pcm).decode()}}})
    return (time.process_time() - start) / frames


async def baseline_latency(chunks: int) -> list[float]:
    queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    latencies: list[float] = []
    ids = p.OutputIds("s", "p", "c", "a")
    pcm = bytes(OUT_CHUNK)

    async def consume() -> None:
        for _ in range(chunks):
            sent, event = await queue.get()
            base64.b64decode(event["event"]["audioOutput"]["content"])
            latencies.append(time.perf_counter() - sent)

    task = asyncio.create_task(consume())
    for _ in range(chunks):
        queue.put_nowait((time.perf_counter(), p.audio_output(ids, pcm)))
        await asyncio.sleep(0.001)
    await task
    return latencies


async def run_sessions(seconds: float, sessions: int, store_dir: str,
                       model: Any = None) -> tuple[float, int, list[float]]:
    """Returns (CPU seconds, frames sent, audio-to-sink latencies); latencies need the scripted model."""
    settings = Settings(data_dir=Path(store_dir), session_secret="bench-secret-0123456789",
                        speech_engine="nova-sonic")
    store = make_store(settings)
    await store.start()
    scripted = model is None
    model = model or ScriptedModel()
    manager = SessionManager(model, BookingService(store.bookings, settings), store, settings,
                             session_secret="bench-secret-0123456789", config=SessionConfig())
    sent_at: deque[float] = deque()
    sink = TimingSink(sent_at)
    live = []
    for _ in range(sessions):
        session = await manager.create(sink, transport="websocket")
        await session.start()
        live.append(session)
    chunk = bytes(640)  # 20 ms, as a WebRTC transport pushes it
    pcm_out = bytes(OUT_CHUNK)
    steps = int(seconds / 0.02)
    cpu_start = time.process_time()
    for step in range(steps):
        for session in live:
            await session.push_audio(chunk)
        if scripted and step % 5 == 0:  # one 100 ms audioOutput chunk per session every 100 ms
            for stream in model.streams:
                ids = p.OutputIds("s", "prompt", "completion", "audio")
                sent_at.append(time.perf_counter())
                stream.queue.put_nowait(p.audio_output(ids, pcm_out))
        await asyncio.sleep(0.02)
    cpu = time.process_time() - cpu_start
    if scripted:
        frames = sum(stream.audio_frames for stream in model.streams)
    else:  # every pushed byte goes out in 1024-byte frames (nothing is dropped at this rate)
        frames = steps * len(chunk) // FRAME * sessions
    await manager.close_all("bench over")
    await store.close()
    return cpu, frames, sink.latencies


async def idle_driver_cpu(seconds: float) -> float:
    """CPU/s of the driver loop alone (20 ms ticks, no sessions), subtracted from the session figure."""
    start = time.process_time()
    for _ in range(int(seconds / 0.02)):
        await asyncio.sleep(0.02)
    return (time.process_time() - start) / seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--no-emulator", dest="emulator", action="store_false",
                        help="skip the run through the real SDK client and the emulator")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wall = time.perf_counter()
        cpu, frames, latencies = await run_sessions(args.seconds, args.sessions, tmp)
        wall = time.perf_counter() - wall
    idle = await idle_driver_cpu(min(args.seconds, 5.0)) * args.seconds
    cpu = max(cpu - idle, 0.0)
    base_cpu = baseline_frame_cpu(max(frames, 1000))
    base_lat = await baseline_latency(max(len(latencies), 200))
    per_frame = cpu / max(frames, 1)
    print(f"model: in-process scripted SpeechModel; {args.sessions} sessions x {args.seconds:.0f} s "
          f"of 20 ms caller chunks + 100 ms model audio chunks (wall {wall:.1f} s)")
    print(f"driver idle-loop CPU subtracted: {idle * 1000:.1f} ms")
    print(f"frames sent to model: {frames} ({frames / args.sessions / args.seconds:.1f}/s per session, "
          f"expected ~31.25)")
    print(f"CPU per input frame, session core (input + output handling, idle loop subtracted): "
          f"{per_frame * 1e6:8.1f} µs")
    print(f"CPU per input frame, baseline (b64 + event dict + json.dumps only):                  "
          f"{base_cpu * 1e6:8.1f} µs")
    print(f"ratio session core / baseline: {per_frame / base_cpu:.1f}x; "
          f"one session = {per_frame * 31.25 * 100:.2f} % of a core")
    print(f"audio-to-sink latency, session core: p50 {pct(latencies, 0.5):.3f} ms  p99 {pct(latencies, 0.99):.3f} ms"
          f"  (n={len(latencies)}, mean {statistics.fmean(latencies) * 1000:.3f} ms)")
    print(f"audio-to-sink latency, baseline:     p50 {pct(base_lat, 0.5):.3f} ms  p99 {pct(base_lat, 0.99):.3f} ms"
          f"  (n={len(base_lat)})")
    print(f"ratio p50: {pct(latencies, 0.5) / max(pct(base_lat, 0.5), 1e-6):.1f}x  "
          f"p99: {pct(latencies, 0.99) / max(pct(base_lat, 0.99), 1e-6):.1f}x")
    if args.emulator:
        await emulator_run(args, base_cpu)


async def emulator_run(args: argparse.Namespace, base_cpu: float) -> None:
    import os

    from runtime.speech.nova_sonic import NovaSonicModel

    with tempfile.TemporaryDirectory() as tmp:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "emulators.nova_sonic", "--tls-dir", f"{tmp}/tls",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        try:
            assert child.stdout is not None
            ready = (await child.stdout.readline()).decode()
            _, url, ca_file, access_key, secret_key = ready.split()
            os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = url
            # The emulator verifies SigV4: sign with the keys it minted (and no stray session token).
            os.environ["AWS_ACCESS_KEY_ID"] = access_key
            os.environ["AWS_SECRET_ACCESS_KEY"] = secret_key
            os.environ.pop("AWS_SESSION_TOKEN", None)
            settings = Settings(data_dir=Path(tmp), speech_engine="nova-sonic")
            model = NovaSonicModel(settings, ca_file=ca_file)
            cpu, frames, _ = await run_sessions(args.seconds, args.sessions, tmp, model)
            await model.close()
        finally:
            child.terminate()
            await child.wait()
    idle = await idle_driver_cpu(min(args.seconds, 5.0)) * args.seconds
    per_frame = max(cpu - idle, 0.0) / max(frames, 1)
    print(f"model: real SDK client (CRT, HTTP/2, TLS, SigV4 per event) -> emulator in a child process; "
          f"{args.sessions} sessions x {args.seconds:.0f} s")
    print(f"CPU per input frame, session core + SDK client (this process only):               "
          f"{per_frame * 1e6:8.1f} µs  ({per_frame / base_cpu:.1f}x baseline; one session = "
          f"{per_frame * 31.25 * 100:.2f} % of a core)")


if __name__ == "__main__":
    asyncio.run(main())
