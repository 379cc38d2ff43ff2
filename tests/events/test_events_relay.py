"""Several worker processes: an event published in one worker reaches subscribers of every worker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from runtime.events.gateway import EventsGateway, standalone_app
from runtime.events.relay import WorkerRelay
from tests.events.helpers import SECRET, SESSION_A, STAFF, Client, make_gateway, open_client, serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def relay_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ev-relay-"))  # short: AF_UNIX paths are limited to 108 bytes
    yield directory / "bus"
    shutil.rmtree(directory, ignore_errors=True)


async def test_publish_in_one_worker_reaches_subscribers_of_all_workers(relay_dir: Path) -> None:
    gateways: list[EventsGateway] = []
    async with AsyncExitStack() as stack:
        clients: list[Client] = []
        for name in ("w1", "w2", "w3"):
            gateway = make_gateway()
            gateway.relay = WorkerRelay(relay_dir, gateway.deliver_from_sibling, name=name)
            await gateway.relay.start()
            stack.push_async_callback(gateway.relay.close)
            gateways.append(gateway)
            address = await stack.enter_async_context(serve(standalone_app(gateway)))
            client = await stack.enter_async_context(
                open_client(f"ws://{address}/event/realtime", {"Authorization": STAFF}))
            assert (await client.subscribe("all", "/conversations/*"))["type"] == "subscribe_success"
            clients.append(client)
        for _ in range(200):  # siblings find each other through the directory and first connections
            if all(g.relay is not None and g.relay.peer_count == 2 for g in gateways):
                break
            await asyncio.sleep(0.01)
        for n in range(30):  # in order, from two different workers
            await gateways[n % 2].publish(f"/conversations/{SESSION_A}", {"n": n})
        for client in clients:
            got = [json.loads((await client.recv())["event"])["n"] for _ in range(30)]
            assert sorted(got) == list(range(30))  # each event exactly once, relayed ones not echoed back
            assert [n for n in got if n % 2 == 0] == list(range(0, 30, 2))  # per-worker order kept
            await client.nothing()


async def test_socket_of_a_dead_sibling_is_cleaned_up(relay_dir: Path) -> None:
    os.makedirs(relay_dir)
    stale = relay_dir / "999999999.sock"  # a pid that cannot exist
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound but never listening: connecting is refused, as after a crash
    delivered: list[str] = []
    relay = WorkerRelay(relay_dir, lambda channel, events: delivered.append(channel), name="live")
    await relay.start()
    try:
        relay.send("/conversations/x", ["1"])
        for _ in range(100):
            if not stale.exists():
                break
            await asyncio.sleep(0.02)
        assert not stale.exists()
    finally:
        await relay.close()
    assert relay_dir.name not in os.listdir(relay_dir.parent)  # the last worker out removes the rendezvous directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[str]:
    """``python -m runtime serve --workers 2`` on a free loopback port (the standalone default shape)."""
    port = _free_port()
    env = {**os.environ, "STAFF_TOKEN": STAFF, "SESSION_SECRET": SECRET, "DATA_DIR": str(tmp_path),
           "LOG_LEVEL": "warning", "WEBAPP_DIR": str(tmp_path / "no-webapp"),
           # One test client books eight times: the booking abuse limits (tested in tests/abuse) are off here.
           "BOOKING_LIMIT_PER_SLOT": "0", "BOOKING_LIMIT_PER_DAY": "0", "BOOKING_LIMIT_SEATS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            for _ in range(300):
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:] if proc.stderr else "serve exited")
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        time.sleep(1.5)  # both workers up (readyz answers as soon as the first one is)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.slow
async def test_bookings_reach_a_staff_subscriber_whichever_worker_took_them(two_workers: str) -> None:
    future = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    async with AsyncExitStack() as stack:
        # Several subscribers, so with two workers some are almost surely on each.
        clients = [await stack.enter_async_context(open_client(f"ws://{two_workers}/event/realtime",
                                                               {"Authorization": STAFF})) for _ in range(4)]
        for client in clients:
            assert (await client.subscribe("all", "/restaurant-booking/*"))["type"] == "subscribe_success"
        ids = []
        for n in range(8):  # a fresh connection each time, so requests spread over the workers
            async with httpx.AsyncClient(base_url=f"http://{two_workers}", timeout=5) as http:
                response = await http.post("/api/bookings", json={"name": "Guest " + "ABCDEFGH"[n], "date": future,
                                                                  "hour": "19:00", "num_guests": 2})
            assert response.status_code == 201, response.text
            ids.append(response.json()["booking_id"])
        for client in clients:
            got = {json.loads((await client.recv(wait=3))["event"])["booking"]["booking_id"] for _ in ids}
            assert got == set(ids)
