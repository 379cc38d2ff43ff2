"""A local AppSync Events API configured the way the Pulumi program configures the deployed one.

The deployed API (``platform/concierge_platform/events.py``) has two auth providers and nothing else:

- publishing is ``AWS_IAM`` only: the stream-publisher Lambda signs ``POST /event`` with SigV4 (service
  ``appsync``) using its role's temporary credentials; there is no API key;
- connecting and subscribing go through the ``AWS_LAMBDA`` authorizer (``runtime.events.authorizer``),
  which AppSync calls with the browser's ``Authorization`` value for ``EVENT_CONNECT`` and every
  ``EVENT_SUBSCRIBE``.

The embedded gateway of the runtime (``runtime.events.gateway``) already speaks the wire protocol, so this
module reuses it for subscriptions and fan-out and replaces only its two standalone conveniences: the API
key (gone, as in the deployed API) and the direct ``runtime.auth`` check (replaced by calls to the real
authorizer handler). Publishing is verified here: every request must carry a SigV4 signature made with
credentials a ``CredentialBook`` issued, not expired, with their session token, over exactly the bytes
received, within five minutes of now; otherwise it gets 403 with the IAM error AWS names. Publishing to
a namespace the program did not declare is a 400, as AppSync answers for an unknown namespace.

SigV4 verification is ``emulators.sigv4.verify_request`` (botocore recomputes the signature), the same
checks the Nova Sonic emulator applies, in AWS's order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from emulators.identity import CredentialBook
from emulators.sigv4 import SigV4Error, verify_request
from runtime.auth import Principal
from runtime.events import authorizer, channels
from runtime.events.gateway import Caller, EventsGateway, PublishRejected


@dataclass(frozen=True)
class _AuthorizedCaller(Caller):
    """A browser the Lambda authorizer let connect; each subscribe asks the authorizer again, as AppSync does."""

    token: str = ""

    def may_subscribe(self, channel: str) -> bool:
        return _authorize("EVENT_SUBSCRIBE", self.token, channel)


def _authorize(operation: str, token: str, channel: str | None = None) -> bool:
    request: dict[str, Any] = {"apiId": "local", "accountId": "123456789012", "requestId": "local",
                               "operation": operation}
    if channel is not None:
        request.update({"channel": channel, "channelNamespaceName": channels.namespace_of(channel)})
    decision = authorizer.handler({"authorizationToken": token, "requestContext": request, "requestHeaders": {}})
    return decision.get("isAuthorized") is True


class AuthorizerGateway(EventsGateway):
    """The embedded gateway with the deployed API's auth: no API key, the Lambda authorizer for browsers."""

    def caller(self, headers: Mapping[str, Any] | None) -> Caller | None:
        if not headers:
            return None
        lowered = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
        token = lowered.get("authorization")
        if not token:
            return None  # there is no API key provider on the deployed API
        decision = authorizer.handler({"authorizationToken": token, "requestContext": {
            "apiId": "local", "accountId": "123456789012", "requestId": "local", "operation": "EVENT_CONNECT"},
            "requestHeaders": {}})
        if decision.get("isAuthorized") is not True:
            return None
        context = decision.get("handlerContext") or {}
        principal = Principal(kind=context.get("kind", "guest"), session_id=context.get("sessionId"))
        return _AuthorizedCaller(principal, False, token)


@dataclass
class PublishLog:
    """What the IAM-authenticated publish endpoint saw (the rehearsal's report reads it)."""

    accepted: int = 0
    refused: list[str] = field(default_factory=list)  # the IAM error code of each refused request
    keys: list[str] = field(default_factory=list)  # distinct access keys that signed accepted requests
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalEventsApi:
    """``app`` is the ASGI app: ``POST /event`` (SigV4-verified) and ``WS /event/realtime`` (authorizer)."""

    def __init__(self, book: CredentialBook, *, namespaces: Sequence[str], region: str = "us-east-1",
                 keepalive_seconds: float = 60.0) -> None:
        self.book = book
        self.namespaces = tuple(namespaces)
        self.region = region
        self.gateway = AuthorizerGateway(staff_token=None, session_secret=None, api_key=None,
                                         keepalive_seconds=keepalive_seconds)
        self.log = PublishLog()
        self.app = Starlette(routes=[Route("/event", self._publish, methods=["POST"]),
                                     WebSocketRoute("/event/realtime", self.gateway.serve_websocket)])

    async def _publish(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verified = verify_request(method="POST", path=request.scope.get("raw_path", b"/event").decode(),
                                      query=request.scope.get("query_string", b"").decode(), headers=headers,
                                      book=self.book, service="appsync", region=self.region, body=body)
        except SigV4Error as exc:
            with self.log.lock:
                self.log.refused.append(exc.code)
            return JSONResponse({"errors": [{"errorType": exc.code, "message": exc.message}]},
                                status_code=exc.status, headers={"x-amzn-errortype": exc.code})
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "BadRequestException", "Request body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "BadRequestException", 'Request body must be {"channel": ..., "events": [...]}')
        try:
            channel = channels.normalize(payload.get("channel"), allow_wildcard=False)
        except channels.ChannelError as exc:
            return _error(400, "BadRequestException", str(exc))
        if channels.namespace_of(channel) not in self.namespaces:
            return _error(400, "BadRequestException", f"Channel namespace {channels.namespace_of(channel)!r} "
                                                      "does not exist on this API")
        try:
            outcome = self.gateway.publish_events(channel, payload.get("events"))
        except PublishRejected as exc:
            return _error(exc.status, exc.error_type, exc.message)
        with self.log.lock:
            self.log.accepted += 1
            key = verified.credentials.access_key_id
            if key not in self.log.keys:
                self.log.keys.append(key)
        return JSONResponse(outcome.as_dict())

    async def close(self) -> None:
        await self.gateway.close()


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"errorType": error_type, "message": message}]}, status_code=status)
