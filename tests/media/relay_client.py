"""Caller process for the TURN relay test; runs inside a network namespace that reaches only TURN.

Signaling goes through the test process (stdin/stdout JSON lines), the way the ALB carries it in the
deployed stack; media can only leave this namespace through the TURN server.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np

from tools.probe import CallProbe


def tone(freq: float, seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 0.3 * 32767).astype("<i2").tobytes()


async def main() -> None:
    config = json.loads(sys.argv[1])
    probe = CallProbe(ice_servers=config["iceServers"], relay_only=config["iceTransportPolicy"] == "relay")
    print(json.dumps({"offer": await probe.offer()}), flush=True)
    answer = json.loads(await asyncio.to_thread(sys.stdin.readline))
    await probe.accept(answer["sdp"])
    result: dict[str, object] = {}
    try:
        await probe.wait_connected(within=20)
        await probe.speak(tone(523.25, 1.5, 24_000))
        await probe.wait_for_message(lambda m: m.get("type") == "transcript", within=10)
        await asyncio.sleep(1.0)
        pair = probe.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated.get(1)
        result = {
            "connected": True,
            "loud_frames": probe.received.loud_frames,
            "dominant": probe.received.dominant_frequency(),
            "messages": [m.get("type") for m in probe.messages],
            "local_candidate": pair.local_candidate.type if pair else None,
            "remote_address": pair.remote_candidate.host if pair else None,
        }
    except Exception as exc:
        result = {"connected": False, "error": repr(exc)}
    finally:
        await probe.close()
    print(json.dumps({"result": result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
