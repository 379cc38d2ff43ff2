"""The runtime app under uvicorn on loopback with the protocol ``serve`` uses (read timeouts included)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from runtime.app import create_app
from runtime.services import Overrides
from runtime.settings import load_settings


@dataclass
class Served:
    host: str
    port: int
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


def serve(tmp_path: Path, *, services: Overrides | None = None, **overrides: Any) -> Served:
    settings = load_settings(data_dir=tmp_path, staff_token="staff-token-" + "x" * 20, session_secret="s" * 40,
                             workers=1, **overrides)
    app = create_app(settings, services)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The same protocol class `python -m runtime serve` names (runtime/__main__.py).
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            http="runtime.http_timeouts:TimedH11Protocol",
                            timeout_keep_alive=settings.keep_alive_seconds)
    server = uvicorn.Server(config)

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(sockets=[sock]))
        loop.close()

    thread = threading.Thread(target=run, name="uvicorn-edge-limits", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return Served("127.0.0.1", port, app, server, thread)


def stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(timeout=20)
