"""Media fixtures: the real runtime app under uvicorn on a real port, with a session factory of choice.

WebRTC needs a non-loopback address (aiortc never gathers 127.0.0.1 candidates, reference/webrtc-
aiortc.md §1.1), and tests may not send traffic to this machine's own interfaces. So every test that
creates a peer connection runs inside a private network namespace it creates (tests/netns.py): the
runtime, the aiortc callers and any subprocess are started after entering it and can only gather the
namespace's one address. HTTP signaling stays on the namespace's 127.0.0.1. Where no namespace can be
created (not root, no iproute2) those tests skip and say why; they never fall back to a host address.
WebSocket and plain HTTP tests stay on the host's loopback.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import ifaddr
import pytest
from media_support import RunningServer, start_server, stop_server

from tests import netns
from tools.echo import EchoSessionFactory

TEST_CIDR = "10.252.0.1/24"  # namespace ncmedia<pid>, one per test
MODULE_CIDR = "10.252.1.1/24"  # namespace ncmedmod<pid>, one per module that shares a slow server


def _non_loopback_ipv4() -> set[str]:
    """The addresses aioice would gather here (it enumerates interfaces with ifaddr)."""
    return {str(ip.ip) for adapter in ifaddr.get_adapters() for ip in adapter.ips
            if ip.is_IPv4 and not str(ip.ip).startswith("127.")}


def _inside_namespace(prefix: str, cidr: str) -> Iterator[str]:
    """Enter a fresh namespace for the fixture's lifetime and yield its address; skip if impossible."""
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{reason}; WebRTC tests run only inside a namespace they create "
                    "(aiortc gathers no 127.0.0.1 candidates and no host address may be used)")
    namespace = netns.network_namespace(prefix, cidr, default_route=False)
    try:
        namespace.__enter__()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create a private network namespace here ({netns.failure_detail(exc)}); "
                    "WebRTC tests need one")
    try:
        address = netns.address_of(cidr)
        gathered = _non_loopback_ipv4()
        assert gathered == {address}, f"the namespace must offer aiortc only {address}, it has {gathered}"
        yield address
    finally:
        namespace.__exit__(None, None, None)


@pytest.fixture
def netns_address() -> Iterator[str]:
    """This test runs inside its own namespace; the value is the only address aiortc can gather."""
    yield from _inside_namespace("ncmedia", TEST_CIDR)


@pytest.fixture(scope="module")
def module_netns_address() -> Iterator[str]:
    """Like ``netns_address`` for a whole module (for a module-scoped server started inside it)."""
    yield from _inside_namespace("ncmedmod", MODULE_CIDR)


@pytest.fixture
def echo_factory() -> EchoSessionFactory:
    return EchoSessionFactory(max_sessions=3)


@pytest.fixture
def echo_server(tmp_path: Path, echo_factory: EchoSessionFactory) -> Iterator[RunningServer]:
    """Echo runtime on the host's loopback: for WebSocket and HTTP-only tests."""
    running = start_server(tmp_path, factory=echo_factory)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def rtc_server(netns_address: str, tmp_path: Path, echo_factory: EchoSessionFactory) -> Iterator[RunningServer]:
    """Echo runtime started inside this test's namespace: for WebRTC calls."""
    running = start_server(tmp_path, factory=echo_factory)
    try:
        yield running
    finally:
        stop_server(running)
