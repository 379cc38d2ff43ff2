"""Events gateway benchmark: publish -> deliver latency and throughput with 1, 100 and 1000 subscribers.

Run from the repo root: ``.venv/bin/python bench/events.py [--quick]``.

Three processes per scenario, all on 127.0.0.1:
- the server: the embedded AppSync Events gateway under uvicorn, or the baseline - a bare
  ``websockets`` server that re-broadcasts each event its publisher connection sends (up to five per
  message, acknowledged like ``publish_success``) as one frame to every other connection (no protocol,
  no auth, no channels, no per-subscription framing);
- the subscribers: N WebSocket connections in one process (gateway: AppSync handshake + a
  ``/conversations/*`` subscription with the staff token; baseline: plain connections);
- the publisher (this process): one WebSocket connection publishing events that carry their send time
  (``time.monotonic()`` is system wide on Linux, so the subscriber process can subtract it).

Latency is measured at a paced rate (at most ~10k deliveries/s so it measures the path, not a backlog);
throughput by publishing a burst as fast as acknowledgements allow and timing until every subscriber
has every event. The ratio column is gateway / baseline from the same run, which survives a noisy,
shared machine better than the absolute numbers. Each phase has a deadline so the script is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STAFF = "bench-staff-token-0123456789"
SECRET = "bench-session-secret-0123456789"
API_KEY = "da2-benchkey0123456789"
CHANNEL = "/conversations/bench-session-1"


# --- servers (each runs in its own process) -------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_gateway(port: int) -> None:
    import uvicorn

    from runtime.events.gateway import EventsGateway, standalone_app

    gateway = EventsGateway(staff_token=STAFF, session_secret=SECRET, api_key=API_KEY, keepalive_seconds=30,
                            send_queue_size=8192, socket_publish_rate=100_000, max_frame_bytes=2_000_000)
    uvicorn.run(standalone_app(gateway), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_baseline(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/pub":
            async for message in ws:  # a JSON list of up to 5 events, like a publish request
                for event in json.loads(message):
                    broadcast(subscribers, json.dumps(event))  # one frame per event, like the gateway
                await ws.send("ok")  # the acknowledgement the publisher waits for, like publish_success
            return
        subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=2**22):
            await asyncio.Future()

    asyncio.run(main())


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


# --- subscribers (one process, N connections) --------------------------------------------------

def run_subscribers(kind: str, port: int, count: int, expected: int, ready: Any, results: Any,
                    deadline_s: float) -> None:
    asyncio.run(_subscribers(kind, port, count, expected, ready, results, deadline_s))


async def _subscribers(kind: str, port: int, count: int, expected: int, ready: Any, results: Any,
                       deadline_s: float) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    from runtime.events.protocol import subprotocols_for

    latencies: list[list[float]] = [[] for _ in range(count)]
    last_seen = [0.0] * count
    connections: list[ClientConnection] = []
    semaphore = asyncio.Semaphore(50)

    async def open_one(n: int) -> ClientConnection:
        async with semaphore:
            if kind == "gateway":
                ws = await connect(f"ws://127.0.0.1:{port}/event/realtime", proxy=None, open_timeout=30,
                                   subprotocols=subprotocols_for({"Authorization": STAFF}), max_size=2**22)
                await ws.send(json.dumps({"type": "subscribe", "id": f"s{n}", "channel": "/conversations/*"}))
                while json.loads(await ws.recv()).get("type") != "subscribe_success":
                    pass
            else:
                ws = await connect(f"ws://127.0.0.1:{port}/sub", proxy=None, open_timeout=30, max_size=2**22)
            return ws

    async def consume(n: int, ws: ClientConnection) -> None:
        got = 0
        async for raw in ws:
            now = time.monotonic()
            frame = json.loads(raw)
            if kind == "gateway":
                if frame.get("type") != "data":
                    continue
                event = json.loads(frame["event"])
            else:
                event = frame
            if event.get("phase") == "latency":
                latencies[n].append(now - event["t"])
            got += 1
            last_seen[n] = now
            if got >= expected:
                return

    connections = list(await asyncio.gather(*(open_one(n) for n in range(count))))
    await asyncio.sleep(0.3)  # let the server register the last subscriptions
    ready.set()
    tasks = [asyncio.create_task(consume(n, ws)) for n, ws in enumerate(connections)]
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    flat = [x for per in latencies for x in per]
    complete = sum(1 for t in done if not t.cancelled() and t.exception() is None)
    results.put({"latencies": flat, "last_seen": max(last_seen), "complete": complete})
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


# --- publisher (this process) -------------------------------------------------------------------

class Publisher:
    def __init__(self, kind: str, port: int) -> None:
        self.kind, self.port = kind, port
        self.ws: Any = None
        self.counter = 0

    async def __aenter__(self) -> Publisher:
        from websockets.asyncio.client import connect

        from runtime.events.protocol import subprotocols_for

        if self.kind == "gateway":
            self.ws = await connect(f"ws://127.0.0.1:{self.port}/event/realtime", proxy=None,
                                    subprotocols=subprotocols_for({"x-api-key": API_KEY}), max_size=2**22)
        else:
            self.ws = await connect(f"ws://127.0.0.1:{self.port}/pub", proxy=None, max_size=2**22)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def publish(self, events: list[dict[str, Any]]) -> None:
        """Publish and wait for the server's acknowledgement (publish_success / "ok")."""
        if self.kind == "gateway":
            self.counter += 1
            await self.ws.send(json.dumps({"type": "publish", "id": f"p{self.counter}", "channel": CHANNEL,
                                           "events": [json.dumps(e) for e in events]}))
            while True:
                reply = json.loads(await self.ws.recv())
                if reply.get("type") == "publish_success":
                    return
                if reply.get("type") in ("publish_error", "error"):
                    raise RuntimeError(f"publish failed: {reply}")
        else:
            await self.ws.send(json.dumps(events))
            await self.ws.recv()


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    events_per_s: float
    deliveries_per_s: float
    complete: int


async def scenario(kind: str, port: int, subscribers: int, latency_events: int, rate: float,
                   burst: int) -> Figures:
    ctx = mp.get_context("spawn")
    ready, results = ctx.Event(), ctx.Queue()
    expected = latency_events + burst
    deadline_s = 20.0 + latency_events / rate + burst * subscribers / 5000
    proc = ctx.Process(target=run_subscribers, args=(kind, port, subscribers, expected, ready, results, deadline_s))
    proc.start()
    try:
        if not await asyncio.to_thread(ready.wait, 90):
            raise RuntimeError("subscribers did not connect in time")
        async with Publisher(kind, port) as publisher:
            interval = 1.0 / rate
            next_at = time.monotonic()
            for i in range(latency_events):
                next_at += interval
                await publisher.publish([{"phase": "latency", "i": i, "t": time.monotonic()}])
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.sleep(0.5)  # let the paced phase drain before the burst
            started = time.monotonic()
            for start in range(0, burst, 5):
                await publisher.publish([{"phase": "burst", "i": i, "t": time.monotonic()}
                                         for i in range(start, min(burst, start + 5))])
            report = await asyncio.to_thread(results.get, True, deadline_s + 30)
    finally:
        await asyncio.to_thread(proc.join, 30)
        if proc.is_alive():
            proc.kill()
    elapsed = max(1e-9, report["last_seen"] - started)
    lat = sorted(report["latencies"]) or [float("nan")]
    return Figures(
        p50_ms=statistics.median(lat) * 1000,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        events_per_s=burst / elapsed,
        deliveries_per_s=burst * subscribers / elapsed,
        complete=report["complete"],
    )


def start_server(kind: str) -> tuple[Any, int]:
    port = _free_port()
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=run_gateway if kind == "gateway" else run_baseline, args=(port,), daemon=True)
    proc.start()
    _wait_listening(port, time.monotonic() + 30)
    return proc, port


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a third of the time)")
    parser.add_argument("--subscribers", type=int, nargs="*", default=[1, 100, 1000])
    args = parser.parse_args()
    scale = 0.35 if args.quick else 1.0
    plans = {  # subscribers -> (paced events, rate/s, burst events): paced deliveries stay <= ~10k/s
        n: (max(10, int((100 if n < 1000 else 30) * scale)), min(50.0, 10_000 / n),
            max(20, int({1: 2000, 100: 400}.get(n, 100) * scale)))
        for n in args.subscribers
    }
    print(f"events bench: cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} quick={args.quick}")
    rows: dict[int, dict[str, Figures]] = {n: {} for n in plans}
    for kind in ("baseline", "gateway"):
        proc, port = start_server(kind)
        try:
            for n, (paced, rate, burst) in plans.items():
                figures = await scenario(kind, port, n, paced, rate, burst)
                rows[n][kind] = figures
                print(f"  {kind:8s} subs={n:5d} paced={paced}@{rate:.0f}/s burst={burst}: "
                      f"p50={figures.p50_ms:7.2f} ms p99={figures.p99_ms:7.2f} ms "
                      f"events/s={figures.events_per_s:8.1f} deliveries/s={figures.deliveries_per_s:9.0f} "
                      f"complete={figures.complete}/{n}", flush=True)
        finally:
            proc.terminate()
            proc.join(10)
    print("\nsubs | gateway p50 / p99 ms | baseline p50 / p99 ms | p50 ratio | events/s gw / base | throughput ratio")
    for n, pair in rows.items():
        gw, base = pair["gateway"], pair["baseline"]
        print(f"{n:4d} | {gw.p50_ms:8.2f} / {gw.p99_ms:8.2f} | {base.p50_ms:8.2f} / {base.p99_ms:8.2f}     | "
              f"{gw.p50_ms / base.p50_ms:8.2f}x | {gw.events_per_s:8.1f} / {base.events_per_s:8.1f} | "
              f"{gw.events_per_s / base.events_per_s:6.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
