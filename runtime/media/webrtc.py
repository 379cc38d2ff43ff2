"""One WebRTC call: peer connection, session, and everything that must be released when it ends.

Signaling is a single non-trickle request: the caller's offer already holds all its candidates and
our answer holds all of ours (aiortc gathers before ``setLocalDescription`` returns; with no STUN/TURN
configured on the server that takes milliseconds). So the call lives wholly in the process that
answered, and nothing needs session affinity afterwards.

A call ends on the first of: the caller hangs up (data-channel ``hangup``, peer connection or data
channel closed, RTCP BYE ending the track), ICE failure or consent loss (aioice stops after ~30 s
without consent and the connection turns ``failed``), the peer never connecting, the session core
ending the conversation, or process shutdown. ``end`` is idempotent and releases the session, the
peer connection (sockets, DTLS, the receiver's decoder thread) and our tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from runtime.errors import ApiError
from runtime.media import metrics
from runtime.media.inbound import InboundAudio, LowDelayAudioJitterBuffer, tune_audio_receiver
from runtime.media.load import LOOP_LOAD
from runtime.media.outbound import DataChannelSender, PacedOpusTrack, PlayoutBuffer, WebRtcOutput
from runtime.speech.ports import BAD_HEARD_MESSAGE, SessionFactory, VoiceSession, heard_seconds

log = logging.getLogger("runtime.media.webrtc")

# Browser audio + data-channel offers are 3-8 KB (more with many interfaces' candidates); every m-line
# costs an answer section with all our candidates (250 m-lines in a 29 KB offer made a 264 KB answer),
# so both the size and the number of m-lines are capped.
MAX_SDP_BYTES = 20 * 1024
MAX_MEDIA_SECTIONS = 4  # the app needs one audio + one data channel; room for a browser's extra one
CONNECT_TIMEOUT_SECONDS = 20.0  # a caller whose ICE never completes (the web app falls back after 6 s)
SESSION_END_TIMEOUT_SECONDS = 10.0
DRAIN_SECONDS = 15.0  # when the session ends, its last words (a goodbye) play out for at most this long
ALLOWED_MEDIA = {"audio", "application"}


_REASONS = {"hangup", "datachannel-closed", "connection-failed", "connection-closed", "remote-track-ended",
            "connect-timeout", "session-ended", "session-start-failed", "negotiation-failed", "server-shutdown",
            "idle", "max_duration"}


def _reason_label(reason: str | None) -> str:
    return reason if reason in _REASONS else "other"


class BadOffer(ApiError):
    status, code = 400, "bad_offer"


def validate_offer_sdp(sdp: str) -> SessionDescription:
    """Reject what a browser would never send, with a message that says what is wrong."""
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise ApiError(f"sdp is larger than {MAX_SDP_BYTES} bytes", status=413, code="payload_too_large")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer("sdp is not a session description (it must start with 'v=0')")
    sections = sum(1 for line in sdp.splitlines() if line.startswith("m="))
    if sections > MAX_MEDIA_SECTIONS:
        raise BadOffer(f"the offer has {sections} media sections (m-lines); at most {MAX_MEDIA_SECTIONS} are "
                       "accepted (one audio and one data channel are needed)", code="too_many_media_sections")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises assorted ValueError/KeyError/IndexError
        raise BadOffer(f"sdp could not be parsed: {type(exc).__name__}") from exc
    kinds = [m.kind for m in parsed.media]
    if "audio" not in kinds:
        raise BadOffer("the offer has no audio m-line; this service only takes voice calls")
    unsupported = sorted(set(kinds) - ALLOWED_MEDIA)
    if unsupported:
        raise BadOffer(f"unsupported media in the offer: {', '.join(unsupported)} (audio only)")
    for media in parsed.media:
        ice = media.ice
        if ice is None or not ice.usernameFragment or not ice.password:
            raise BadOffer("the offer lacks ICE credentials (a=ice-ufrag / a=ice-pwd)")
        if not (media.dtls and media.dtls.fingerprints):
            raise BadOffer("the offer lacks a DTLS fingerprint (a=fingerprint)")
        if media.kind == "audio" and not any(c.mimeType.lower() in ("audio/opus", "audio/pcmu", "audio/pcma")
                                             for c in media.rtp.codecs):
            raise BadOffer("the offer's audio has no codec we speak (Opus, PCMU or PCMA)")
    return parsed


class WebRtcCall:
    """A peer connection bound to one voice session."""

    def __init__(self, factory: SessionFactory, *, voice: str | None,
                 on_closed: Callable[[WebRtcCall], None] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS, client: str | None = None) -> None:
        self.factory = factory
        self.client = client  # runtime.ratelimit.client_key of the caller, for the session's booking limits
        self.voice = voice
        self.on_closed = on_closed
        self.connect_timeout = connect_timeout
        self.pc: RTCPeerConnection | None = None
        self.session: VoiceSession | None = None
        self.buffer = PlayoutBuffer()
        self.channel = DataChannelSender()
        self.output = WebRtcOutput(self.buffer, self.channel)
        self.track: PacedOpusTrack | None = None
        self.inbound: InboundAudio | None = None
        self.jitter: LowDelayAudioJitterBuffer | None = None
        self.end_reason: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ended = asyncio.Event()
        self._released = asyncio.Event()
        self._connected = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def answer(self, offer_sdp: str) -> str:
        """Create the session and return the answer SDP; raises ApiError (4xx/503) on bad input/capacity."""
        validate_offer_sdp(offer_sdp)
        LOOP_LOAD.admit()  # 503 before a session exists when this process cannot take one more call (load.py)
        self.session = await self.factory.create(self.output, transport="webrtc", voice=self.voice,
                                                 client=self.client)
        try:
            return await self._negotiate(offer_sdp)
        except BaseException:
            await self.end("negotiation-failed")
            raise

    async def _negotiate(self, offer_sdp: str) -> str:
        # No ICE servers: the server only offers host candidates; callers behind NAT reach them through
        # the TURN relay they get from /api/config (asymmetric ICE, docs/architecture.md).
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        pc.on("iceconnectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BadOffer(f"the offer was rejected: {exc}") from exc
        except Exception as exc:  # aiortc InvalidStateError/OperationError: still the offer's fault
            raise BadOffer(f"the offer was rejected: {type(exc).__name__}") from exc
        self.track = PacedOpusTrack(self.buffer, trace=self.session.trace if self.session is not None else None,
                                    skip_leading_silence=True)
        pc.addTrack(self.track)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        self._spawn(self._run_session(), "session")
        self._spawn(self._watch_session(), "session-end")
        self._spawn(self._watchdog(), "watchdog")
        return pc.localDescription.sdp

    # --- events from aiortc ------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self.pc is None or self.inbound is not None:
            return
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                self.jitter = tune_audio_receiver(transceiver.receiver)
        self.inbound = InboundAudio(track, self._push_audio)
        self._spawn(self._run_inbound(self.inbound), "inbound")

    def _on_datachannel(self, channel: Any) -> None:
        self.channel.attach(channel)

        channel.on("message", self._on_caller_message)
        channel.on("close", lambda: self._end_soon("datachannel-closed"))

    def _on_state(self) -> None:
        pc = self.pc
        if pc is None:
            return
        if pc.connectionState == "connected":
            self._connected.set()
        if pc.connectionState in ("failed", "closed") or pc.iceConnectionState in ("failed", "closed"):
            self._end_soon(f"connection-{pc.connectionState}")

    def _on_caller_message(self, raw: Any) -> None:
        if not isinstance(raw, str) or len(raw) > 4096:
            return
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "hangup":
            self._end_soon("hangup")
        elif kind == "ping":
            self.channel.send({"type": "pong", "id": message.get("id")})
        elif kind == "heard":  # the caller's own reply time (runtime/speech/ports.py); a bad one never ends the call
            seconds = heard_seconds(message.get("latencyMs"))
            if seconds is None:
                self.channel.send({"type": "error", "code": "bad_heard",
                                   "message": BAD_HEARD_MESSAGE})
            elif self.session is not None:
                self.session.report_heard(seconds)

    async def _watch_session(self) -> None:
        """Hang up when the session ends the conversation itself (a call limit, a fault, shutdown)."""
        assert self.session is not None
        reason = await self.session.wait_ended()
        await self._drain_then_end(reason if reason in _REASONS else "session-ended")

    async def _drain_then_end(self, reason: str) -> None:
        """Hang up once the session's last words (a goodbye) have played out, or after ``DRAIN_SECONDS``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                while len(self.buffer) > 0 and not self.ended:  # noqa: ASYNC110 - the buffer has no drained event
                    await asyncio.sleep(0.05)
        self._end_soon(reason)

    # --- tasks ---------------------------------------------------------------------------------------

    async def _push_audio(self, pcm: bytes) -> None:
        session = self.session
        if session is not None and not session.ended:
            await session.push_audio(pcm)

    async def _run_inbound(self, inbound: InboundAudio) -> None:
        await inbound.run()
        self._end_soon("remote-track-ended")

    async def _run_session(self) -> None:
        assert self.session is not None
        try:
            await self.session.start()
        except Exception as exc:
            log.warning("session failed to start: %s", exc)
            self.channel.send({"type": "error", "code": "session_failed", "message": "the assistant is unavailable"})
            self._end_soon("session-start-failed")

    async def _watchdog(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout)
        except TimeoutError:
            self._end_soon("connect-timeout")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"webrtc-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end_soon(self, reason: str) -> None:
        if not self.ended and self.end_reason is None:
            self.end_reason = reason
            self._spawn(self.end(reason), "end")  # held in _tasks: the loop keeps only weak references

    async def end(self, reason: str) -> None:
        """Hang up and release everything. Safe to call many times and from any callback."""
        if self._ended.is_set():
            with contextlib.suppress(TimeoutError):  # another caller is releasing: wait for it to finish
                await asyncio.wait_for(self._released.wait(), SESSION_END_TIMEOUT_SECONDS + 5)
            return
        self._ended.set()
        self.end_reason = self.end_reason or reason
        metrics.CALLS_ENDED.labels("webrtc", _reason_label(self.end_reason)).inc()
        if self.jitter is not None:
            metrics.RTP_LOST.inc(self.jitter.lost)
            metrics.RTP_LATE.inc(self.jitter.late)
        log.info("call ended", extra={"reason": self.end_reason,
                                      "session": getattr(self.session, "session_id", None)})
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self.session is not None:
            try:
                await asyncio.wait_for(self.session.end(self.end_reason), SESSION_END_TIMEOUT_SECONDS)
            except Exception:
                log.exception("session did not end cleanly")
        self.buffer.close()
        if self.track is not None:
            self.track.stop()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
        self._released.set()
        if self.on_closed is not None:
            self.on_closed(self)
