"""Helpers shared by the media tests (servers on real ports, WAV files, tones)."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from runtime.app import create_app
from runtime.media.routes import MediaHub
from runtime.services import Overrides
from runtime.settings import load_settings

STAFF_TOKEN = "staff-token-for-media-tests"


def candidate_addresses(sdp: str) -> set[str]:
    """Connection addresses of every ICE candidate in an SDP."""
    return set(re.findall(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", sdp, re.MULTILINE))


@dataclass
class RunningServer:
    base_url: str
    app: Any
    thread: threading.Thread
    server: uvicorn.Server

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    def call_in_loop(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's own event loop (to inspect server-side state safely)."""
        loop = self.server_loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    server_loop: Any = None


def start_server(tmp_path: Path, *, factory: Any = None, hub: MediaHub | None = None,
                 **settings_overrides: Any) -> RunningServer:
    settings = load_settings(data_dir=tmp_path, staff_token=STAFF_TOKEN, session_secret="s" * 40,
                             **settings_overrides)
    if hub is None and factory is not None:
        hub = MediaHub(session_factory=factory)
    app = create_app(settings, Overrides(media=hub))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, ws_max_size=1024 * 1024, lifespan="on")
    server = uvicorn.Server(config)
    running = RunningServer(f"http://127.0.0.1:{port}", app, None, server)  # type: ignore[arg-type]

    def serve() -> None:
        loop = asyncio.new_event_loop()
        running.server_loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(sockets=[sock]))
        loop.close()

    running.thread = threading.Thread(target=serve, name="uvicorn-media-test", daemon=True)
    running.thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not running.thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return running


def stop_server(running: RunningServer) -> None:
    running.server.should_exit = True
    running.thread.join(timeout=20)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2")


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def read_wav_mono(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        raw = wav.readframes(wav.getnframes())
        samples = np.frombuffer(raw, dtype="<i2")
        if wav.getnchannels() > 1:
            samples = samples.reshape(-1, wav.getnchannels()).mean(axis=1).astype("<i2")
        return samples.tobytes(), wav.getframerate()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()
