"""``bin/smoke``'s checks pass against a healthy local runtime and fail loudly against a broken one.

The passing run places a real WebRTC call, so runtime and smoke process both start inside the test's
network namespace (conftest ``netns_address``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from media_support import STAFF_TOKEN, RunningServer, start_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime_server(netns_address: str, tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path)
    try:
        yield running
    finally:
        stop_server(running)


async def smoke(base_url: str, *, staff_token: str | None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("STAFF_TOKEN", None)
    if staff_token:
        env["STAFF_TOKEN"] = staff_token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.smoke", base_url, "--listen", "30", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), 100)
    return proc.returncode or 0, output.decode()


async def test_smoke_passes_against_a_working_runtime(runtime_server: RunningServer) -> None:
    code, output = await smoke(runtime_server.base_url, staff_token=STAFF_TOKEN)
    assert code == 0, output
    assert "received booking.created" in output
    assert "smoke OK" in output


async def test_smoke_fails_when_nothing_answers() -> None:
    code, output = await smoke("http://127.0.0.1:9", staff_token=None)
    assert code == 1
    assert "SMOKE FAILED" in output
