"""Fixtures for the browser end-to-end tests: the whole standalone stack in a private network
namespace (runtime + offline engine + SQLite + events gateway, served by uvicorn) and Debian Chromium
driven by Playwright with a synthesised booking dialogue as its microphone."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import (
    CHROMIUM,
    NETNS_ADDRESS,
    NETNS_PREFIX,
    STAFF_TOKEN,
    BrowserSession,
    Runtime,
    chromium_args,
    network_namespace,
    require_browser_stack,
    start_runtime,
    write_dialogue_wav,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    require_browser_stack()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a private network namespace for WebRTC")
    try:
        namespace = network_namespace(NETNS_PREFIX, NETNS_ADDRESS)
        name = namespace.__enter__()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        pytest.skip(f"cannot create a private network namespace here ({detail}); WebRTC needs one")
    try:
        yield name
    finally:
        namespace.__exit__(None, None, None)


@pytest.fixture(scope="module")
def stack(netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    from runtime.settings import load_settings

    data_dir = tmp_path_factory.mktemp("browser-data")
    settings = load_settings(
        data_dir=data_dir,
        staff_token=STAFF_TOKEN,
        session_secret="browser-tests-session-secret-0123456789",
        speech_engine="local",
        store="sqlite",
        webapp_dir=ROOT / "webapp" / "dist",
    )
    runtime = start_runtime(settings)
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="session")
def dialogue_wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The guest's side of a booking, twice: for a call that connects at once, and for one that
    first waits for WebRTC to give up (its greeting starts a few seconds later)."""
    folder = tmp_path_factory.mktemp("fake-mic")
    wavs = {"direct": folder / "booking.wav", "fallback": folder / "booking-fallback.wav"}
    write_dialogue_wav(wavs["direct"])
    write_dialogue_wav(wavs["fallback"], lead=3.0)
    return wavs


@pytest.fixture
def launch_chromium(netns: str) -> Iterator[Any]:
    """Start Chromium (inside the namespace) with the given WAV as its microphone."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browsers: list[Any] = []

        def launch(fake_mic: Path | None) -> BrowserSession:
            # Playwright starts every browser with a fresh temporary profile.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_args(fake_mic), headless=True)
            browsers.append(browser)
            return BrowserSession(browser, [])

        yield launch
        for browser in browsers:
            browser.close()
