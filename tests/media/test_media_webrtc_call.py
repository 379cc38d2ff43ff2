"""A caller places a real WebRTC call to the runtime (uvicorn on a real port) and talks to it.

Each test runs in its own network namespace (conftest ``netns_address``): runtime and caller are
started inside it and the call can only use the namespace's private address.

The echo session plays the caller's voice back through the whole media path: Opus 48 kHz in ->
16 kHz mono into the session -> 24 kHz out -> paced Opus -> caller. A wrong rate anywhere would shift
the pitch the caller hears, so the dominant frequency on the caller's side checks every conversion.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from media_support import RunningServer, candidate_addresses, read_wav_mono, start_server, stop_server, tone, write_wav

from runtime.media.audio import resample_pcm
from runtime.media.routes import MediaHub
from tools.echo import EchoSessionFactory
from tools.probe import CallProbe

pytestmark = pytest.mark.timeout(90)


async def place_call(server: RunningServer, probe: CallProbe, address: str, **extra: object) -> dict[str, object]:
    offer = await probe.offer()
    assert candidate_addresses(offer) == {address}, "the caller offers only the namespace's address"
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer", **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert candidate_addresses(str(body["sdp"])) == {address}, "the runtime answers with the namespace's address"
    await probe.accept(body["sdp"])
    await probe.wait_connected()
    return body


async def test_caller_hears_its_voice_back_at_the_right_pitch_and_gets_transcripts(
        rtc_server: RunningServer, echo_factory, netns_address: str, tmp_path) -> None:
    wav = write_wav(tmp_path / "speech.wav", tone(440, 2.0, 16_000), 16_000)
    pcm, rate = read_wav_mono(wav)
    probe = CallProbe()
    try:
        body = await place_call(rtc_server, probe, netns_address)
        assert body["type"] == "answer"
        assert body["sessionToken"].split(".")[1] == body["sessionId"]
        await probe.speak(resample_pcm(pcm, rate, 24_000))
        transcript = await probe.wait_for_message(lambda m: m.get("type") == "transcript", within=10)
        assert transcript["role"] == "USER"
        await asyncio.sleep(1.5)
        received = probe.received
        assert received.rates == {48_000}, "aiortc decodes Opus at 48 kHz"
        assert received.loud_frames > 50, "the assistant's audio is not silent"
        assert received.dominant_frequency() == pytest.approx(440, abs=5)
        # paced at real time (~50 frames of 20 ms per second), not dumped as fast as produced; the band
        # is wide because this machine may be busy, the difference it guards against is ~10x
        assert 35 <= received.frames / ((received.arrivals[-1] - received.arrivals[0]) or 1) <= 65
        assert [s.transport for s in echo_factory.active] == ["webrtc"]
    finally:
        await probe.close()
    for _ in range(50):
        if not echo_factory.active:
            break
        await asyncio.sleep(0.1)
    assert not echo_factory.active, "hanging up ends the session"
    assert echo_factory.ended[0].end_reason is not None
    async with httpx.AsyncClient(base_url=rtc_server.base_url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_hangup_message_and_ping_over_the_data_channel(rtc_server: RunningServer, echo_factory,
                                                            netns_address: str) -> None:
    probe = CallProbe()
    try:
        await place_call(rtc_server, probe, netns_address)
        await probe.wait_for_message(lambda m: m.get("type") == "status", within=10)
        probe.send({"type": "ping", "id": 3})
        pong = await probe.wait_for_message(lambda m: m.get("type") == "pong", within=10)
        assert pong["id"] == 3
        probe.send({"type": "hangup"})
        for _ in range(50):
            if echo_factory.ended:
                break
            await asyncio.sleep(0.1)
        assert echo_factory.ended[0].end_reason == "hangup"
        async with httpx.AsyncClient(base_url=rtc_server.base_url) as client:
            exposition = (await client.get("/metrics")).text
        assert 'media_calls_ended_total{reason="hangup",transport="webrtc"}' in exposition
    finally:
        await probe.close()


async def test_server_side_end_releases_the_call(rtc_server: RunningServer, echo_factory,
                                                 netns_address: str) -> None:
    probe = CallProbe()
    try:
        await place_call(rtc_server, probe, netns_address)
        hub = rtc_server.app.state.services.media
        assert len(hub.calls) == 1
        rtc_server.call_in_loop(echo_factory.close_all("conversation over"))
        for _ in range(50):
            if not hub.calls:
                break
            await asyncio.sleep(0.1)
        assert not hub.calls, "the peer connection is released when the session ends"
        assert echo_factory.ended[0].end_reason == "conversation over"
    finally:
        await probe.close()


async def test_a_lossy_uplink_loses_only_the_lost_audio(rtc_server: RunningServer, echo_factory,
                                                        netns_address: str) -> None:
    probe = CallProbe()
    probe.loss = 0.05  # 5 % of the caller's RTP packets never arrive
    try:
        await place_call(rtc_server, probe, netns_address)
        await probe.speak(tone(440, 3.0, 24_000).tobytes())
        assert await probe.wait_for_sound(130, within=15), "the echo keeps flowing despite the losses"
        await asyncio.sleep(0.5)
        (call,) = rtc_server.app.state.services.media.calls
        assert call.jitter is not None
        assert call.jitter.lost > 0, "packets really were lost on the way"
        assert call.jitter.lost <= probe.dropped_rtp
        (session,) = echo_factory.active
        sent_ms = (probe.sent_rtp - probe.dropped_rtp) * 20
        assert session.received_bytes / 32 >= 0.9 * min(sent_ms, 3000), "every packet that arrived reached the session"
        assert probe.received.dominant_frequency() == pytest.approx(440, abs=5)
    finally:
        await probe.close()


async def test_an_offer_that_never_connects_is_released(tmp_path, netns_address: str) -> None:
    factory = EchoSessionFactory(max_sessions=1)
    server = start_server(tmp_path, hub=MediaHub(session_factory=factory, connect_timeout=1.0))
    probe = CallProbe()
    try:
        offer = await probe.offer()
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            first = await client.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            assert first.status_code == 200
            # the caller walks away without ever connecting; its session holds the only slot...
            busy = await client.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            assert busy.status_code == 503
            for _ in range(50):
                if factory.ended:
                    break
                await asyncio.sleep(0.1)
            # ...until the connect timeout frees it
            assert factory.ended[0].end_reason == "connect-timeout"
            assert not server.app.state.services.media.calls
            again = await client.post("/api/webrtc/offer", json={"sdp": offer, "type": "offer"})
            assert again.status_code == 200
    finally:
        await probe.close()
        stop_server(server)
