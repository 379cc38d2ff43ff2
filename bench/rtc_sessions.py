"""Concurrent WebRTC calls against one runtime process, side by side with a plain aiortc echo server.

    .venv/bin/python bench/rtc_sessions.py [--steps 1,5,10,25,35] [--window 30] [--pattern continuous] [--quick]

Three processes per measurement: the server under test (our runtime with the echo session, or the
baseline: aiortc's own example pattern, echoing the received track through ``MediaRelay`` with aiortc's
defaults), and one process of N caller peers. Callers send a pre-encoded Opus pattern (a 40 ms 1 kHz
blip every 500 ms) so their own cost stays small, and receive with the low-delay path so they measure
the server, not themselves. ``--pattern continuous`` (the default) puts a quiet 300 Hz tone under the
blips, so the echo never pauses, as in speech: any delay the server's play-out queues up never drains
by itself. ``--pattern blips`` leaves digital silence between them (the echo empties between blips).

Printed per server and N: server CPU per session (% of one core, from /proc over the window), received
frames per second per session (50 = real time), inter-frame gap p99, and the echo delay (blip sent ->
blip heard; median over the window, and separately over its first and last quarter: a delay that
grows during the window is queued audio that never drains). Then one call per server with 2 %
simulated uplink loss: echo delay before, during, and after the loss. Ratios compare ours with the
baseline measured in the same run.

"Real time" means: every caller gets >= 49 frames/s, gap p99 <= 100 ms, echo delay <= 150 ms; "flat"
that the delay in the window's last quarter is within 30 ms of its first (issue 15 asks for flat delay at
every real-time N). A server stops stepping up once it falls below 40 frames/s, or when it refuses the
step's calls (ours answers 503 while its event loop runs late: runtime/media/load.py). When a server is
not in real time its per-session CPU understates its cost (it does less work), so the summary also gives
the ratio per delivered frame.
On a shared machine CPU steal shows up as lower fps for whichever server needs more CPU.

The whole measurement runs in a private network namespace the bench creates (tests/netns.py; needs
root and iproute2): WebRTC cannot use 127.0.0.1 (aioice never gathers loopback candidates) and no
traffic may go to this machine's own interfaces, so both servers and the callers are started inside
it and connect over its one private address. Without a namespace the bench says why and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import netns  # noqa: E402 - needs the repo root on sys.path

BENCH_CIDR = "10.253.0.1/24"  # the namespace's only non-loopback address

BLIP_EVERY = 25  # frames (500 ms)
BLIP_FRAMES = 2
REALTIME_FPS = 49.0  # at least 98 % of 50 frames/s
REALTIME_ECHO_DELAY_MS = 150.0  # blip out -> blip back; ~60-90 ms on an idle machine
REALTIME_GAP_P99_MS = 100.0  # a browser's adaptive jitter buffer absorbs gaps up to this
FLAT_MS = 30.0  # echo delay at the end of a window within this of its start: nothing accumulates
TONE_AMPLITUDE = 0.04  # the continuous pattern's 300 Hz bed: echoed (above the echo's gate), below the blip level


# --- servers -----------------------------------------------------------------------------------------

def serve_ours(port: int) -> None:
    import uvicorn

    from runtime.app import create_app
    from runtime.media.routes import MediaHub
    from runtime.ratelimit import RateLimiter
    from runtime.services import Overrides
    from runtime.settings import load_settings
    from tools.echo import EchoSessionFactory

    data = tempfile.mkdtemp(prefix="bench-rtc-")
    hub = MediaHub(session_factory=EchoSessionFactory(max_sessions=1000), limiter=RateLimiter(1e6, 1_000_000))
    app = create_app(load_settings(data_dir=Path(data), staff_token="bench-staff-token", session_secret="b" * 40,
                                   max_sessions_per_process=1000, max_calls_per_client=1000), Overrides(media=hub))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def serve_baseline(port: int) -> None:
    """aiortc's examples/server pattern: echo the received audio back through MediaRelay, all defaults."""
    import uvicorn
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    pcs: set[RTCPeerConnection] = set()
    relay = MediaRelay()

    async def offer(request: Request) -> JSONResponse:
        params = await request.json()
        # No STUN server (aiortc's default is Google's): nothing may leave the namespace, and a
        # server-reflexive candidate changes nothing in what is measured. Our runtime does the same.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            @channel.on("message")
            def on_message(message: Any) -> None:
                if isinstance(message, str) and message.startswith("ping"):
                    channel.send("pong" + message[4:])

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                pcs.discard(pc)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                pc.addTrack(relay.subscribe(track))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type=params["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return JSONResponse({"sdp": pc.localDescription.sdp, "type": "answer"})

    app = Starlette(routes=[Route("/api/webrtc/offer", offer, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# --- callers -----------------------------------------------------------------------------------------

def blip_cycle(pattern: str = "continuous") -> list[bytes]:
    """One 500 ms cycle of Opus packets: a 40 ms 1 kHz blip, then silence or (continuous) a quiet tone."""
    import numpy as np

    from runtime.media.outbound import _OpusEncoder

    encoder = _OpusEncoder()
    t = np.arange(480 * BLIP_EVERY) / 24_000  # 500 ms: a whole number of 300 Hz periods, so the cycle loops
    bed = np.sin(2 * np.pi * 300 * t) * TONE_AMPLITUDE if pattern == "continuous" else np.zeros_like(t)
    blip = np.sin(2 * np.pi * 1000 * t) * 0.5 * (t < BLIP_FRAMES * 0.02)
    samples = ((bed + blip) * 32767).astype("<i2").tobytes()
    pcm = [samples[i * 960:(i + 1) * 960] for i in range(BLIP_EVERY)]
    for _ in range(3):  # warm the encoder so the recorded cycle is its steady state
        packets = [encoder.encode(chunk) for chunk in pcm]
    return packets


class BlipTrack:
    """Paced track of pre-encoded packets; remembers when each blip left."""

    def __new__(cls, cycle: list[bytes]) -> Any:
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
        from av import Packet

        from runtime.media.outbound import TIME_BASE

        class _Track(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self.index = -1
                self.start: float | None = None
                self.blips_sent: list[float] = []

            async def recv(self) -> Packet:  # type: ignore[override]
                if self.readyState != "live":
                    raise MediaStreamError
                loop = asyncio.get_running_loop()
                self.index += 1
                if self.start is None:
                    self.start = loop.time()
                due = self.start + self.index * 0.02
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                position = self.index % BLIP_EVERY
                if position == 0:
                    self.blips_sent.append(loop.time())
                packet = Packet(cycle[position])
                packet.pts = self.index * 480
                packet.time_base = TIME_BASE
                return packet

        return _Track()


class Caller:
    def __init__(self, probe: Any, track: Any) -> None:
        self.probe = probe
        self.track = track
        self.quiet = 0
        self.delays: list[tuple[float, float]] = []  # (heard at, delay)
        probe.on_frame = self.on_frame

    def on_frame(self, mono: Any, rate: int, now: float) -> None:
        import numpy as np

        level = float(np.abs(mono).max()) if mono.size else 0.0
        if level > 3000:
            if self.quiet >= 5 and self.track.blips_sent:
                delay = now - self.track.blips_sent[-1]
                if delay < 0.02 * BLIP_EVERY * 0.9 and delay > 0:
                    self.delays.append((now, delay))
            self.quiet = 0
        else:
            self.quiet += 1


async def run_callers(url: str, count: int, window: float, loss_phases: bool, pattern: str) -> dict[str, Any]:
    import httpx

    from tools.probe import CallProbe

    cycle = blip_cycle(pattern)
    callers: list[Caller] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async def one() -> Caller:
            track = BlipTrack(cycle)
            probe = CallProbe(track=track, keep_pcm_seconds=0, low_delay_receive=True,
                              decode_layout="mono")
            caller = Caller(probe, track)
            offer = await probe.offer()
            response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            response.raise_for_status()
            await probe.accept(response.json()["sdp"])
            await probe.wait_connected(within=30)
            return caller

        for start in range(0, count, 5):  # ramp up in small groups like real arrivals
            callers += await asyncio.gather(*(one() for _ in range(min(5, count - start))))
    await asyncio.sleep(3.0)  # settle: ramp-up bursts have played out (the track needs 1 s of steady audio)
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the parent samples server CPU from here
    loop = asyncio.get_running_loop()
    result: dict[str, Any] = {}
    if loss_phases:
        phases = {}
        for name, loss in (("before", 0.0), ("during", 0.02), ("after", 0.0)):
            for c in callers:
                c.probe.loss = loss
            t0 = loop.time()
            await asyncio.sleep(window)
            delays = [d for c in callers for (at, d) in c.delays if at >= t0 + (1.0 if name == "after" else 0)]
            phases[name] = statistics.median(delays) * 1000 if delays else None
        result["phases"] = phases
        result["dropped"] = sum(c.probe.dropped_rtp for c in callers)
        result["sent"] = sum(c.probe.sent_rtp for c in callers)
    else:
        t0 = loop.time()
        frames0 = [c.probe.received.frames for c in callers]
        await asyncio.sleep(window)
        t1 = loop.time()
        fps = [(c.probe.received.frames - f0) / (t1 - t0) for c, f0 in zip(callers, frames0, strict=True)]
        gaps = []
        for c in callers:
            arrivals = [a for a in c.probe.received.arrivals if a >= t0]
            gaps += [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
        delays = [d for c in callers for (at, d) in c.delays if at >= t0]
        quarter = (t1 - t0) / 4
        start = [d for c in callers for (at, d) in c.delays if t0 <= at < t0 + quarter]
        end = [d for c in callers for (at, d) in c.delays if at >= t1 - quarter]
        gaps.sort()
        result = {
            "fps_mean": statistics.mean(fps), "fps_min": min(fps),
            "gap_p99_ms": gaps[int(len(gaps) * 0.99)] if gaps else None,
            "delay_ms": statistics.median(delays) * 1000 if delays else None,
            "delay_start_ms": statistics.median(start) * 1000 if start else None,
            "delay_end_ms": statistics.median(end) * 1000 if end else None,
        }
    print("RESULT " + json.dumps(result), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await asyncio.gather(*(c.probe.close() for c in callers), return_exceptions=True)
    return result


# --- orchestration -----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "_serve", kind, str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(server: Server, count: int, window: float, pattern: str, loss: bool = False) -> dict[str, Any]:
    time.sleep(3.0)  # the last step's calls are gone: let the server's 2 s loop-lag window (media/load.py) forget them
    callers = subprocess.Popen(
        [sys.executable, __file__, "_callers", server.url, str(count), str(window), "1" if loss else "0", pattern],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert callers.stdin
    assert callers.stdout
    try:
        line = callers.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"callers failed to connect ({server.kind}, N={count}): {line!r}")
        cpu0, t0, ccpu0 = cpu_seconds(server.proc.pid), time.monotonic(), cpu_seconds(callers.pid)
        callers.stdin.write("go\n")
        callers.stdin.flush()
        line = callers.stdout.readline()
        cpu1, t1, ccpu1 = cpu_seconds(server.proc.pid), time.monotonic(), cpu_seconds(callers.pid)
        if not line.startswith("RESULT "):
            raise RuntimeError(f"callers failed ({server.kind}, N={count}): {line!r}")
        result: dict[str, Any] = json.loads(line[7:])
        result["cpu_pct"] = (cpu1 - cpu0) / (t1 - t0) * 100
        result["cpu_per_session"] = result["cpu_pct"] / count
        result["cpu_ms_per_frame"] = (cpu1 - cpu0) * 1000 / max(1.0, result.get("fps_mean", 50.0) * count * (t1 - t0))
        result["callers_cpu_pct"] = (ccpu1 - ccpu0) / (t1 - t0) * 100
        callers.stdin.write("bye\n")
        callers.stdin.flush()
        callers.wait(30)
        return result
    finally:
        if callers.poll() is None:
            callers.kill()
            callers.wait()


def realtime(result: dict[str, Any]) -> bool:
    """Every caller gets ~50 frames/s, gaps stay small, and the round trip has not started to queue up."""
    return (result["fps_min"] >= REALTIME_FPS and (result["gap_p99_ms"] or 1e9) <= REALTIME_GAP_P99_MS
            and (result["delay_ms"] or 1e9) <= REALTIME_ECHO_DELAY_MS)


def flat(result: dict[str, Any]) -> bool | None:
    """Echo delay at the end of the window within ``FLAT_MS`` of its start (None: no delays measured)."""
    start, end = result.get("delay_start_ms"), result.get("delay_end_ms")
    return None if start is None or end is None else abs(end - start) <= FLAT_MS


def trend(result: dict[str, Any]) -> str:
    start, end = result.get("delay_start_ms"), result.get("delay_end_ms")
    if start is None or end is None:
        return "-"
    return "flat" if abs(end - start) <= FLAT_MS else ("GROWS" if end > start else "SHRINKS")


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1,5,10,25,35", help="concurrent calls per measurement")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per step")
    parser.add_argument("--pattern", choices=("continuous", "blips"), default="continuous",
                        help="a quiet tone under the blips (as speech: the echo never pauses) or silence between")
    parser.add_argument("--servers", default="baseline,ours", help="which servers to measure")
    parser.add_argument("--quick", action="store_true", help="steps 1,5 and a 6 s window (smoke run)")
    args = parser.parse_args()
    steps = [1, 5] if args.quick else [int(s) for s in args.steps.split(",")]
    window = 6.0 if args.quick else args.window
    reason = netns.unavailable_reason()
    if reason is not None:
        print(f"bench/rtc_sessions.py cannot run: {reason} (WebRTC here needs a private namespace: "
              "aiortc gathers no 127.0.0.1 candidates and no host address may be used)", file=sys.stderr)
        return 2
    namespace = contextlib.ExitStack()
    try:
        # This thread moves in; every server and caller process is started from it afterwards.
        name = namespace.enter_context(netns.network_namespace("ncbench", BENCH_CIDR, default_route=False))
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"bench/rtc_sessions.py cannot create a private network namespace: {netns.failure_detail(exc)}",
              file=sys.stderr)
        return 2
    with namespace:
        print(f"network: private namespace {name}, calls over {netns.address_of(BENCH_CIDR)}")
        bench(steps, window, args.pattern, [k for k in args.servers.split(",") if k in ("baseline", "ours")])
    return 0


def bench(steps: list[int], window: float, pattern: str, kinds: list[str]) -> None:
    started = time.monotonic()
    print(f"cpus={os.cpu_count()} steps={steps} window={window}s pattern={pattern} "
          "(machine may be shared: compare ratios)")
    results: dict[str, dict[int, dict[str, Any]]] = {"baseline": {}, "ours": {}}
    loss: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        server = Server(kind)
        try:
            for count in steps:
                try:
                    results[kind][count] = measure(server, count, window, pattern)
                except RuntimeError as exc:
                    print(f"  {exc}")
                    break
                r = results[kind][count]
                print(f"{kind:8} N={count:3}  cpu {r['cpu_pct']:6.1f}%  per session {r['cpu_per_session']:5.2f}%  "
                      f"fps mean/min {r['fps_mean']:5.1f}/{r['fps_min']:5.1f}  gap p99 {fmt(r['gap_p99_ms'])} ms  "
                      f"cpu/frame {r['cpu_ms_per_frame']:.3f} ms  echo delay {fmt(r['delay_ms'])} ms "
                      f"(start {fmt(r['delay_start_ms'])} -> end {fmt(r['delay_end_ms'])}: "
                      f"{trend(r)})  "
                      f"{'real time' if realtime(r) else 'NOT real time'}"
                      f"  (callers' process {r['callers_cpu_pct']:.0f}% cpu)",
                      flush=True)
                if r["fps_min"] < 40:  # hopelessly overloaded: larger N only takes longer to show it
                    break
            loss[kind] = measure(server, 1, 6.0, pattern, loss=True)
            p = loss[kind]["phases"]
            print(f"{kind:8} 2% uplink loss ({loss[kind]['dropped']}/{loss[kind]['sent']} RTP dropped): echo delay "
                  f"before {fmt(p['before'])} ms, during {fmt(p['during'])} ms, after {fmt(p['after'])} ms", flush=True)
        finally:
            server.stop()

    print("\n=== summary (ours vs baseline, same run) ===")
    print(f"{'N':>4} | {'CPU/session base':>16} | {'CPU/session ours':>16} | {'ratio':>6} | "
          f"{'ratio per frame':>15} | {'gap p99 base/ours':>18} | {'echo delay base/ours':>20}")
    for count in steps:
        b, o = results["baseline"].get(count), results["ours"].get(count)
        if not b or not o:
            continue
        ratio = o["cpu_per_session"] / b["cpu_per_session"] if b["cpu_per_session"] else float("nan")
        per_frame = o["cpu_ms_per_frame"] / b["cpu_ms_per_frame"] if b["cpu_ms_per_frame"] else float("nan")
        print(f"{count:>4} | {b['cpu_per_session']:15.2f}% | {o['cpu_per_session']:15.2f}% | {ratio:6.2f} | "
              f"{per_frame:15.2f} | "
              f"{fmt(b['gap_p99_ms']):>8} / {fmt(o['gap_p99_ms']):<7} | "
              f"{fmt(b['delay_ms']):>9} / {fmt(o['delay_ms']):<8}")
    for kind in kinds:
        ok = [n for n, r in results[kind].items() if realtime(r)]
        print(f"most sessions kept in real time ({kind}): {max(ok) if ok else 0} of the steps tried {steps}")
        grows = [n for n in ok if not flat(results[kind][n])]
        print(f"echo delay flat (end within {FLAT_MS:.0f} ms of start) at every real-time N ({kind}): "
              f"{'yes' if not grows else 'NO, grows at N=' + ','.join(map(str, grows))}")
    for kind in kinds:
        p = loss.get(kind, {}).get("phases", {})
        if p.get("before") is not None and p.get("after") is not None:
            print(f"added echo delay after 2% loss ({kind}): {p['after'] - p['before']:+.1f} ms "
                  f"(during loss {p['during'] - p['before'] if p.get('during') else float('nan'):+.1f} ms)")
    print("targets: per-session CPU ours <= 0.5 x baseline; echo delay flat at every real-time N; "
          "delay after loss within 20 ms of loss-free")
    print(f"bench took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        (serve_ours if sys.argv[2] == "ours" else serve_baseline)(int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_callers":
        asyncio.run(run_callers(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1", sys.argv[6]))
    else:
        raise SystemExit(main())
