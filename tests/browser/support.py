"""Helpers for the browser end-to-end tests: a private network namespace, the real runtime served by
uvicorn in a thread, the booking-dialogue WAV for Chromium's fake microphone.

Why a network namespace: WebRTC cannot run over 127.0.0.1 here (aioice never gathers loopback
candidates), and the tests must not send traffic to any address but loopback or a namespace they own.
So the whole test - runtime, Chromium and the test's own HTTP calls - runs inside a fresh namespace
with one private address on a veth pair whose both ends stay inside it (nothing can leave).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The shared helper (also used by tests/media and bench/rtc_sessions.py), re-exported for conftest.
from tests.netns import network_namespace as network_namespace

NETNS_PREFIX = "ncweb"  # the namespace is ncweb<pid>
NETNS_ADDRESS = "10.251.0.1/24"
STAFF_TOKEN = "staff-token-for-browser-tests"


@dataclass
class Runtime:
    base_url: str
    app: Any
    server: Any
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


BROWSER_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def require_browser_stack() -> None:
    """Fail (never skip) when something the browser tests drive is missing: bin/test installs all of it, so
    a missing piece is a broken setup, and a browser suite that quietly skips proves nothing."""
    import playwright.sync_api  # noqa: F401 - a pinned dev dependency: an ImportError here is the real error

    if not (BROWSER_ROOT / "webapp" / "dist" / "index.html").is_file():
        pytest.fail("the web app is not built: run `npm ci && npm run build` in webapp/ (bin/test does)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium is not installed at {CHROMIUM} (bin/test installs it with apt-get)")


def start_runtime(settings: Any, *, host: str = "127.0.0.1") -> Runtime:
    """Serve ``create_app(settings)`` on ``host``:<free port> from a background thread.

    ``host`` other than loopback: for a browser in another namespace (the connectivity tests).
    """
    import uvicorn

    from runtime.app import create_app

    app = create_app(settings)
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    runtime = Runtime(f"http://{host}:{port}", app, server, threading.Thread())

    def serve() -> None:
        loop = asyncio.new_event_loop()
        runtime.loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(sockets=[sock]))
        loop.close()

    runtime.thread = threading.Thread(target=serve, name="uvicorn-browser-tests", daemon=True)
    runtime.thread.start()
    deadline = time.monotonic() + 60  # the offline engine loads its models in the lifespan
    while not server.started:
        if time.monotonic() > deadline or not runtime.thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the runtime did not start (see the log above)")
        time.sleep(0.05)
    return runtime


# --- the guest's side of a booking dialogue --------------------------------------------------------

@dataclass(frozen=True)
class Utterance:
    text: str
    pause_before: float  # seconds of silence before it: the assistant's turn


# The offline assistant greets first (8.1 s of speech, starting ~1-2 s after the microphone opens),
# then asks for whatever is missing. The guest gives date, time and party size at once, then the name,
# then confirms. Each pause covers the assistant's reply (3.2 s; the read-back 10.6-11.5 s depending
# on the date's wording) plus endpointing and a margin: Chromium's fake microphone runs on wall-clock
# time whatever the machine's load, and talking over the assistant would interrupt it.
BOOKING_DIALOGUE = (
    Utterance("I would like to book a table for four people tomorrow at seven pm.", 13.0),
    Utterance("My name is Alice Smith.", 7.5),
    Utterance("Yes please.", 16.0),
)
TRAILING_SILENCE = 60.0  # the fake device loops the file: keep the guest quiet until the test ends


def write_dialogue_wav(path: Path, dialogue: tuple[Utterance, ...] = BOOKING_DIALOGUE, *, lead: float = 0.0) -> float:
    """Synthesise the guest's lines with the neural voice the offline engine recognises best.

    ``lead`` adds silence at the start (the fallback test connects a few seconds later, so the
    greeting starts later too). Returns the time (s from file start) at which the last line ends.
    """
    import numpy as np

    from runtime.engine.tts import SAMPLE_RATE, Synthesizer

    tts = Synthesizer(speed=1.0)
    parts: list[np.ndarray] = [np.zeros(int(lead * SAMPLE_RATE), dtype="<i2")]
    elapsed = lead
    for utterance in dialogue:
        pause = np.zeros(int(utterance.pause_before * SAMPLE_RATE), dtype="<i2")
        speech = np.frombuffer(tts.synthesize(utterance.text), dtype="<i2")
        parts += [pause, speech]
        elapsed += utterance.pause_before + len(speech) / SAMPLE_RATE
    parts.append(np.zeros(int(TRAILING_SILENCE * SAMPLE_RATE), dtype="<i2"))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(np.concatenate(parts).tobytes())
    return elapsed


def chromium_args(fake_mic: Path | None) -> list[str]:
    """Debian Chromium flags known to work headless here (without the
    background-networking flags Chromium keeps dialling Google's hosts).

    ``fake_mic=None`` leaves out the fake capture device: the machine then has no microphone at all.
    """
    mic = (
        ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={fake_mic}"]
        if fake_mic is not None
        else []
    )
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        *mic,
        "--autoplay-policy=no-user-gesture-required",
    ]


@dataclass
class BrowserSession:
    """One Chromium process; every page it opens reports console errors into ``console_errors``,
    because "no console errors" is part of what the pages promise."""

    browser: Any
    console_errors: list[str]

    def new_page(self, *, width: int = 1280, height: int = 860) -> Any:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))
        return page
