"""The guest page's connectivity check in Chromium, on three networks: open, UDP blocked, everything
but the web port blocked.

Topology (namespaces this module creates and removes again, even on failure):

    [ns client: Chromium, iptables] 10.N.0.2 --veth-- 10.N.0.1 [ns server: runtime + coturn]

The firewall rules sit in the client namespace only, like a corporate network between the guest and
the internet: coturn still relays to the runtime over UDP on the server side. Each case asserts what
the page says (verdict, UDP, TURN/TLS, WebSocket) and which transport the call then picks, and for
WebRTC which path the call in progress uses (the selected candidate pair).

Prerequisites (root, iproute2, iptables, coturn, Chromium, Playwright, the built web app) are not
optional here: a missing one fails the test with the reason instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import netns
from tests.browser.support import (
    CHROMIUM,
    STAFF_TOKEN,
    BrowserSession,
    Runtime,
    chromium_args,
    require_browser_stack,
    start_runtime,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
TURN_SECRET = "turn-secret-for-the-connectivity-test"
CHECK_WAIT_MS = 15_000  # the check is bounded at ~4 s; margin for a loaded machine
CONNECT_WAIT_MS = 25_000


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=20)


def _require() -> None:
    """Fail (never skip) with the reason when something this test needs is missing."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.fail(f"{reason}: the connectivity check is tested with a firewall in a network namespace")
    for tool, package in (("iptables", "iptables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not installed: `apt-get install {package}` (bin/_setup.sh lists it)")
    require_browser_stack()


class Topology:
    def __init__(self) -> None:
        tag = os.getpid() % 10_000
        octet = 150 + os.getpid() % 100
        self.client_ns, self.server_ns = f"e3c{tag}", f"e3s{tag}"
        self.veth_client, self.veth_server = f"e3c{tag}v", f"e3s{tag}v"
        self.client_ip, self.server_ip = f"10.{octet}.0.2", f"10.{octet}.0.1"

    def create(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            netns.delete(ns)  # stale, from a run that was killed
            run("ip", "netns", "add", ns)
        run("ip", "link", "add", self.veth_client, "type", "veth", "peer", "name", self.veth_server)
        run("ip", "link", "set", self.veth_client, "netns", self.client_ns)
        run("ip", "link", "set", self.veth_server, "netns", self.server_ns)
        for ns, dev, ip in ((self.client_ns, self.veth_client, self.client_ip),
                            (self.server_ns, self.veth_server, self.server_ip)):
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            # Chromium picks its local address by routing towards a public IP: give it a default route.
            run("ip", "-n", ns, "route", "add", "default", "dev", dev)

    def destroy(self) -> None:
        run("ip", "link", "del", self.veth_client, check=False)  # left on the host if create() failed early
        for ns in (self.client_ns, self.server_ns):
            netns.delete(ns)

    def firewall(self, *rules: list[str]) -> None:
        """Replace the client namespace's filter rules (both directions, like a stateless corporate firewall)."""
        for chain in ("INPUT", "OUTPUT"):
            run("ip", "netns", "exec", self.client_ns, "iptables", "-F", chain)
        for rule in rules:
            run("ip", "netns", "exec", self.client_ns, "iptables", *rule)


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    _require()
    topo = Topology()
    try:
        topo.create()
    except subprocess.CalledProcessError as exc:
        topo.destroy()
        pytest.fail(f"cannot create the network namespaces: {netns.failure_detail(exc)}")
    try:
        with netns.entered(topo.server_ns):  # runtimes started by the fixtures live here
            yield topo
    finally:
        topo.destroy()


@pytest.fixture(scope="module")
def coturn(topology: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """coturn with TURN over UDP/TCP on 3478 and TURN over TLS on 443, the certificate made now."""
    from emulators.nova_sonic import make_test_certificates

    folder = tmp_path_factory.mktemp("coturn")
    certs = make_test_certificates(str(folder), host=topology.server_ip)
    log = folder / "coturn.log"
    ip = topology.server_ip
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topology.server_ns, "turnserver", "-n", "--no-cli", "--no-dtls",
         f"--listening-ip={ip}", "--listening-port=3478", "--tls-listening-port=443", f"--relay-ip={ip}",
         f"--cert={certs.cert_file}", f"--pkey={certs.key_file}",
         "--min-port=49152", "--max-port=49252", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
         "--realm=concierge.test", "--fingerprint", "--no-multicast-peers",
         "--denied-peer-ip=0.0.0.0-255.255.255.255", f"--allowed-peer-ip={ip}",
         f"--log-file={log}", "--simple-log", f"--pidfile={folder / 'coturn.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 10
        while f"{ip}:443" not in run("ip", "netns", "exec", topology.server_ns, "ss", "-tln").stdout:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"coturn did not start: {log.read_text() if log.exists() else 'no log'}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _runtime(topology: Topology, data_dir: Path, **turn: Any) -> Runtime:
    from runtime.settings import load_settings

    settings = load_settings(data_dir=data_dir, staff_token=STAFF_TOKEN,
                             session_secret="connectivity-tests-session-secret-0123456789",
                             speech_engine="local", store="sqlite", webapp_dir=ROOT / "webapp" / "dist", **turn)
    return start_runtime(settings, host=topology.server_ip)


@pytest.fixture(scope="module")
def plain_runtime(topology: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The standalone setup: no STUN/TURN configured, ICE policy "all"."""
    runtime = _runtime(topology, tmp_path_factory.mktemp("plain"))
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def turn_runtime(topology: Topology, coturn: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The deployed shape: TURN over UDP and over TLS on 443, short-lived credentials, ICE policy "relay"."""
    ip = topology.server_ip
    runtime = _runtime(topology, tmp_path_factory.mktemp("turn"), turn_secret=TURN_SECRET,
                       turn_urls=[f"turn:{ip}:3478?transport=udp", f"turns:{ip}:443?transport=tcp"])
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def chromium(topology: Topology) -> Iterator[Any]:
    """Launch Chromium inside the client namespace (the Playwright driver is started there)."""
    from playwright.sync_api import sync_playwright

    with netns.entered(topology.client_ns):
        manager = sync_playwright()
        playwright = manager.start()
    browsers: list[Any] = []

    def launch(origin: str) -> BrowserSession:
        args = [*chromium_args(None), "--use-fake-device-for-media-stream",
                # the page is served from a private address over plain HTTP; the microphone needs a
                # secure context, and coturn's certificate comes from a CA made by this test
                f"--unsafely-treat-insecure-origin-as-secure={origin}", "--ignore-certificate-errors"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        browsers.append(browser)
        return BrowserSession(browser, [])

    try:
        yield launch
    finally:
        for browser in browsers:
            browser.close()
        playwright.stop()


def _checked(page: Any) -> dict[str, str]:
    panel = page.locator('[data-testid="connectivity"][data-state="done"]')
    panel.wait_for(timeout=CHECK_WAIT_MS)
    return {
        "verdict": panel.get_attribute("data-verdict") or "",
        "transport": panel.get_attribute("data-transport") or "",
        "headline": page.get_by_test_id("connectivity-headline").inner_text(),
        "udp": page.get_by_test_id("connectivity-udp").inner_text(),
        "tls": page.get_by_test_id("connectivity-tls").inner_text(),
        "websocket": page.get_by_test_id("connectivity-websocket").inner_text(),
        "details": page.get_by_test_id("connectivity-details").text_content() or "",
    }


def _call(page: Any) -> tuple[str, float]:
    """Press Talk; return the transport the call connected with and how long it took (s)."""
    started = time.monotonic()
    page.get_by_role("button", name="Talk").click()
    page.locator('[data-testid="connection"][data-phase="connected"]').wait_for(timeout=CONNECT_WAIT_MS)
    took = time.monotonic() - started
    return page.get_by_test_id("connection").get_attribute("data-transport") or "", took


def _route(page: Any, expected: str) -> str:
    route = page.get_by_test_id("call-route")
    page.wait_for_function(
        "(want) => (document.querySelector('[data-testid=call-route]')?.textContent || '').includes(want)",
        arg=expected, timeout=10_000)
    return route.inner_text()


def _keep(page: Any, artifacts_dir: Path, name: str) -> str:
    """Screenshot and the copyable details text (taken during the call, so with its path) as artifacts."""
    page.screenshot(path=str(artifacts_dir / f"connectivity-{name}.png"), full_page=True)
    details = page.get_by_test_id("connectivity-details").text_content() or ""
    (artifacts_dir / f"connectivity-{name}.txt").write_text(details)
    return details


def _hang_up(page: Any) -> None:
    page.get_by_role("button", name="Hang up").click()
    page.locator('[data-testid="connection"][data-phase="ended"]').wait_for(timeout=10_000)


def _no_secrets(details: str) -> None:
    assert TURN_SECRET not in details
    assert "credential" not in details.lower()
    assert "username" not in details.lower()


def test_direct_connection_works(topology: Topology, plain_runtime: Runtime, chromium: Any,
                                 artifacts_dir: Path) -> None:
    topology.firewall()
    session: BrowserSession = chromium(plain_runtime.base_url)
    page = session.new_page()
    page.goto(plain_runtime.base_url)
    result = _checked(page)
    assert result["verdict"] == "direct", result
    assert result["transport"] == "webrtc", result
    assert "Direct connection" in result["headline"], result
    assert "not tested" in result["udp"], result  # the standalone runtime configures no STUN/TURN server
    assert result["websocket"].endswith(": reachable"), result
    assert "Result: Direct connection works" in result["details"]
    assert "host 0" not in result["details"], result["details"]

    transport, _ = _call(page)
    assert transport == "webrtc"
    assert "WebRTC direct (host candidate" in _route(page, "WebRTC direct")
    details = _keep(page, artifacts_dir, "direct")
    assert "In this call: WebRTC direct (host candidate over UDP)" in details, details
    _hang_up(page)
    assert session.console_errors == []


def test_udp_blocked_turn_over_tls_works(topology: Topology, turn_runtime: Runtime, chromium: Any,
                                         artifacts_dir: Path) -> None:
    topology.firewall(["-A", "OUTPUT", "-p", "udp", "-j", "DROP"], ["-A", "INPUT", "-p", "udp", "-j", "DROP"])
    # the firewall really stops UDP from the client namespace
    assert run("ip", "netns", "exec", topology.client_ns, "iptables", "-S", "OUTPUT").stdout.count("DROP") == 1
    session: BrowserSession = chromium(turn_runtime.base_url)
    page = session.new_page()
    page.goto(turn_runtime.base_url)
    result = _checked(page)
    assert result["verdict"] == "relay-tls", result
    assert result["transport"] == "webrtc", result
    assert "UDP is blocked" in result["headline"], result
    assert "TLS on port 443" in result["headline"], result
    assert result["udp"].endswith("blocked"), result
    assert result["tls"].endswith("works"), result
    details = result["details"]
    assert "relay/tls 1" in details or "relay/tls 2" in details, details
    assert "relay/udp 0" in details, details
    assert "UDP gets out: no" in details, details
    assert f"turns:{topology.server_ip}:443?transport=tcp" in details, details
    _no_secrets(details)

    transport, _ = _call(page)
    assert transport == "webrtc"
    assert _route(page, "relayed over TLS") == "This call uses: WebRTC relayed over TLS"
    details = _keep(page, artifacts_dir, "turn-tls")
    assert "In this call: WebRTC relayed over TLS" in details, details
    _no_secrets(details)
    _hang_up(page)
    assert session.console_errors == []


def test_only_the_websocket_works(topology: Topology, turn_runtime: Runtime, chromium: Any,
                                  artifacts_dir: Path) -> None:
    topology.firewall(["-A", "OUTPUT", "-p", "udp", "-j", "DROP"], ["-A", "INPUT", "-p", "udp", "-j", "DROP"],
                      ["-A", "OUTPUT", "-p", "tcp", "--dport", "443", "-j", "DROP"],
                      ["-A", "OUTPUT", "-p", "tcp", "--dport", "3478", "-j", "DROP"])
    session: BrowserSession = chromium(turn_runtime.base_url)
    page = session.new_page()
    page.goto(turn_runtime.base_url)
    result = _checked(page)
    assert result["verdict"] == "websocket", result
    assert result["transport"] == "websocket", result
    assert "WebSocket only" in result["headline"], result
    assert result["udp"].endswith("blocked"), result
    assert result["tls"].endswith("does not work"), result
    assert "relay/tls 0" in result["details"], result["details"]
    assert "relay/udp 0" in result["details"], result["details"]
    _no_secrets(result["details"])

    # Straight to the WebSocket: no WebRTC attempt, which would first wait up to 3 s for gathering and
    # then 6 s (the default ICE timeout) for a connection that cannot come up.
    transport, took = _call(page)
    assert transport == "websocket"
    assert "connection check" in page.get_by_test_id("notice").inner_text()
    assert took < 8.0, f"the call took {took:.1f} s to connect: it waited for ICE instead of using the check"
    assert _route(page, "WebSocket") == "This call uses: WebSocket audio"
    details = _keep(page, artifacts_dir, "websocket")
    assert "In this call: WebSocket audio" in details, details
    _hang_up(page)
    assert session.console_errors == []
