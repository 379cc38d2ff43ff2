"""A caller that can reach nothing but a TURN server still completes a call with iceTransportPolicy relay.

Topology (network namespaces and veth pairs this test creates, removed again even on failure):

    [ns client] 10.A.1.2 --veth-- 10.A.1.1 [ns turn: coturn] 10.A.2.1 --veth-- 10.A.2.2 [ns runtime]

The client namespace has no route beyond 10.A.1.0/24, so the runtime's host candidates are reachable
only through coturn's relay address (the deployed "asymmetric ICE" pattern, reference §1.3 C). The TURN
credentials come from the runtime's own ``GET /api/config`` (coturn REST secret shared with the runtime).
The test itself (and so the runtime's uvicorn thread) runs inside the runtime namespace, whose only
address is 10.A.2.2: no candidate and no packet of the call involves an interface of this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from media_support import candidate_addresses, start_server, stop_server

from tests import netns
from tools.echo import EchoSessionFactory

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
TURN_SECRET = "turn-secret-for-the-relay-test"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=20)


class Topology:
    def __init__(self) -> None:
        tag = os.getpid() % 10_000
        octet = 100 + os.getpid() % 100
        self.client_ns, self.turn_ns, self.runtime_ns = f"emc{tag}", f"emt{tag}", f"emr{tag}"
        self.veth_client, self.veth_turn_a = f"emc{tag}a", f"emt{tag}a"
        self.veth_turn_b, self.veth_host = f"emt{tag}b", f"emh{tag}b"
        self.client_ip, self.turn_ip = f"10.{octet}.1.2", f"10.{octet}.1.1"
        self.relay_ip, self.host_ip = f"10.{octet}.2.1", f"10.{octet}.2.2"

    def create(self) -> None:
        c, t, r = self.client_ns, self.turn_ns, self.runtime_ns
        for ns in (c, t, r):
            netns.delete(ns)  # stale, from a run that was killed
            run("ip", "netns", "add", ns)
        run("ip", "link", "add", self.veth_client, "type", "veth", "peer", "name", self.veth_turn_a)
        run("ip", "link", "set", self.veth_client, "netns", c)
        run("ip", "link", "set", self.veth_turn_a, "netns", t)
        run("ip", "link", "add", self.veth_turn_b, "type", "veth", "peer", "name", self.veth_host)
        run("ip", "link", "set", self.veth_turn_b, "netns", t)
        run("ip", "link", "set", self.veth_host, "netns", r)
        for ns, dev, ip in ((c, self.veth_client, self.client_ip), (t, self.veth_turn_a, self.turn_ip),
                            (t, self.veth_turn_b, self.relay_ip), (r, self.veth_host, self.host_ip)):
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        for dev in (self.veth_client, self.veth_host):  # left on the host if create() failed early
            run("ip", "link", "del", dev, check=False)
        for ns in (self.client_ns, self.turn_ns, self.runtime_ns):
            netns.delete(ns)


@pytest.fixture
def topology() -> Iterator[Topology]:
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{reason} (this test builds client, TURN and runtime namespaces)")
    if shutil.which("turnserver") is None:
        pytest.skip("coturn (turnserver) is not installed")
    topo = Topology()
    try:
        topo.create()
    except subprocess.CalledProcessError as exc:
        topo.destroy()
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        with netns.entered(topo.runtime_ns):  # the runtime (started by the test) lives here
            yield topo
    finally:
        topo.destroy()


@pytest.fixture
def coturn(topology: Topology, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = tmp_path / "coturn.log"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topology.turn_ns, "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
         f"--listening-ip={topology.turn_ip}", "--listening-port=3478", f"--relay-ip={topology.relay_ip}",
         "--min-port=49152", "--max-port=49252", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
         "--realm=concierge.test", "--fingerprint", "--no-multicast-peers",
         "--denied-peer-ip=0.0.0.0-255.255.255.255", f"--allowed-peer-ip={topology.host_ip}",
         f"--log-file={log}", "--simple-log", f"--pidfile={tmp_path / 'coturn.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 10
        while f"{topology.turn_ip}:3478" not in run("ip", "netns", "exec", topology.turn_ns, "ss", "-uln").stdout:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"coturn did not start: {log.read_text() if log.exists() else 'no log'}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn_client(topology: Topology, config: dict) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        ["ip", "netns", "exec", topology.client_ns, sys.executable, str(Path(__file__).with_name("relay_client.py")),
         json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


async def test_call_through_turn_relay_only(topology: Topology, coturn: subprocess.Popen[str],
                                            tmp_path: Path) -> None:
    # the client namespace really cannot reach the runtime directly
    assert run("ip", "netns", "exec", topology.client_ns, "ping", "-c1", "-W1", topology.host_ip,
               check=False).returncode != 0
    factory = EchoSessionFactory(max_sessions=2)
    server = start_server(tmp_path, factory=factory, turn_secret=TURN_SECRET,
                          turn_urls=[f"turn:{topology.turn_ip}:3478?transport=udp"])
    client = None
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            config = (await http.get("/api/config")).json()
            assert config["iceTransportPolicy"] == "relay"
            client = spawn_client(topology, config)
            assert client.stdin
            assert client.stdout
            offer = json.loads(client.stdout.readline())["offer"]
            assert "typ relay" in offer, "relay policy: only relayed candidates"
            assert "typ host" not in offer
            answer = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            assert answer.status_code == 200, answer.text
            assert candidate_addresses(answer.json()["sdp"]) == {topology.host_ip}, "runtime namespace only"
            client.stdin.write(json.dumps(answer.json()) + "\n")
            client.stdin.flush()
            line = client.stdout.readline()
            assert line, f"relay client died: {client.stderr.read() if client.stderr else ''}"
            result = json.loads(line)["result"]
        assert result["connected"], result
        assert result["local_candidate"] == "relay"
        assert result["remote_address"] == topology.host_ip
        assert result["loud_frames"] > 25, "the caller hears the assistant through the relay"
        assert abs(result["dominant"] - 523.25) < 6
        assert "transcript" in result["messages"]
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        if client is not None:
            client.wait()
        stop_server(server)
