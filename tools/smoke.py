"""``bin/smoke BASE_URL``: is this deployment (or local runtime) actually usable by a guest and staff?

Checks, in order, and stops at the first failure with a non-zero exit:
health; ``/api/config``; a WebRTC call (aiortc caller, ICE servers and policy from the config) that
speaks a short WAV and hears non-silent assistant audio; a booking round trip over REST; and the
``booking.created`` event arriving on the events WebSocket, subscribed with ``STAFF_TOKEN`` (the shared
staff token, or a staff member's Cognito access token when staff sign in with Cognito).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from runtime.events.protocol import subprotocols_for
from runtime.media.audio import resample_pcm
from tools.probe import CallProbe

PHRASE = "Hello, I would like to book a table for two people tomorrow at seven pm."


class SmokeFailure(Exception):
    pass


def step(name: str) -> None:
    print(f"--> {name}", flush=True)


def load_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        if wav.getnchannels() > 1:
            samples = samples.reshape(-1, wav.getnchannels()).mean(axis=1).astype("<i2")
        return samples.tobytes(), wav.getframerate()


def speech_wav(explicit: str | None) -> tuple[bytes, int]:
    """The WAV to speak: the one given, else the phrase spoken by espeak-ng, else a short tone."""
    if explicit:
        return load_wav(Path(explicit))
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "phrase.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(out), PHRASE],
                           check=True, capture_output=True, timeout=30)
            return load_wav(out)
    t = np.arange(16_000) / 16_000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes(), 16_000


async def check_health(http: httpx.AsyncClient) -> None:
    step("health")
    response = await http.get("/healthz")
    if response.status_code != 200 or response.json().get("status") != "ok":
        raise SmokeFailure(f"/healthz answered {response.status_code}: {response.text[:200]}")


async def fetch_config(http: httpx.AsyncClient) -> dict[str, Any]:
    step("config")
    response = await http.get("/api/config")
    if response.status_code != 200:
        raise SmokeFailure(f"/api/config answered {response.status_code}: {response.text[:200]}")
    config: dict[str, Any] = response.json()
    for key in ("iceServers", "iceTransportPolicy", "events", "transports"):
        if key not in config:
            raise SmokeFailure(f"/api/config lacks {key!r}")
    print(f"    engine={config.get('engine')} policy={config['iceTransportPolicy']} "
          f"ice servers={len(config['iceServers'])}")
    return config


async def call(http: httpx.AsyncClient, config: dict[str, Any], pcm: bytes, rate: int,
               listen_seconds: float) -> None:
    step("WebRTC call")
    probe = CallProbe(ice_servers=config["iceServers"], relay_only=config["iceTransportPolicy"] == "relay")
    try:
        offer = await probe.offer()
        response = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
        if response.status_code != 200:
            raise SmokeFailure(f"offer answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        await probe.accept(body["sdp"])
        try:
            await probe.wait_connected(within=20)
        except TimeoutError as exc:
            raise SmokeFailure("the call did not connect within 20 s (ICE/TURN path?)") from exc
        await probe.speak(resample_pcm(pcm, rate, 24_000))
        await probe.wait_for_sound(25, within=listen_seconds)
        loud = probe.received.loud_frames
        print(f"    session {body['sessionId']}: {probe.received.frames} frames received, {loud} with sound, "
              f"messages: {sorted({str(m.get('type')) for m in probe.messages})}")
        if loud < 25:
            raise SmokeFailure(f"heard no assistant audio within {listen_seconds:.0f} s")
        probe.send({"type": "hangup"})
        await asyncio.sleep(0.2)
    finally:
        await probe.close()


async def booking_and_event(http: httpx.AsyncClient, config: dict[str, Any], staff_token: str | None) -> None:
    events = config["events"]
    subscription = None
    if staff_token:
        # A Cognito access token (a JWT) goes bare, as AppSync's user-pool mode takes it; the shared staff token
        # as "Bearer ...", which the embedded gateway and the Lambda authorizer accept.
        value = staff_token if staff_token.count(".") == 2 else f"Bearer {staff_token}"
        auth = {"Authorization": value, "host": httpx.URL(events["http"]).host}
        subscription = await connect(events["realtime"], open_timeout=15, subprotocols=[
            Subprotocol(p) for p in subprotocols_for(auth)])
        await subscription.send(json.dumps({"type": "connection_init"}))
        sub_id = uuid.uuid4().hex
        await subscription.send(json.dumps({"type": "subscribe", "id": sub_id, "channel": "/restaurant-booking/*",
                                            "authorization": auth}))
        while True:
            message = json.loads(await asyncio.wait_for(subscription.recv(), 10))
            if message.get("type") == "subscribe_success":
                break
            if message.get("type") in ("subscribe_error", "connection_error", "error"):
                raise SmokeFailure(f"events subscription refused: {message}")
    try:
        step("booking round trip")
        day = (date.today() + timedelta(days=3)).isoformat()
        data = {"name": "Smoke Test", "date": day, "hour": "19:00", "num_guests": 2}
        created = await http.post("/api/bookings", json=data, headers={"Idempotency-Key": uuid.uuid4().hex})
        if created.status_code not in (200, 201):
            raise SmokeFailure(f"create booking answered {created.status_code}: {created.text[:200]}")
        booking_id = created.json()["booking_id"]
        fetched = await http.get(f"/api/bookings/{booking_id}")
        if fetched.status_code != 200 or fetched.json().get("name") != "Smoke Test":
            raise SmokeFailure(f"booking {booking_id} did not read back: {fetched.text[:200]}")
        cancelled = await http.request("DELETE", f"/api/bookings/{booking_id}", json={"reason": "smoke test"})
        if cancelled.status_code != 200 or cancelled.json().get("status") != "cancelled":
            raise SmokeFailure(f"cancel answered {cancelled.status_code}: {cancelled.text[:200]}")
        print(f"    booking {booking_id} created, read back, cancelled")
        if subscription is None:
            print("    STAFF_TOKEN not set: skipping the events check")
            return
        step("event on the events WebSocket")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(subscription.recv(), max(0.1, deadline - time.monotonic())))
            if message.get("type") == "data":
                event = json.loads(message["event"]) if isinstance(message["event"], str) else message["event"]
                if event.get("booking", {}).get("booking_id") == booking_id:
                    print(f"    received {event.get('type')} for {booking_id}")
                    return
        raise SmokeFailure("no booking event arrived on the events WebSocket within 15 s")
    finally:
        if subscription is not None:
            await subscription.close()


async def run(base_url: str, wav: str | None, listen_seconds: float) -> None:
    staff_token = os.environ.get("STAFF_TOKEN")
    pcm, rate = speech_wav(wav)
    headers = {"Authorization": f"Bearer {staff_token}"} if staff_token else {}
    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=30, headers=headers) as http:
        await check_health(http)
        config = await fetch_config(http)
        await call(http, config, pcm, rate, listen_seconds)
        await booking_and_event(http, config, staff_token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8000 or https://concierge.example.com")
    parser.add_argument("--wav", help="WAV to speak (default: a phrase from espeak-ng)")
    parser.add_argument("--listen", type=float, default=20.0, help="seconds to wait for assistant audio")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        asyncio.run(run(args.base_url, args.wav, args.listen))
    except SmokeFailure as exc:
        print(f"SMOKE FAILED: {exc}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        print(f"SMOKE FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke OK in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
