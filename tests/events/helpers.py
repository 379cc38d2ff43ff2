"""Helpers for the events tests: a real uvicorn server on 127.0.0.1 and a plain AppSync protocol client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from runtime.auth import mint_session_token
from runtime.events.gateway import EventsGateway
from runtime.events.protocol import SUBPROTOCOL, subprotocols_for

STAFF = "staff-token-for-tests-0123456789"
SECRET = "session-secret-for-tests-0123456789"
API_KEY = "da2-localtestkey0123456789"
SESSION_A = "sess-aaaa-1111"
SESSION_B = "sess-bbbb-2222"


def guest_token(session_id: str, ttl: int = 3600, now: float | None = None) -> str:
    return mint_session_token(SECRET, session_id, ttl, now=now)


@contextlib.asynccontextmanager
async def serve(app: Any, **config_options: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in this event loop; yield host:port.

    ``config_options`` go to ``uvicorn.Config`` (e.g. ``ssl_certfile``/``ssl_keyfile`` for TLS).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_max_size=4 * 1024 * 1024, **config_options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@dataclass
class Served:
    gateway: EventsGateway
    address: str

    @property
    def http(self) -> str:
        return f"http://{self.address}/event"

    @property
    def realtime(self) -> str:
        return f"ws://{self.address}/event/realtime"


class Client:
    """A plain ``websockets`` client speaking the AppSync Events protocol, as a browser would."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, wait: float = 2.0, *, keep_ka: bool = False) -> dict[str, Any]:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), wait))
            if keep_ka or frame.get("type") != "ka":
                return frame

    async def nothing(self, within: float = 0.15) -> None:
        """Assert no non-ka frame arrives within ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            frame = await self.recv(within)
            raise AssertionError(f"unexpected frame {frame}")

    async def subscribe(self, sub_id: str, channel: str, authorization: dict[str, str] | None = None
                        ) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "id": sub_id, "channel": channel}
        if authorization is not None:
            message["authorization"] = authorization
        await self.send(message)
        return await self.recv()




def open_client(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """``async with open_client(url, {"Authorization": token}) as client`` - subprotocol auth."""
    protocols = subprotocols_for(headers) if headers is not None else [SUBPROTOCOL]
    kwargs.setdefault("subprotocols", protocols)

    @contextlib.asynccontextmanager
    async def _open() -> AsyncIterator[Client]:
        async with connect(url, proxy=None, open_timeout=5, close_timeout=2, **kwargs) as ws:
            yield Client(ws)

    return _open()


def make_gateway(**overrides: Any) -> EventsGateway:
    options: dict[str, Any] = {"staff_token": STAFF, "session_secret": SECRET, "api_key": API_KEY,
                               "keepalive_seconds": 0.2}
    options.update(overrides)
    return EventsGateway(**options)
