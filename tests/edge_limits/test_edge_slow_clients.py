"""Slow clients are cut: a request head or body that does not arrive in time gets 408 and the socket closes.

Raw sockets on loopback against uvicorn running the protocol ``serve`` uses, with read timeouts of a
fraction of a second (set through settings). The keep-alive between requests is a different, long timer
(KEEP_ALIVE_SECONDS, above the ALB's idle timeout) and must not be cut by the read timeouts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import pytest
from edge_server import Served, serve, stop
from websockets.asyncio.client import connect

from runtime.http_timeouts import BODY_BACKSTOP_GRACE_SECONDS
from runtime.media.routes import MediaHub
from runtime.services import Overrides
from tools.echo import EchoSessionFactory

pytestmark = pytest.mark.timeout(60)

HEADER_TIMEOUT = 0.6
BODY_TIMEOUT = 0.8


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the socket open for `limit` s."""
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _read_response(sock: socket.socket) -> bytes:
    """One whole response on a kept-alive connection: its head, then Content-Length bytes of body."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve(tmp_path_factory.mktemp("slow-clients"), header_read_timeout_seconds=HEADER_TIMEOUT,
                    body_read_timeout_seconds=BODY_TIMEOUT,
                    services=Overrides(media=MediaHub(session_factory=EchoSessionFactory())))
    yield running
    stop(running)


def test_a_request_head_sent_byte_by_byte_is_cut_with_408(served) -> None:
    sock = _connect(served.port)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    sent = 0
    closed = False
    try:
        for byte in head:  # one byte every 0.1 s: the head would take 13 s
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    response = b"" if closed else _read_until_closed(sock)
    sock.close()
    assert sent < len(head), "the server kept reading a head that never ended"
    if response:
        status, body = _status_and_json(response)
        assert status == 408
        assert body["error"]["code"] == "request_timeout"


def test_a_silent_connection_is_answered_408_and_closed(served) -> None:
    sock = _connect(served.port)
    response = _read_until_closed(sock)
    sock.close()
    status, body = _status_and_json(response)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"


def test_a_body_that_never_finishes_gets_408_json_and_the_connection_closes(served) -> None:
    sock = _connect(served.port)
    sock.sendall(b"POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"name\": \"")
    response = _read_until_closed(sock)
    sock.close()
    status, body = _status_and_json(response)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert b"connection: close" in response.lower()


def test_a_body_no_handler_reads_is_still_cut(served) -> None:
    # GET /healthz never reads its body; the protocol's backstop closes the connection all the same.
    sock = _connect(served.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    started = time.monotonic()
    response = _read_until_closed(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started >= BODY_TIMEOUT  # closed by the backstop, not at once


def test_timely_requests_and_idle_keep_alive_are_not_cut(served) -> None:
    sock = _connect(served.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 200"), response
    # Idle between requests for longer than both read timeouts: the keep-alive governs, not them.
    time.sleep(max(HEADER_TIMEOUT, BODY_TIMEOUT) + 0.3)
    sock.sendall(b"POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2\r\n\r\n")
    time.sleep(HEADER_TIMEOUT / 2)  # a body that arrives within the body timeout is read normally
    sock.sendall(b"{}")
    response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 422"), response
    sock.close()


async def test_a_websocket_call_outlives_the_read_timeouts(served) -> None:
    # The upgrade hands the socket to the WebSocket protocol: neither read timer may fire on it later.
    async with connect(f"{served.ws_url}/ws/audio") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        await asyncio.sleep(max(HEADER_TIMEOUT, BODY_TIMEOUT) + BODY_BACKSTOP_GRACE_SECONDS + 0.4)
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "pong":
            pass
        assert message["id"] == 7
        await ws.send(json.dumps({"type": "hangup"}))
