"""HTTP surface of the media area: ``POST /api/webrtc/offer``, WebSocket ``/ws/audio`` and ``/ws/probe``.

Per-process state (live calls, the offer rate limiter, the per-client call count, the session factory)
lives in one ``MediaHub``, built with the rest of the app's state in ``runtime.services.build_services``
(``services.media``), which also hangs up every call at shutdown. Tests and the bench give it another
session factory through ``Overrides(media=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from runtime.errors import ApiError, TooManyRequests, error_body
from runtime.http_body import read_json
from runtime.media import metrics
from runtime.media.webrtc import CONNECT_TIMEOUT_SECONDS, BadOffer, WebRtcCall, validate_offer_sdp
from runtime.media.ws_audio import CLOSE_TRY_AGAIN, WsCall, WsOutput
from runtime.origin import check_origin
from runtime.ratelimit import RateLimiter, client_key
from runtime.services import services_of
from runtime.speech.ports import SessionFactory
from runtime.speech.voices import check_voice

log = logging.getLogger("runtime.media")

OFFER_RATE_PER_SECOND = 1.0  # sustained new calls per client address
OFFER_BURST = 20  # a household/office behind one NAT may start several calls at once


class CallSlot:
    """One admitted call of a client; ``release`` (idempotent) gives the client's slot back."""

    def __init__(self, hub: MediaHub, key: str) -> None:
        self._hub = hub
        self.key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub._release(self.key)


class MediaHub:
    """Live calls of this process, the offer limiter, the per-client call count, the ``SessionFactory``."""

    def __init__(self, *, session_factory: SessionFactory, limiter: RateLimiter | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
        self.session_factory = session_factory
        self.connect_timeout = connect_timeout
        self.limiter = limiter or RateLimiter(OFFER_RATE_PER_SECOND, OFFER_BURST)
        self.calls: set[WebRtcCall] = set()
        self.ws_calls = 0
        self.calls_by_client: dict[str, int] = {}  # both transports; a key leaves when its last call ends

    def admit(self, key: str, limit: int) -> CallSlot:
        """Count a new call of ``key`` (``runtime.ratelimit.client_key``) or refuse it with 429."""
        if self.calls_by_client.get(key, 0) >= limit:
            raise TooManyRequests(f"this address already has {limit} calls in progress; hang up one before "
                                  "starting another", code="too_many_calls")
        self.calls_by_client[key] = self.calls_by_client.get(key, 0) + 1
        return CallSlot(self, key)

    def _release(self, key: str) -> None:
        left = self.calls_by_client.get(key, 0) - 1
        if left > 0:
            self.calls_by_client[key] = left
        else:
            self.calls_by_client.pop(key, None)

    async def close_all(self) -> None:
        calls = list(self.calls)
        await asyncio.gather(*(call.end("server-shutdown") for call in calls), return_exceptions=True)


def _voice(conn: HTTPConnection, voice: Any) -> str | None:
    """The caller's voice, checked against the catalogue before a call slot is taken (None: the default)."""
    return None if voice is None else check_voice(conn.app.state.settings.speech_engine, voice)


async def webrtc_offer(request: Request) -> JSONResponse:
    """Start a voice call over WebRTC (non-trickle: the answer holds every candidate).
    ---
    summary: Exchange an SDP offer for an answer and start a voice session
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [sdp, type]
            properties:
              sdp: {type: string, description: offer with all ICE candidates gathered}
              type: {type: string, enum: [offer]}
              voice: {type: string}
    responses:
      200: {description: '{"sdp","type":"answer","sessionId","sessionToken"}'}
      400: {description: malformed body or SDP}
      413: {description: SDP too large}
      415: {description: not sent as application/json}
      429: {description: 'too many offers from this address (rate_limited), or too many calls in progress
        from it (too_many_calls)'}
      503: {description: this process is at its session limit}
    """
    try:
        return await _answer_offer(request)
    except ApiError as exc:
        metrics.OFFERS_REJECTED.labels(exc.code).inc()
        raise


async def _answer_offer(request: Request) -> JSONResponse:
    hub = services_of(request).media
    hub.limiter.check(request, "call offers")
    body = await read_json(request, required=True, code="bad_request")
    if not isinstance(body, dict):
        raise BadOffer("the body must be a JSON object", code="bad_request")
    if body.get("type") != "offer":
        raise BadOffer("'type' must be \"offer\"", code="bad_request")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadOffer("'sdp' must be a non-empty string", code="bad_request")
    voice = _voice(request, body.get("voice"))
    validate_offer_sdp(sdp)  # before a call slot is taken: a bad offer never holds one
    # Counted from here until the call ends, so concurrent offers of one client count too.
    slot = hub.admit(client_key(request), request.app.state.settings.max_calls_per_client)
    try:
        def closed(ended: WebRtcCall) -> None:
            hub.calls.discard(ended)
            slot.release()

        call = WebRtcCall(hub.session_factory, voice=voice, on_closed=closed, connect_timeout=hub.connect_timeout,
                          client=slot.key)
        answer = await call.answer(sdp)
    except BaseException:
        slot.release()  # no call came of it (a call that did start releases its slot when it ends)
        raise
    hub.calls.add(call)
    if call.ended:  # hung up while we were answering
        hub.calls.discard(call)
    session = call.session
    assert session is not None
    return JSONResponse({"sdp": answer, "type": "answer", "sessionId": session.session_id,
                         "sessionToken": session.session_token})


async def ws_audio(websocket: WebSocket) -> None:
    """WebSocket audio transport (PCM s16le 16 kHz up, 24 kHz down, JSON text control frames)."""
    hub = services_of(websocket).media
    settings = websocket.app.state.settings
    slot: CallSlot | None = None
    try:
        try:
            check_origin(websocket, settings.allowed_origins, trust_proxy_headers=settings.trust_proxy_headers)
            key = client_key(websocket)
            if not hub.limiter.allow(key):
                raise ApiError("too many calls from this address; slow down and retry shortly",
                               status=429, code="rate_limited")
            slot = hub.admit(key, settings.max_calls_per_client)
            voice = _voice(websocket, websocket.query_params.get("voice"))
            output = WsOutput()
            session = await hub.session_factory.create(output, transport="websocket", voice=voice, client=key)
        except ApiError as exc:
            await _deny(websocket, exc)
            return
        try:
            await websocket.accept()
        except BaseException:  # the caller left during the handshake: release the session created for it
            with contextlib.suppress(Exception):
                await session.end("not-accepted")
            raise
        hub.ws_calls += 1
        try:
            await WsCall(websocket, session, output).run()
        finally:
            hub.ws_calls -= 1
    finally:
        if slot is not None:
            slot.release()


async def ws_probe(websocket: WebSocket) -> None:
    """WebSocket ``/ws/probe``: the web app's connectivity check (does a WebSocket get through to here?).

    Same host and ``/ws/`` prefix as ``/ws/audio``, so it crosses the same proxies and load-balancer
    rules, but it starts no voice session and holds nothing: accept, one text frame, close. Not rate
    limited with the calls, so a check never uses up the guest's budget for starting a call.
    """
    settings = websocket.app.state.settings
    try:
        check_origin(websocket, settings.allowed_origins, trust_proxy_headers=settings.trust_proxy_headers)
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "probe", "ok": True}))
    await websocket.close(1000)


async def _deny(websocket: WebSocket, exc: ApiError) -> None:
    """Refuse before accepting: an HTTP error response if the server supports it, else close 1013/1008."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status,
                                headers={"Retry-After": "1"} if exc.status in (429, 503) else None)
        await websocket.send_denial_response(response)
        return
    await websocket.close(CLOSE_TRY_AGAIN if exc.status in (429, 503) else 1008, exc.message[:120])


def routes() -> list[BaseRoute]:
    return [
        Route("/api/webrtc/offer", webrtc_offer, methods=["POST"]),
        WebSocketRoute("/ws/audio", ws_audio),
        WebSocketRoute("/ws/probe", ws_probe),
    ]
