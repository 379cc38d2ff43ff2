"""The rehearsal's guest: ``python -m tools.rehearsal_guest BASE_URL`` books a table by voice, as a browser would.

Runs inside the rehearsal's client namespace, which reaches only the edge (the "ALB" and coturn's public
address): it fetches ``/api/config``, offers a WebRTC call with the ICE servers and policy it was given
(relay only, short-lived TURN credentials), speaks a booking request (espeak-ng, else a tone) and waits for
the ``booking`` message on the data channel. Prints one JSON line with what it saw; exit status 0 only when
the booking arrived.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

from runtime.media.audio import resample_pcm
from tools.probe import CallProbe
from tools.smoke import speech_wav


async def book(base_url: str, within: float) -> dict[str, Any]:
    pcm, rate = speech_wav(None)
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
        config = (await http.get("/api/config")).json()
        probe = CallProbe(ice_servers=config["iceServers"], relay_only=config["iceTransportPolicy"] == "relay")
        result: dict[str, Any] = {"policy": config["iceTransportPolicy"], "engine": config.get("engine")}
        try:
            offer = await probe.offer()
            result["offer_candidates"] = sorted({line.split()[7] for line in offer.splitlines()
                                                 if line.startswith("a=candidate:")})
            answer = await http.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            answer.raise_for_status()
            body = answer.json()
            result.update(sessionId=body["sessionId"], sessionToken=body["sessionToken"])
            await probe.accept(body["sdp"])
            started = time.monotonic()
            await probe.wait_connected(within=20)
            result["connect_seconds"] = round(time.monotonic() - started, 2)
            await probe.speak(resample_pcm(pcm, rate, 24_000))
            spoke = time.monotonic()
            booking = await probe.wait_for_message(lambda m: m.get("type") == "booking", within=within)
            result["booking"] = booking.get("booking")
            result["booking_seconds_after_speaking"] = round(time.monotonic() - spoke, 2)
            await probe.wait_for_sound(25, within=10)
            # A guest hangs up once the booking id has been read back, not at the booking message: the reply
            # that reads it out is stored only when its final transcript arrives, after its audio.
            booking_id = str((result["booking"] or {}).get("booking_id", ""))
            await probe.wait_for_message(lambda m: m.get("type") == "transcript" and m.get("final") is True
                                         and m.get("role") == "ASSISTANT" and booking_id in str(m.get("text")),
                                         within=15)
            result["loud_frames"] = probe.received.loud_frames
            transport = probe.pc.getTransceivers()[0].receiver.transport.transport
            pair = transport._connection._nominated.get(1)  # aioice keeps the selected pair here only
            result["local_candidate"] = pair.local_candidate.type if pair else None
            result["messages"] = sorted({str(m.get("type")) for m in probe.messages})
            probe.send({"type": "hangup"})
            await asyncio.sleep(0.5)
        except Exception as exc:  # reported as data: the orchestrator prints and judges it
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            await probe.close()
    return result


def main() -> int:
    base_url = sys.argv[1]
    within = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    result = asyncio.run(book(base_url, within))
    print(json.dumps(result), flush=True)
    return 0 if result.get("booking") else 1


if __name__ == "__main__":
    raise SystemExit(main())
