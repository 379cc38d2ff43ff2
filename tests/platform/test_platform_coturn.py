"""The coturn configuration the stack deploys, run in a real coturn (Debian's) on loopback.

The exact container start command (decode the config, append the secret, exec turnserver) runs in a
private mount namespace so its fixed /tmp path never touches the shared machine. A TURN client (aioice)
then checks what matters in production: REST credentials from the shared secret work and forged or
expired ones do not, and the relay only reaches the application subnets - never private ranges such as
instance metadata, never the Internet.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol
from concierge_platform.coturn import CONTAINER_COMMAND, conf_b64, render_turnserver_conf

SECRET = "turn-secret-under-test"
APP_SUBNET = "198.51.100.0/24"  # stands in for the application subnets (TEST-NET-2: unused by this machine)

pytestmark = pytest.mark.skipif(
    shutil.which("turnserver") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs Debian's coturn, util-linux unshare and root for a private /tmp",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def turn_port() -> Iterator[int]:
    port = _free_port()
    relay_lo = 40000 + port % 10000
    conf = render_turnserver_conf("turn.test", [APP_SUBNET], listening_port=port, listening_ip="127.0.0.1",
                                  min_port=relay_lo, max_port=relay_lo + 20)
    env = {"PATH": os.environ["PATH"], "TURNSERVER_CONF_B64": conf_b64(conf), "TURN_SECRET": SECRET}
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs tmpfs /tmp && {CONTAINER_COMMAND}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # TCP listener up == config parsed and server running
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "coturn exited"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("coturn did not start listening")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def credentials(secret: str, ttl: int = 600) -> tuple[str, str]:
    """What the runtime hands browsers in /api/config (runtime.media.turn), so this also checks that the
    runtime's credentials and the deployed coturn configuration agree."""
    from runtime.media.turn import turn_credentials

    return turn_credentials(secret, "guest", ttl)


@pytest.fixture
async def client_factory(turn_port: int) -> AsyncIterator:
    transports: list[asyncio.DatagramTransport] = []

    async def make(username: str, password: str) -> TurnClientUdpProtocol:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(("127.0.0.1", turn_port), username=username, password=password,
                                          lifetime=600, channel_refresh_time=300),
            remote_addr=("127.0.0.1", turn_port))
        transports.append(transport)
        return protocol

    yield make
    for t in transports:
        t.close()


async def _permission(client: TurnClientUdpProtocol, peer: str) -> int:
    request = stun.Message(message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST)
    request.attributes["XOR-PEER-ADDRESS"] = (peer, 9)
    try:
        await client.request_with_retry(request)
    except stun.TransactionFailed as exc:
        return exc.response.error_code
    return 200


async def test_valid_rest_credentials_allocate_a_relay(client_factory) -> None:  # type: ignore[no-untyped-def]
    client = await client_factory(*credentials(SECRET))
    relay_ip, relay_port = await client.connect()
    assert relay_ip == "127.0.0.1"  # the address the packet arrived on, no external-ip
    assert relay_port > 1024
    if client.refresh_task:
        client.refresh_task.cancel()


@pytest.mark.parametrize("creds", ["forged", "expired"])
async def test_forged_or_expired_credentials_are_refused(client_factory, creds: str) -> None:  # type: ignore[no-untyped-def]
    username, password = credentials("not-the-secret") if creds == "forged" else credentials(SECRET, ttl=-60)
    client = await client_factory(username, password)
    with pytest.raises(stun.TransactionFailed) as info:
        await client.connect()
    assert info.value.response.error_code == 401


@pytest.mark.parametrize(("peer", "status"), [
    ("198.51.100.10", 200),     # application subnet
    ("169.254.169.254", 403),   # instance metadata
    ("10.1.2.3", 403),          # other private ranges in the VPC
    ("127.0.0.1", 403),         # the relay host itself
    ("8.8.8.8", 403),           # the Internet: the relay is not an open proxy
])
async def test_relay_reaches_only_the_application_subnets(client_factory, peer: str, status: int) -> None:  # type: ignore[no-untyped-def]
    client = await client_factory(*credentials(SECRET))
    await client.connect()
    try:
        assert await _permission(client, peer) == status
    finally:
        if client.refresh_task:
            client.refresh_task.cancel()
