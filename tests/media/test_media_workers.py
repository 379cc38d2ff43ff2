"""``python -m runtime serve --workers 2``: each worker process carries whole calls on its own.

Signaling is one non-trickle POST, so whichever worker answers owns the call's sockets; the test keeps
placing calls until two of them landed in different worker processes (told apart by which process owns
the UDP port in each answer's candidates), and both must play the assistant to their caller. The
runtime process is started inside the test's network namespace (conftest ``netns_address``), so its
workers and the callers have only that namespace's address.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from media_support import candidate_addresses, tone

from tools.probe import CallProbe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_workers(netns_address: str, tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATA_DIR": str(tmp_path), "STAFF_TOKEN": "workers-staff-token",
           "PYTHONPATH": str(ROOT)}
    env.pop("SESSION_SECRET", None)  # serve must generate one secret shared by both workers
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "serve", "--port", str(port), "--workers", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"runtime did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def owner_pid(answer_sdp: str) -> int | None:
    """PID of the process holding the UDP port of the answer's first host candidate."""
    match = re.search(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", answer_sdp)
    assert match, answer_sdp
    listing = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        if f"{match.group(1)}:{match.group(2)} " in line:
            pid = re.search(r"pid=(\d+)", line)
            return int(pid.group(1)) if pid else None
    return None


async def test_each_worker_carries_its_own_calls(two_workers: str, netns_address: str) -> None:
    calls: dict[int, tuple[CallProbe, dict]] = {}
    spare: list[CallProbe] = []
    try:
        async with httpx.AsyncClient(base_url=two_workers, timeout=30) as http:
            for _ in range(12):
                probe = CallProbe()
                offer = await probe.offer()
                # a new connection each time: a kept-alive one would always reach the same worker
                response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"},
                                           headers={"Connection": "close"})
                assert response.status_code == 200, response.text
                body = response.json()
                assert candidate_addresses(body["sdp"]) == {netns_address}
                pid = owner_pid(body["sdp"])
                assert pid is not None
                if pid in calls:
                    spare.append(probe)
                    continue
                await probe.accept(body["sdp"])
                calls[pid] = (probe, body)
                if len(calls) == 2:
                    break
            assert len(calls) == 2, "all offers landed in one worker"
            for probe, _ in calls.values():
                await probe.wait_connected()
                await probe.speak(tone(300, 1.0, 24_000).tobytes())
            for pid, (probe, body) in calls.items():
                assert await probe.wait_for_sound(10, within=30), f"worker {pid}: caller heard nothing"
                # the guest token minted in one worker opens the conversation through any worker
                for _ in range(4):
                    turns = await http.get(f"/api/conversations/{body['sessionId']}",
                                           headers={"Authorization": f"Bearer {body['sessionToken']}"})
                    assert turns.status_code == 200, turns.text
    finally:
        for probe in [*spare, *(p for p, _ in calls.values())]:
            await probe.close()
