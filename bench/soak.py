"""Soak benchmark: the resident memory of one ``serve`` worker over many voice calls, per transport.

    .venv/bin/python bench/soak.py [--transports ws,webrtc,offer] [--sequential 200] [--rounds 5]
                                   [--concurrent 20] [--warmup 5] [--budget-mb 64] [--env KEY=VALUE ...]

One ``python -m runtime serve --workers 1`` process (SQLite, the offline engine) is started; this process
is its callers. Per transport, after ``--warmup`` calls and one round of ``--concurrent`` calls (the first
calls load lazily-built state: codec tables, the generic LM's first decode; the first burst sets the
heap's working size at that concurrency), the bench samples the worker's RSS
(``/proc/<pid>/smaps_rollup``), runs ``--sequential`` calls one at a time, then ``--rounds`` rounds of
``--concurrent`` calls at once, and prints RSS relative to the warm-up figure as it goes. Each sample is
taken only once the worker reports no session alive (``voice_sessions_active`` on ``/metrics``), so the
figures are what stays behind after calls, not what calls in progress hold.

Transports:

- ``ws``: ``/ws/audio``; the caller speaks a booking request (hibari TTS, streamed at twice real time,
  the most the socket allows) and hangs up once the assistant answered it.
- ``webrtc``: the same over a real aiortc peer connection (``tools.probe.CallProbe``), with the
  data channel's ``hangup``.
- ``offer``: ``POST /api/webrtc/offer`` from a peer that then goes away, so the call never connects and
  the server ends it at its connect timeout (20 s): what an abandoned page or a hostile client costs.

The verdict line per transport compares the largest growth over the warm-up figure with ``--budget-mb``
(64 MB by default: tens of MB of allocator and cache slack are normal, growth proportional to calls is
not). It exits 1 if any transport went over, 0 otherwise; it never retries.

WebRTC needs a non-loopback address (aioice never gathers 127.0.0.1) and nothing may reach this machine's
own interfaces, so for ``webrtc``/``offer`` the bench creates a private network namespace
(``tests/netns.py``; root and iproute2) and starts the server inside it; HTTP stays on the namespace's
127.0.0.1. ``ws`` alone runs on the host's loopback. docs/memory.md explains what used to leak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import soxr  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from tests import netns  # noqa: E402 - needs the repo root on sys.path

SOAK_CIDR = "10.253.7.1/24"  # the namespace's only non-loopback address (bench/rtc_sessions.py uses .0)
UTTERANCE = "i would like to book a table for four people tomorrow at seven pm"
CALL_TIMEOUT = 90.0  # one call, end to end, under 20-fold concurrency on a small machine
SETTLE_TIMEOUT = 60.0  # the worker must report no live session within this after the callers are gone
SETTLE_SECONDS = 3.5



# --- the worker ----------------------------------------------------------------------------------------

def rss_mb(pid: int) -> tuple[float, float]:
    """(Rss, Anonymous) of ``pid`` in MB: resident total, and the part that is heap rather than mapped files."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous"):
                fields[key] = int(rest.split()[0])
    return fields["Rss"] / 1024, fields["Anonymous"] / 1024


def _die_with_parent() -> None:
    """The worker must not outlive a bench that was killed (it would keep its port and memory): Linux's
    PR_SET_PDEATHSIG (prctl(2)) sends it SIGTERM when this process exits, however it exits."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """``python -m runtime serve --workers 1``: one process, so its pid is the worker whose memory counts."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str], root: Path = ROOT) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATA_DIR": str(data_dir), "SPEECH_ENGINE": "local", "STORE": "sqlite",
               "SESSION_SECRET": "soak-bench-secret-" + "x" * 32, "STAFF_TOKEN": "soak-bench-staff-token",
               # All callers share one address and --concurrent of them are live at once.
               "MAX_SESSIONS_PER_PROCESS": "64", "MAX_CALLS_PER_CLIENT": "64", "LOG_LEVEL": "warning",
               **extra_env}
        self.log = open(data_dir / "serve.log", "w+b")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve", "--workers", "1", "--host", "127.0.0.1",
             "--port", str(self.port)], cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)

    async def ready(self, within: float = 180.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"serve was not ready within {within:.0f} s: {self.tail()}")

    async def active_sessions(self, http: httpx.AsyncClient) -> float:
        text = (await http.get("/metrics")).text
        return sum(float(m.group(1)) for m in re.finditer(r"^voice_sessions_active\{[^}]*\} (\S+)$", text, re.M))

    async def settle(self) -> None:
        """Wait until no session is alive in the worker, so a sample measures what calls left behind."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            while await self.active_sessions(http) > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("sessions still alive a minute after their callers left")
                await asyncio.sleep(0.5)
        # The last call's release (peer connection close, executor work) finishes, and the engine's heap trim
        # after it (runtime.engine.engine.TRIM_DELAY_SECONDS) has run.
        await asyncio.sleep(SETTLE_SECONDS)

    def memory(self) -> tuple[float, float]:
        return rss_mb(self.proc.pid)

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- callers -------------------------------------------------------------------------------------------

def speech_16k() -> bytes:
    """The caller's booking request, 16 kHz s16le, with lead-in and trailing silence for the endpointer."""
    import hibari  # the engine's own TTS: the recogniser understands it reliably

    voice = hibari.Hibari(voice="heart", threads=1)
    speech = np.concatenate(list(voice.stream(UTTERANCE, speed=1.0, seed=1)))
    pcm = (np.clip(soxr.resample(speech, 24_000, 16_000), -1, 1) * 32767).astype("<i2")
    return np.concatenate([np.zeros(8000, "<i2"), pcm, np.zeros(24_000, "<i2")]).tobytes()


def answered(messages: list[dict[str, Any]]) -> bool:
    """The guest was heard and the assistant replied to it (a final transcript after the guest's)."""
    roles = [m.get("role") for m in messages if m.get("type") == "transcript" and m.get("final", True)]
    return "USER" in roles and "ASSISTANT" in roles[roles.index("USER"):]


async def ws_call(worker: Worker, pcm: bytes) -> bool:
    messages: list[dict[str, Any]] = []
    done = asyncio.Event()
    url = worker.base_url.replace("http://", "ws://") + "/ws/audio"
    async with connect(url, max_size=2**22) as ws:

        async def read() -> None:
            try:
                async for frame in ws:
                    if isinstance(frame, str):
                        messages.append(json.loads(frame))
                        if answered(messages):
                            done.set()
            finally:
                done.set()  # the server hung up: nothing more will come

        reader = asyncio.create_task(read())
        try:
            started = time.monotonic()
            for index, offset in enumerate(range(0, len(pcm), 640)):  # 20 ms frames at twice real time
                await ws.send(pcm[offset:offset + 640])
                await asyncio.sleep(max(0.0, started + (index + 1) * 0.01 - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), CALL_TIMEOUT)
            with contextlib.suppress(Exception):
                await ws.send(json.dumps({"type": "hangup"}))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    return answered(messages)


async def webrtc_call(worker: Worker, pcm: bytes) -> bool:
    from runtime.media.audio import resample_pcm
    from tools.probe import CallProbe

    probe = CallProbe(keep_pcm_seconds=1.0)
    try:
        offer = await probe.offer()
        async with httpx.AsyncClient(base_url=worker.base_url, timeout=CALL_TIMEOUT) as http:
            response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
        response.raise_for_status()
        await probe.accept(response.json()["sdp"])
        await probe.wait_connected(within=30)
        await probe.speak(resample_pcm(pcm, 16_000, 24_000))
        with contextlib.suppress(TimeoutError):
            await probe.wait_for_message(lambda m: answered(probe.messages), within=CALL_TIMEOUT)
        ok = answered(probe.messages)
        probe.send({"type": "hangup"})
        await asyncio.sleep(0.3)
        return ok
    finally:
        await probe.close()


async def abandoned_offer(worker: Worker, pcm: bytes) -> bool:
    """An offer whose caller disappears before ICE: the worker holds the call until its connect timeout."""
    from tools.probe import CallProbe

    probe = CallProbe(keep_pcm_seconds=1.0)
    try:
        offer = await probe.offer()
        async with httpx.AsyncClient(base_url=worker.base_url, timeout=CALL_TIMEOUT) as http:
            response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
        return response.status_code == 200
    finally:
        await probe.close()


CALLS: dict[str, Callable[[Worker, bytes], Awaitable[bool]]] = {
    "ws": ws_call, "webrtc": webrtc_call, "offer": abandoned_offer}


# --- the soak ------------------------------------------------------------------------------------------

class Recorder:
    def __init__(self, transport: str, worker: Worker) -> None:
        self.transport = transport
        self.worker = worker
        self.base: float | None = None
        self.peak_growth = 0.0
        self.failed = 0
        self.calls = 0

    async def sample(self, label: str) -> None:
        await self.worker.settle()
        rss, anon = self.worker.memory()
        if self.base is None:
            self.base = rss
            print(f"  {self.transport:6} {label:>28}  rss {rss:7.1f} MB  anon {anon:7.1f} MB  (baseline)", flush=True)
            return
        growth = rss - self.base
        self.peak_growth = max(self.peak_growth, growth)
        print(f"  {self.transport:6} {label:>28}  rss {rss:7.1f} MB  anon {anon:7.1f} MB  "
              f"{growth:+7.1f} MB  ({self.calls} calls, {self.failed} failed)", flush=True)

    async def run(self, count: int, concurrent: int, pcm: bytes) -> None:
        call = CALLS[self.transport]

        async def one() -> None:
            try:
                ok = await asyncio.wait_for(call(self.worker, pcm), CALL_TIMEOUT + 30)
            except Exception as exc:  # counted and shown: a soak that hides failed calls measures nothing
                print(f"    call failed: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                ok = False
            self.calls += 1
            self.failed += 0 if ok else 1

        if concurrent <= 1:
            for _ in range(count):
                await one()
        else:
            await asyncio.gather(*(one() for _ in range(count)))


async def soak(transport: str, worker: Worker, args: argparse.Namespace, pcm: bytes) -> Recorder:
    rec = Recorder(transport, worker)
    await rec.run(args.warmup, 1, pcm)
    # One concurrent round belongs to the warm-up: the first burst sets the heap's working size (allocator
    # arenas for each busy thread, onnxruntime's arena at its peak), which later rounds reuse.
    await rec.run(args.concurrent, args.concurrent, pcm)
    rec.calls = rec.failed = 0
    await rec.sample("after warm-up")
    step = max(1, args.sequential // 10)
    done = 0
    while done < args.sequential:
        n = min(step, args.sequential - done)
        await rec.run(n, 1, pcm)
        done += n
        await rec.sample(f"sequential {done}/{args.sequential}")
    for round_ in range(1, args.rounds + 1):
        await rec.run(args.concurrent, args.concurrent, pcm)
        await rec.sample(f"concurrent round {round_}/{args.rounds} x{args.concurrent}")
    return rec


@contextlib.contextmanager
def maybe_namespace(needed: bool) -> Iterator[None]:
    if not needed:
        yield
        return
    reason = netns.unavailable_reason()
    if reason is not None:
        print(f"WebRTC soak needs a private network namespace: {reason}", file=sys.stderr)
        raise SystemExit(2)
    with netns.network_namespace("ncsoak", SOAK_CIDR, default_route=False):
        yield


async def main_async(args: argparse.Namespace) -> int:
    transports = [t for t in args.transports.split(",") if t]
    unknown = set(transports) - set(CALLS)
    if unknown:
        print(f"unknown transports: {sorted(unknown)} (choose from {sorted(CALLS)})", file=sys.stderr)
        return 2
    extra_env = dict(item.split("=", 1) for item in args.env)
    pcm = speech_16k()
    print(f"soak: {args.warmup} warm-up, {args.sequential} sequential, {args.rounds} x {args.concurrent} concurrent"
          f" calls per transport; budget {args.budget_mb:.0f} MB over the warm-up RSS"
          + (f"; env {extra_env}" if extra_env else ""), flush=True)
    results: list[Recorder] = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        worker = Worker(Path(tmp), extra_env, args.runtime_dir)
        try:
            await worker.ready()
            rss, anon = worker.memory()
            print(f"  worker pid {worker.proc.pid} ready: rss {rss:.1f} MB  anon {anon:.1f} MB", flush=True)
            for transport in transports:
                results.append(await soak(transport, worker, args, pcm))
        finally:
            worker.stop()
    over = False
    for rec in results:
        verdict = "within" if rec.peak_growth <= args.budget_mb else "OVER"
        over |= rec.peak_growth > args.budget_mb
        print(f"{rec.transport:6} peak growth after warm-up {rec.peak_growth:+.1f} MB: {verdict} the "
              f"{args.budget_mb:.0f} MB budget ({rec.failed} of {rec.calls} calls failed)")
    return 1 if over else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transports", default="ws,webrtc,offer", help="comma-separated: ws, webrtc, offer")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--budget-mb", type=float, default=64.0)
    parser.add_argument("--runtime-dir", default=str(ROOT), help="checkout whose runtime the worker runs, e.g. a "
                        "`git worktree` of an older commit for before/after figures (the callers stay this one's)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the worker (e.g. MALLOC_ARENA_MAX=2 to compare allocators)")
    args = parser.parse_args()
    args.runtime_dir = Path(args.runtime_dir).resolve()
    needs_netns = any(t in ("webrtc", "offer") for t in args.transports.split(","))
    with maybe_namespace(needs_netns):
        return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
