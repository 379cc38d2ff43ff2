"""The official AppSync Events client - aws-amplify 6 on Node 20 - against the embedded gateway.

``tests/events/amplify/check.mjs`` runs Amplify's ``events.connect`` / ``subscribe`` / ``publish`` /
``events.post`` against the gateway served here over TLS on 127.0.0.1 (Amplify always opens ``wss://``),
and reports each check: refusal at connect, subscribe, the expiry of a subscription's token surfacing as
an error, a refused subscribe, the keep-alive state of a late-connecting page, HTTP and socket publish with
the API key, publish refusals with the right error type, and reconnecting after the server drops the socket.
The packages come from ``tests/events/amplify/package-lock.json`` (``npm ci``, run by ``bin/_setup.sh``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from emulators.nova_sonic import make_test_certificates
from runtime.events.gateway import standalone_app
from tests.events.helpers import API_KEY, SESSION_A, SESSION_B, guest_token, make_gateway, serve

AMPLIFY_DIR = Path(__file__).parent / "amplify"
EXPECTED_CHECKS = [
    "connect_refused", "subscribe", "expiry_surfaces_error", "keepalive_connected", "subscribe_refused",
    "post_with_api_key", "delivery", "socket_publish_with_api_key", "socket_publish_refused",
    "post_refused_error_type", "reconnect",
]
DEADLINE_SECONDS = 45  # typically ~15 s (5 s keep-alive heartbeat + 5 s reconnect delay); headroom for a busy machine

pytestmark = pytest.mark.slow


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (AMPLIFY_DIR / "node_modules" / "aws-amplify" / "package.json").is_file():
        pytest.fail("Node 20 and tests/events/amplify/node_modules are needed: run bin/test (or "
                    "`cd tests/events/amplify && npm ci`)")
    return node


async def test_official_amplify_client_against_the_gateway(tmp_path: Path) -> None:
    node = _node()
    certs = make_test_certificates(str(tmp_path / "tls"), host="127.0.0.1")
    # The production keep-alive interval (60 s): the keep-alive check must be met by the first `ka` alone.
    gateway = make_gateway(keepalive_seconds=60)
    async with serve(standalone_app(gateway), ssl_certfile=certs.cert_file, ssl_keyfile=certs.key_file) as address:
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "NO_PROXY": "*",
            "NODE_EXTRA_CA_CERTS": certs.ca_file,
            "ENDPOINT": f"https://{address}/event", "API_KEY": API_KEY, "SESSION_A": SESSION_A,
            "GUEST_TOKEN": guest_token(SESSION_A), "OTHER_SESSION": SESSION_B, "BAD_TOKEN": "v1.forged.token",
        }
        process = await asyncio.create_subprocess_exec(
            node, "--experimental-websocket", "--no-warnings", "check.mjs", cwd=AMPLIFY_DIR, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            checks = await asyncio.wait_for(_converse(process, gateway), DEADLINE_SECONDS)
            stderr = (await asyncio.wait_for(process.communicate(), 5))[1].decode(errors="replace")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    failed = {name: detail for name, (ok, detail) in checks.items() if not ok}
    assert list(checks) == EXPECTED_CHECKS, f"checks run: {list(checks)}\nnode stderr:\n{stderr[-3000:]}"
    assert not failed, f"failed checks: {json.dumps(failed, indent=1)}"
    assert process.returncode == 0, stderr[-3000:]


async def _converse(process: asyncio.subprocess.Process, gateway: Any) -> dict[str, tuple[bool, Any]]:
    """Read the script's JSON lines, answer its requests, return {check: (ok, detail)} in order."""
    assert process.stdout is not None
    assert process.stdin is not None
    checks: dict[str, tuple[bool, Any]] = {}
    while line := await process.stdout.readline():
        try:
            message = json.loads(line)
        except ValueError:
            continue  # Amplify's own console output
        if "check" in message:
            checks[message["check"]] = (message["ok"], message["detail"])
        elif message.get("need") == "short_token":
            answer = guest_token(SESSION_A, ttl=2)
            process.stdin.write(answer.encode() + b"\n")
        elif message.get("need") == "disconnect":
            gateway.disconnect_all()  # what a worker restarting does: close 1001
            process.stdin.write(b"ok\n")
        elif message.get("done"):
            break
        await process.stdin.drain()
    return checks
