"""Embedded AppSync Events gateway: ``POST /event`` and the WebSocket ``/event/realtime``.

Standalone mode has no AWS, yet the web app must use one events client everywhere. So the runtime
speaks the AppSync Events wire protocol itself
(https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html): the same handshake
(``aws-appsync-event-ws`` + ``header-<base64url(json)>`` subprotocols), the same message catalogue and
error shapes, one ``data`` frame per event per matching subscription with the event string unchanged.
No library implements the server side of this protocol, hence the hand-written server.

Authorization is the project's single rule set (``runtime.auth``): browsers present the staff token or
their guest ``sessionToken`` in the ``Authorization`` entry of the header map; it is checked at connect
and again on every subscribe (from the message's ``authorization`` map, else the connection's). Guests
may subscribe only to their own ``/conversations/<sessionId>``. A guest token is rechecked every second
for as long as its subscription lives; once it has expired the subscription ends with ``subscribe_error``
``UnauthorizedException``, the frame the official client (Amplify) surfaces.

Caps (settings ``EVENTS_MAX_*``): sockets per guest session, per staff credential and per client address
(refused with ``connection_error`` ``LimitExceededException``), and AppSync's 100 subscriptions per socket.
The official client's expectations - ``x-amzn-ErrorType`` on HTTP errors, a ``ka`` right after the ack,
1001 (not uvicorn's 1012) on shutdown - are explained in docs/events-gateway.md and tested with
aws-amplify itself in tests/events/test_events_amplify.py.

Publishing is server side only. The runtime publishes in-process with ``EventsGateway.publish``; an
out-of-process publisher (the stream-publisher Lambda run locally, the bench, ops tools) may publish
over HTTP or the socket only with the API key (``APPSYNC_API_KEY``, sent as ``x-api-key``), exactly as
it would to a real AppSync API. Without a configured key, HTTP/socket publishing is disabled. Browser
credentials, even staff ones, are always refused for publishing.

With several worker processes each worker has its own gateway; ``runtime.events.relay`` forwards
every publish to the sibling workers so a subscriber sees events whichever worker it is connected to.

Each connection has a bounded send queue drained by one writer task; a consumer too slow to keep up is
disconnected (close code 1013) instead of letting memory grow. Fan-out is a dictionary lookup per
channel and wildcard prefix, never a scan of all subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeGuard

import uvicorn
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from runtime.auth import Principal, authenticate, may_subscribe
from runtime.errors import EXCEPTION_HANDLERS, error_body
from runtime.events import channels
from runtime.events.protocol import HEADER_PREFIX, SUBPROTOCOL, decode_header_map
from runtime.events.relay import WorkerRelay
from runtime.metrics import EVENTS_PUBLISHED
from runtime.ratelimit import RateLimiter, client_key

if TYPE_CHECKING:
    from runtime.settings import Settings

log = logging.getLogger("runtime.events.gateway")

MAX_EVENTS_PER_PUBLISH = 5
MAX_EVENT_BYTES = 240 * 1024
UNAUTHORIZED_MESSAGE = "You are not authorized to make this call."
_ID_RE = re.compile(r"^[A-Za-z0-9\-_+]{1,128}$")
_CORS_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "POST, OPTIONS",
    "access-control-allow-headers": "content-type, x-api-key, authorization, x-amz-date, x-amz-security-token, "
                                    "x-amz-user-agent",
    "access-control-max-age": "600",
}
EXPIRED_MESSAGE = "Token expired: subscribe again with a fresh token"
# WebSocket close codes: 1008 policy violation (bad credentials, over a connection cap), 1013 try again later
# (slow consumer), 1001 going away (shutdown: reconnect, to another worker or task).
CLOSE_UNAUTHORIZED = 1008
CLOSE_SLOW_CONSUMER = 1013
CLOSE_GOING_AWAY = 1001
KA_FRAME = '{"type":"ka"}'


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _errors(error_type: str, message: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"errorType": error_type, "message": message, **extra}]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a header map: a browser ``principal`` and/or a server-side holder of the API key."""

    principal: Principal | None
    server: bool

    def may_subscribe(self, channel: str) -> bool:
        return self.server or may_subscribe(self.principal, channel)


@dataclass(slots=True)
class PublishOutcome:
    """AppSync's per-event publish result: ``successful`` and ``failed`` entries by event index."""

    successful: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "successful": self.successful}


class PublishRejected(Exception):
    """The whole publish request is refused (AppSync's request-level ``errors``)."""

    def __init__(self, error_type: str, message: str, status: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status


@dataclass(eq=False, slots=True)
class _Subscription:
    conn: _Connection
    id: str
    pattern: str
    id_json: str  # the id pre-encoded, so a data frame is built by concatenation
    headers: Mapping[str, Any]  # credential it was authorised with (re-checked for guests, which expire)
    recheck_at: float | None  # None: never expires (staff token or API key)


class _Connection:
    """One realtime socket: its subscriptions and a bounded outbound queue drained by one writer."""

    _ids = itertools.count(1)

    def __init__(self, ws: WebSocket, headers: Mapping[str, Any], queue_size: int, keepalive: float,
                 publish_rate: float, *, credential: str | None = None, address: str | None = None) -> None:
        self.number = next(self._ids)
        self.ws = ws
        self.headers = headers
        self.credential = credential  # key the per-credential cap counts this socket under (None: not capped)
        self.address = address  # key the per-client-address cap counts it under
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.subscriptions: dict[str, _Subscription] = {}
        self.keepalive = keepalive
        self.keepalive_on = False
        self.close_code = 1000
        self.close_reason = ""
        self.dropped = False
        self.writer: asyncio.Task[None] | None = None
        self.publishes = RateLimiter(publish_rate, max(1, int(publish_rate)))

    def start_keepalive(self) -> None:
        """First ``ka`` at once, then one every interval.

        Amplify judges the link by the time since the last ``ka``/``data``, measured from when its provider
        was created: a page that connects more than 65 s after loading would show ``ConnectedPendingKeepAlive``
        until the first periodic ``ka`` (docs/events-gateway.md).
        """
        if not self.keepalive_on:
            self.keepalive_on = True
            self.send(KA_FRAME)

    def send(self, message: Mapping[str, Any] | str) -> None:
        """Queue a frame; a full queue means the client cannot keep up, so it is dropped."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(message if isinstance(message, str) else _dumps(message))
        except asyncio.QueueFull:
            self.drop(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")

    def drop(self, code: int, reason: str) -> None:
        if self.dropped:
            return
        self.dropped = True
        self.close_code, self.close_reason = code, reason
        if self.writer is not None:
            self.writer.cancel()

    async def write_loop(self) -> None:
        """Drain the queue in order; once acknowledged (or subscribed), also send ``ka`` every interval."""
        loop = asyncio.get_running_loop()
        next_ka: float | None = None
        while True:
            if next_ka is None and self.keepalive_on:
                next_ka = loop.time() + self.keepalive
            if next_ka is None:
                frame = await self.queue.get()
            else:
                timeout = next_ka - loop.time()
                if timeout <= 0:
                    await self.ws.send_text(KA_FRAME)
                    next_ka = loop.time() + self.keepalive
                    continue
                try:
                    frame = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    continue
            await self.ws.send_text(frame)
            while not self.queue.empty() and (next_ka is None or loop.time() < next_ka):  # backlog: no timer
                await self.ws.send_text(self.queue.get_nowait())


class EventsGateway:
    """In-process AppSync Events server: subscriptions, fan-out and the two transports."""

    def __init__(
        self,
        *,
        staff_token: str | None,
        session_secret: str | None,
        api_key: str | None = None,
        keepalive_seconds: float = 60.0,
        connection_timeout_ms: int = 300_000,
        max_subscriptions_per_connection: int = 100,  # AppSync's quota "Subscriptions per connection": 100
        max_connections_per_guest: int = 4,
        max_connections_per_staff_credential: int = 32,
        max_connections_per_client: int = 64,
        send_queue_size: int = 256,
        max_frame_bytes: int = 1_300_000,  # below `serve`'s ws_max_size (1.4 MB), so we answer first
        guest_recheck_seconds: float = 1.0,
        http_rate_per_second: float = 200.0,
        socket_publish_rate: float = 25.0,  # AppSync quota: 25 publish requests / s per connection
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < keepalive_seconds <= 60:
            raise ValueError("keepalive_seconds must be in (0, 60]: clients give up after ~65 s of silence")
        self.staff_token = staff_token
        self.session_secret = session_secret
        self.api_key = api_key
        self.keepalive_seconds = keepalive_seconds
        self.connection_timeout_ms = connection_timeout_ms
        self.max_subscriptions = max_subscriptions_per_connection
        self.max_connections_per_guest = max_connections_per_guest
        self.max_connections_per_staff_credential = max_connections_per_staff_credential
        self.max_connections_per_client = max_connections_per_client
        self.send_queue_size = send_queue_size
        self.max_frame_bytes = max_frame_bytes
        self.guest_recheck_seconds = guest_recheck_seconds
        self.clock = clock
        self.socket_publish_rate = socket_publish_rate
        self._http_limiter = RateLimiter(http_rate_per_second, int(http_rate_per_second * 2))
        self._index: dict[str, set[_Subscription]] = {}
        self._connections: set[_Connection] = set()
        self._per_credential: Counter[str] = Counter()
        self._per_address: Counter[str] = Counter()
        self._expiring: set[_Subscription] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self._shutdown_hook_tried = False
        self.relay: WorkerRelay | None = None  # set when the runtime runs several worker processes

    @staticmethod
    def options_from_settings(settings: Settings) -> dict[str, Any]:
        """The constructor arguments the ``EVENTS_*`` settings give (caps; docs/events-gateway.md)."""
        return {
            "max_subscriptions_per_connection": settings.events_max_subscriptions_per_connection,
            "max_connections_per_guest": settings.events_max_connections_per_guest,
            "max_connections_per_staff_credential": settings.events_max_connections_per_staff_credential,
            "max_connections_per_client": settings.events_max_connections_per_client,
        }

    @classmethod
    def from_settings(cls, settings: Settings, *, staff_token: str | None, session_secret: str | None,
                      api_key: str | None) -> EventsGateway:
        """The gateway ``serve`` runs, with the EVENTS_* limits of ``runtime.settings.Settings``."""
        return cls(staff_token=staff_token, session_secret=session_secret, api_key=api_key,
                   **cls.options_from_settings(settings))

    # --- observability ------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def subscription_count(self) -> int:
        return sum(len(subs) for subs in self._index.values())

    # --- authorization -----------------------------------------------------------------------

    def caller(self, headers: Mapping[str, Any] | None) -> Caller | None:
        """Resolve an AppSync header map (``Authorization`` / ``x-api-key``, any case) to a Caller."""
        if not headers:
            return None
        lowered = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
        key = lowered.get("x-api-key")
        server = bool(self.api_key and key and hmac.compare_digest(key.encode(), self.api_key.encode()))
        principal = authenticate(lowered.get("authorization"), staff_token=self.staff_token,
                                 session_secret=self.session_secret, now=self.clock())
        if not server and principal is None:
            return None
        return Caller(principal, server)

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, channel: str, payload: Any) -> PublishOutcome:
        """Server-side publish of one JSON-serialisable payload (what local change capture calls)."""
        return self.publish_events(channel, [json.dumps(payload, separators=(",", ":"))])

    def publish_events(self, channel: object, events: object, *, from_sibling: bool = False) -> PublishOutcome:
        """Validate and fan out 1-5 stringified JSON events; raise PublishRejected for the request.

        Accepted events also go to the sibling workers' gateways through ``relay`` (when set), unless
        they came from a sibling in the first place.
        """
        try:
            path = channels.normalize(channel, allow_wildcard=False)
        except channels.ChannelError as exc:
            raise PublishRejected("BadRequestException", str(exc), 400) from exc
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS_PER_PUBLISH:
            raise PublishRejected("BadRequestException",
                                  f"events must be a list of 1 to {MAX_EVENTS_PER_PUBLISH} JSON strings", 400)
        outcome = PublishOutcome()
        accepted: list[str] = []
        for index, event in enumerate(events):
            identifier = str(uuid.uuid4())
            problem = _event_problem(event)
            if problem is not None:
                code, message = problem
                outcome.failed.append({"code": code, "identifier": identifier, "index": index, "message": message})
                continue
            outcome.successful.append({"identifier": identifier, "index": index})
            accepted.append(event)
        if accepted:
            self._fan_out(path, accepted)
            if not from_sibling:
                EVENTS_PUBLISHED.labels(channels.namespace_of(path)).inc(len(accepted))
                if self.relay is not None:
                    self.relay.send(path, accepted)
        return outcome

    def deliver_from_sibling(self, channel: str, events: list[str]) -> None:
        """Relay callback: a sibling worker published these; deliver to this worker's subscribers only."""
        try:
            self.publish_events(channel, events, from_sibling=True)
        except PublishRejected as exc:
            log.warning("relayed publish refused: %s", exc.message)

    def _fan_out(self, channel: str, events: Sequence[str]) -> None:
        subscriptions: list[_Subscription] = []
        for pattern in (channel, *channels.wildcard_patterns_for(channel)):
            subscriptions.extend(self._index.get(pattern, ()))
        if not subscriptions:
            return
        now = self.clock()
        live = [s for s in subscriptions if s.recheck_at is None or s.recheck_at > now or self._still_allowed(s, now)]
        for event in events:
            encoded = json.dumps(event)  # the event string, unchanged, as a JSON string value
            for sub in live:
                sub.conn.send('{"type":"data","id":' + sub.id_json + ',"event":' + encoded + "}")

    def _still_allowed(self, sub: _Subscription, now: float) -> bool:
        """A subscription outliving its credential gets ``subscribe_error`` and ends.

        ``subscribe_error`` (not ``broadcast_error``): it is the per-subscription authorization failure AppSync
        sends and the only one Amplify surfaces - it errors the subscription's observer; Amplify ignores
        ``broadcast_error``, so the subscription would go silently dead (docs/events-gateway.md).
        """
        caller = self.caller(sub.headers)
        if caller is not None and caller.may_subscribe(sub.pattern):
            sub.recheck_at = now + self.guest_recheck_seconds
            return True
        sub.conn.send({"type": "subscribe_error", "id": sub.id,
                       "errors": _errors("UnauthorizedException", EXPIRED_MESSAGE)})
        self._remove(sub)
        return False

    def _expires(self, caller: Caller) -> bool:
        """Whether subscriptions authorised by ``caller`` are rechecked until their credential expires.

        Guest tokens always expire. The API key and the shared staff token do not; a subclass whose staff
        credentials expire (and can be verified without an outage ending the subscription) may say so.
        """
        return not caller.server and not (caller.principal is not None and caller.principal.is_staff)

    async def _sweep_expired(self) -> None:
        """Recheck every expiring subscription each ``guest_recheck_seconds`` until none is left."""
        while self._expiring:
            await asyncio.sleep(self.guest_recheck_seconds)
            now = self.clock()
            for sub in list(self._expiring):
                if sub.recheck_at is not None and sub.recheck_at <= now:
                    self._still_allowed(sub, now)

    # --- subscriptions -----------------------------------------------------------------------

    def _add(self, sub: _Subscription) -> None:
        sub.conn.subscriptions[sub.id] = sub
        self._index.setdefault(sub.pattern, set()).add(sub)
        if sub.recheck_at is not None:
            self._expiring.add(sub)
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep_expired())

    def _remove(self, sub: _Subscription) -> None:
        sub.conn.subscriptions.pop(sub.id, None)
        self._expiring.discard(sub)
        bucket = self._index.get(sub.pattern)
        if bucket is not None:
            bucket.discard(sub)
            if not bucket:
                del self._index[sub.pattern]

    # --- WebSocket transport -------------------------------------------------------------------

    async def serve_websocket(self, ws: WebSocket) -> None:
        if SUBPROTOCOL not in ws.scope.get("subprotocols", []) or self._closing:
            await ws.close(code=CLOSE_UNAUTHORIZED)  # before accept: the upgrade is refused (HTTP 403)
            return
        self._install_shutdown_hook()
        await ws.accept(subprotocol=SUBPROTOCOL)
        headers = _handshake_headers(ws)
        caller = self.caller(headers) if headers is not None else None
        if headers is None or caller is None:
            await self._refuse_connection(ws, "UnauthorizedException", UNAUTHORIZED_MESSAGE, 401)
            return
        credential, credential_cap = self._credential_key(caller, headers)
        address = client_key(ws)
        if self._per_address[address] >= self.max_connections_per_client:
            await self._refuse_connection(ws, "LimitExceededException", "Too many connections from this client; "
                                          f"at most {self.max_connections_per_client}", 429)
            return
        if credential is not None and self._per_credential[credential] >= credential_cap:
            await self._refuse_connection(ws, "LimitExceededException", "Too many connections with this "
                                          f"credential; at most {credential_cap}", 429)
            return
        conn = _Connection(ws, headers, self.send_queue_size, self.keepalive_seconds, self.socket_publish_rate,
                           credential=credential, address=address)
        self._connections.add(conn)
        self._per_address[address] += 1
        if credential is not None:
            self._per_credential[credential] += 1
        conn.writer = asyncio.create_task(conn.write_loop())
        reader = asyncio.create_task(self._read_loop(conn))
        try:
            await asyncio.wait({conn.writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (conn.writer, reader):
                task.cancel()
            await asyncio.gather(conn.writer, reader, return_exceptions=True)
            for sub in list(conn.subscriptions.values()):
                self._remove(sub)
            self._connections.discard(conn)
            _release(self._per_address, conn.address)
            _release(self._per_credential, conn.credential)
            with contextlib.suppress(Exception):
                await ws.close(code=conn.close_code, reason=conn.close_reason or None)

    async def _refuse_connection(self, ws: WebSocket, error_type: str, message: str, code: int) -> None:
        """AppSync's ``connection_error`` (its ``errorCode`` is HTTP-like), then close."""
        await ws.send_text(_dumps({"type": "connection_error",
                                   "errors": _errors(error_type, message, errorCode=code)}))
        await ws.close(code=CLOSE_UNAUTHORIZED)

    def _credential_key(self, caller: Caller, headers: Mapping[str, Any]) -> tuple[str | None, int]:
        """What the per-credential connection cap counts a socket under, and that cap.

        A guest is counted by session (one page needs one socket; a few allow reconnect overlap and a second
        tab), whatever token of that session it shows. Staff by a digest of the credential: with the shared
        STAFF_TOKEN every staff screen counts under it, with per-user sign-in each user has their own. The
        API key is the server-side publisher's, not a browser's: not capped per credential.
        """
        principal = caller.principal
        if principal is None:
            return None, 0
        if principal.is_staff:
            lowered = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
            digest = hashlib.sha256(str(lowered.get("authorization", "")).encode()).hexdigest()[:32]
            return f"staff:{digest}", self.max_connections_per_staff_credential
        return f"guest:{principal.session_id}", self.max_connections_per_guest

    async def _read_loop(self, conn: _Connection) -> None:
        while True:
            try:
                message = await conn.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                conn.send({"type": "error", "errors": _errors(
                    "UnsupportedOperation", "Binary frames are not supported; send JSON text frames")})
                continue
            if len(text) > self.max_frame_bytes:
                conn.send({"type": "error", "errors": _errors(
                    "BadRequestException", f"Message is larger than {self.max_frame_bytes} bytes")})
                continue
            try:
                frame = json.loads(text)
            except ValueError:
                frame = None
            if not isinstance(frame, dict):
                conn.send({"type": "error", "errors": _errors("BadRequestException", "Message is not a JSON object")})
                continue
            self._handle(conn, frame)

    def _handle(self, conn: _Connection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "connection_init":
            conn.send({"type": "connection_ack", "connectionTimeoutMs": self.connection_timeout_ms})
            conn.start_keepalive()
        elif kind == "subscribe":
            self._subscribe(conn, frame)
        elif kind == "unsubscribe":
            self._unsubscribe(conn, frame)
        elif kind == "publish":
            self._socket_publish(conn, frame)
        elif kind == "ka":
            pass
        else:
            reply: dict[str, Any] = {"type": "error"}
            if isinstance(frame.get("id"), str):
                reply["id"] = frame["id"]
            reply["errors"] = _errors(
                "UnsupportedOperation", f"Operation {str(kind)[:64]!r} is not supported through the realtime channel")
            conn.send(reply)

    def _subscribe(self, conn: _Connection, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")

        def refuse(error_type: str, message: str) -> None:
            conn.send({"type": "subscribe_error", "id": sub_id if isinstance(sub_id, str) else None,
                       "errors": _errors(error_type, message)})

        if not isinstance(sub_id, str) or not _ID_RE.fullmatch(sub_id):
            refuse("BadRequestException", "Subscription id must be 1-128 characters of [A-Za-z0-9-_+]")
            return
        try:
            pattern = channels.normalize(frame.get("channel"), allow_wildcard=True)
        except channels.ChannelError as exc:
            refuse("BadRequestException", str(exc))
            return
        headers = _message_headers(frame, conn)
        caller = self.caller(headers)
        if caller is None or not caller.may_subscribe(pattern):
            refuse("UnauthorizedException", UNAUTHORIZED_MESSAGE)
            return
        if sub_id in conn.subscriptions:
            refuse("ConflictException", "Subscription id is already in use on this connection")
            return
        if len(conn.subscriptions) >= self.max_subscriptions:
            refuse("LimitExceededException", f"At most {self.max_subscriptions} subscriptions per connection")
            return
        # Rechecked ones are swept every guest_recheck_seconds, so an expired one is told at once, not at the
        # next event.
        recheck = self.clock() + self.guest_recheck_seconds if self._expires(caller) else None
        self._add(_Subscription(conn, sub_id, pattern, json.dumps(sub_id), headers, recheck))
        conn.send({"type": "subscribe_success", "id": sub_id})
        conn.start_keepalive()

    def _unsubscribe(self, conn: _Connection, frame: dict[str, Any]) -> None:
        sub_id = frame.get("id")
        sub = conn.subscriptions.get(sub_id) if isinstance(sub_id, str) else None
        if sub is None:
            conn.send({"type": "unsubscribe_error", "id": sub_id if isinstance(sub_id, str) else None,
                       "errors": _errors("UnknownOperationError", "Unknown operation id")})
            return
        self._remove(sub)
        conn.send({"type": "unsubscribe_success", "id": sub_id})

    def _socket_publish(self, conn: _Connection, frame: dict[str, Any]) -> None:
        pub_id = frame.get("id")

        def refuse(error_type: str, message: str) -> None:
            conn.send({"type": "publish_error", "id": pub_id if isinstance(pub_id, str) else None,
                       "errors": _errors(error_type, message)})

        if not isinstance(pub_id, str) or not _ID_RE.fullmatch(pub_id):
            refuse("BadRequestException", "Publish id must be 1-128 characters of [A-Za-z0-9-_+]")
            return
        caller = self.caller(_message_headers(frame, conn))
        if caller is None or not caller.server:
            refuse("UnauthorizedException", "Publishing is server side only; browser credentials cannot publish")
            return
        if not conn.publishes.allow("publish"):
            refuse("LimitExceededException", "Too many publish requests per second on this connection")
            return
        try:
            outcome = self.publish_events(frame.get("channel"), frame.get("events"))
        except PublishRejected as exc:
            refuse(exc.error_type, exc.message)
            return
        conn.send({"type": "publish_success", "id": pub_id, **outcome.as_dict()})

    # --- HTTP transport ------------------------------------------------------------------------

    async def serve_http(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=_CORS_HEADERS)
        if not self._http_limiter.allow(client_key(request)):
            return _http_error(429, "TooManyRequestsException", "Too many publish requests; retry shortly")
        if not self.api_key:
            return _http_error(401, "UnauthorizedException",
                               "HTTP publishing is disabled: set APPSYNC_API_KEY for server-side publishers")
        caller = self.caller(dict(request.headers))
        if caller is None or not caller.server:
            return _http_error(401, "UnauthorizedException", UNAUTHORIZED_MESSAGE)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return _http_error(400, "BadRequestException", "Request body is not valid JSON")
        if not isinstance(body, dict):
            return _http_error(400, "BadRequestException", 'Request body must be {"channel": ..., "events": [...]}')
        try:
            outcome = self.publish_events(body.get("channel"), body.get("events"))
        except PublishRejected as exc:
            return _http_error(exc.status, exc.error_type, exc.message)
        return JSONResponse(outcome.as_dict(), headers=_CORS_HEADERS)

    # --- lifecycle ---------------------------------------------------------------------------

    def disconnect_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """End every connection (clients reconnect and subscribe again)."""
        for conn in list(self._connections):
            conn.drop(code, reason)

    async def close(self) -> None:
        """Shutdown: end every connection with 1001 so clients reconnect elsewhere."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.disconnect_all()
        for _ in range(50):
            if not self._connections:
                break
            await asyncio.sleep(0.02)

    def _install_shutdown_hook(self) -> None:
        """Close the sockets with 1001 *before* uvicorn closes them with 1012 on SIGTERM/SIGINT.

        uvicorn's shutdown sends every open WebSocket close 1012 first and runs the app's lifespan shutdown
        (where ``close`` used to run) only afterwards, so clients never saw the gateway's 1001. There is no
        earlier hook in uvicorn, so the gateway wraps uvicorn's own signal handler (installed with
        ``signal.signal`` while the server runs): on the signal it closes its sockets, then hands the signal
        on to uvicorn. It only ever wraps uvicorn's handler (or another gateway's wrapper), in the main thread,
        and uvicorn restores the original handler when it stops.
        """
        if self._shutdown_hook_tried:
            return
        self._shutdown_hook_tried = True
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if _is_uvicorn_exit_handler(previous):
                signal.signal(signum, _ShutdownHook(self, loop, previous))


SignalHandler = Callable[[int, FrameType | None], Any]


def _is_uvicorn_exit_handler(handler: object) -> TypeGuard[SignalHandler]:
    if isinstance(handler, _ShutdownHook):
        return True
    return isinstance(getattr(handler, "__self__", None), uvicorn.Server) and \
        getattr(handler, "__name__", "") == "handle_exit"


class _ShutdownHook:
    """Signal handler: close the gateway's sockets (1001), then pass the signal on to uvicorn's handler."""

    GRACE_SECONDS = 2.0  # bound on how long uvicorn's shutdown waits for the gateway (close() takes <= ~1 s)

    def __init__(self, gateway: EventsGateway, loop: asyncio.AbstractEventLoop, previous: SignalHandler) -> None:
        self.gateway = gateway
        self.loop = loop
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.gateway._closing or self.loop.is_closed():  # second signal (force exit), or already closing
            self.previous(signum, frame)
            return
        self.gateway._closing = True  # refuse new sockets from now on
        # From a signal handler only call_soon_threadsafe is safe; the close itself runs as a task.
        self.loop.call_soon_threadsafe(self._start, signum, frame)

    def _start(self, signum: int, frame: FrameType | None) -> None:
        task = self.loop.create_task(self._close_then_forward(signum, frame))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _close_then_forward(self, signum: int, frame: FrameType | None) -> None:
        try:
            await asyncio.wait_for(self.gateway.close(), self.GRACE_SECONDS)
        except Exception:
            log.warning("closing the events gateway before shutdown failed", exc_info=True)
        finally:
            self.previous(signum, frame)


_BACKGROUND: set[asyncio.Task[None]] = set()


def _release(counter: Counter[str], key: str | None) -> None:
    if key is None:
        return
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _event_problem(event: object) -> tuple[str, str] | None:
    if not isinstance(event, str):
        return "BadRequestException", "Event must be a string containing JSON"
    if len(event) > MAX_EVENT_BYTES or len(event.encode()) > MAX_EVENT_BYTES:
        return "EventTooLargeException", "Event is larger than 240KB"
    try:
        json.loads(event)
    except ValueError:
        return "BadRequestException", "Invalid JSON"
    return None


def _handshake_headers(ws: WebSocket) -> dict[str, Any] | None:
    """Auth of the upgrade: ``header-`` subprotocol, else upgrade headers, else ``?header=``."""
    for protocol in ws.scope.get("subprotocols", []):
        if protocol.startswith(HEADER_PREFIX):
            return decode_header_map(protocol[len(HEADER_PREFIX):])
    upgrade = {k: v for k, v in ws.headers.items() if k in ("authorization", "x-api-key", "host")}
    if "authorization" in upgrade or "x-api-key" in upgrade:
        return upgrade
    query = ws.query_params.get("header")
    if query:
        return decode_header_map(query)
    return None


def _message_headers(frame: Mapping[str, Any], conn: _Connection) -> Mapping[str, Any]:
    authorization = frame.get("authorization")
    return authorization if isinstance(authorization, dict) else conn.headers


def _http_error(status: int, error_type: str, message: str) -> JSONResponse:
    """AppSync's request-level ``errors`` plus the project's ``error`` object, so both kinds of client cope."""
    body = {"errors": _errors(error_type, message), **error_body(_ERROR_CODES.get(status, "bad_request"), message)}
    # AppSync names the error in x-amzn-ErrorType; Amplify's REST error parser takes the error's name from it
    # (else "UnknownError"). CORS must expose it, or a browser's fetch cannot read it.
    headers = {**_CORS_HEADERS, "x-amzn-errortype": error_type, "access-control-expose-headers": "x-amzn-ErrorType"}
    if status == 429:
        headers["retry-after"] = "1"
    return JSONResponse(body, status_code=status, headers=headers)


_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 429: "rate_limited"}


# --- routes ---------------------------------------------------------------------------------------

GatewayOf = Callable[[HTTPConnection], "EventsGateway | None"]


async def _http_endpoint(gateway_of: GatewayOf, request: Request) -> Response:
    """Publish events (AppSync Events HTTP API; server-side publishers with the API key).
    ---
    summary: Publish 1-5 events to a channel (AppSync Events protocol; x-api-key required)
    responses:
      200: {description: '{"successful":[{identifier,index}],"failed":[{identifier,index,code,message}]}'}
      400: {description: 'request-level {"errors":[{errorType,message}]}'}
      204: {description: 'CORS preflight answered (OPTIONS)'}
      401: {description: 'missing/invalid API key, or a browser credential'}
    """
    gateway = gateway_of(request)
    if gateway is None:
        return JSONResponse(error_body("not_found", "events are served by AWS AppSync in this deployment; "
                                       "see GET /api/config"), status_code=404)
    return await gateway.serve_http(request)


async def _ws_endpoint(gateway_of: GatewayOf, ws: WebSocket) -> None:
    gateway = gateway_of(ws)
    if gateway is None:
        await ws.close(code=CLOSE_UNAUTHORIZED)
        return
    await gateway.serve_websocket(ws)


def routes(gateway_of: GatewayOf) -> list[BaseRoute]:
    """``POST /event`` and ``/event/realtime``, served by the gateway ``gateway_of`` returns (None: AWS mode)."""

    async def http_endpoint(request: Request) -> Response:
        return await _http_endpoint(gateway_of, request)

    async def ws_endpoint(ws: WebSocket) -> None:
        await _ws_endpoint(gateway_of, ws)

    http_endpoint.__doc__ = _http_endpoint.__doc__  # the OpenAPI document reads the endpoint's docstring
    return [
        Route("/event", http_endpoint, methods=["POST", "OPTIONS"]),
        WebSocketRoute("/event/realtime", ws_endpoint),
    ]


def standalone_app(gateway: EventsGateway) -> Starlette:
    """The gateway alone as an ASGI app: a local stand-in for an AppSync Events API (tests, bench)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.close()

    return Starlette(routes=routes(lambda _conn: gateway), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)


