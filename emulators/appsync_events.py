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

Cognito mode (``cognito=CognitoAuth(...)``, the deployed API with ``staffAuth: cognito``): a third provider,
``AMAZON_COGNITO_USER_POOLS``, checks a user-pool JWT as AppSync does - RS256 signature by a key of the pool's
JWKS, ``iss`` of the pool, ``exp``, and ``appIdClientRegex`` against the token's client (``client_id`` of an access
token, ``aud`` of an id token); AppSync itself checks no group. Connecting takes LAMBDA or COGNITO; subscribing
takes the namespace's modes (``restaurant-booking``: COGNITO only, so a guest's session token is refused there;
``conversations``: LAMBDA + COGNITO). Then the namespace's ``onSubscribe`` handler runs: the SAME file the
platform deploys, ``platform/concierge_platform/appsync/staff_only.js``, executed by Node (``AppSyncJsHandler``)
with the documented ``ctx`` (identity, info) and an ``@aws-appsync/utils`` whose ``util.unauthorized()`` refuses.
Node rather than a Python port of the rule: a port would test the port, not the code AppSync runs.
https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html ,
https://docs.aws.amazon.com/appsync/latest/eventapi/context-reference.html
"""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from emulators.identity import CredentialBook
from emulators.sigv4 import SigV4Error, verify_request
from runtime.auth import Principal, bearer_value
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


STAFF_ONLY_JS = Path(__file__).resolve().parent.parent / "platform" / "concierge_platform" / "appsync" / "staff_only.js"
# Subscribe auth modes per namespace, as the platform configures them with staffAuth=cognito.
COGNITO_SUBSCRIBE_MODES: Mapping[str, tuple[str, ...]] = {
    "restaurant-booking": ("AMAZON_COGNITO_USER_POOLS",),
    "conversations": ("AWS_LAMBDA", "AMAZON_COGNITO_USER_POOLS"),
}

_UTILS_SHIM = """\
// The part of @aws-appsync/utils the handlers use, for running them locally (emulators/appsync_events.py).
export class UnauthorizedError extends Error {
  constructor() { super("Unauthorized"); this.appsyncUnauthorized = true; }
}
export const util = {
  unauthorized() { throw new UnauthorizedError(); },
  error(message, type) { const e = new Error(message); e.appsyncErrorType = type; throw e; },
};
"""

_RUNNER = """\
// Reads one ctx per line, runs the handler's onSubscribe, answers {"ok"} or {"error"} per line.
import { createInterface } from "node:readline";
const mod = await import(new URL("./handler.mjs", import.meta.url).href);
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply;
  try {
    if (typeof mod.onSubscribe === "function") { mod.onSubscribe(JSON.parse(line)); }
    reply = { ok: true };
  } catch (e) {
    reply = e && e.appsyncUnauthorized ? { ok: false, error: "Unauthorized" }
                                       : { ok: false, error: String((e && e.message) || e) };
  }
  process.stdout.write(JSON.stringify(reply) + "\\n");
}
"""


class AppSyncJsHandler:
    """A namespace's APPSYNC_JS handler file run by one long-lived Node process (one ctx per line).

    The file is copied next to a minimal ``@aws-appsync/utils`` so its own ``import`` resolves unchanged. The
    APPSYNC_JS runtime's language restrictions are not enforced here (the handler keeps to plain syntax).
    """

    def __init__(self, code: Path, *, timeout_seconds: float = 5.0) -> None:
        self.code = code
        self.timeout = timeout_seconds
        self._dir = Path(tempfile.mkdtemp(prefix="appsync-js-"))
        utils = self._dir / "node_modules" / "@aws-appsync" / "utils"
        utils.mkdir(parents=True)
        (utils / "package.json").write_text(json.dumps({"name": "@aws-appsync/utils", "type": "module",
                                                        "exports": "./index.js"}))
        (utils / "index.js").write_text(_UTILS_SHIM)
        (self._dir / "handler.mjs").write_text(code.read_text())
        (self._dir / "runner.mjs").write_text(_RUNNER)
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is needed to run AppSync JS handlers locally")
        self._proc = subprocess.Popen([node, str(self._dir / "runner.mjs")], stdin=subprocess.PIPE,  # noqa: S603
                                      stdout=subprocess.PIPE, cwd=self._dir)
        self._lock = threading.Lock()
        self.calls = 0

    def on_subscribe(self, ctx: Mapping[str, Any]) -> bool:
        """True when the handler lets the subscription through; False when it refuses or fails."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        with self._lock:
            self.calls += 1
            try:
                self._proc.stdin.write(json.dumps(ctx).encode() + b"\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return False
            ready, _, _ = select.select([self._proc.stdout], [], [], self.timeout)
            line = self._proc.stdout.readline() if ready else b""
        try:
            reply = json.loads(line)
        except ValueError:
            return False
        return reply.get("ok") is True

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@dataclass(frozen=True)
class CognitoAuth:
    """The API's ``AMAZON_COGNITO_USER_POOLS`` provider (``cognitoConfig``) and where its JWKS is served."""

    user_pool_id: str
    region: str
    app_id_client_regex: str
    jwks_url: str

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"


class _UserPoolTokens:
    """AppSync's user-pool JWT check: signature (JWKS, refetched on an unknown kid), iss, exp, client regex."""

    def __init__(self, auth: CognitoAuth) -> None:
        self.auth = auth
        self._keys: KeySet | None = None
        self._lock = threading.Lock()

    def _keyset(self, kid: str) -> KeySet | None:
        with self._lock:
            if self._keys is None or kid not in {k.kid for k in self._keys.keys}:
                try:
                    response = httpx.get(self.auth.jwks_url, timeout=3.0)
                    response.raise_for_status()
                    self._keys = KeySet.import_key_set(response.json())
                except (httpx.HTTPError, ValueError, JoseError):
                    return None
            return self._keys

    def identity(self, token: str) -> dict[str, Any] | None:
        """The handler's Cognito identity for a valid token, else None."""
        try:
            kid = jws.extract_compact(token.encode("ascii")).protected.get("kid")
            keys = self._keyset(str(kid)) if isinstance(kid, str) else None
            if keys is None:
                return None
            claims = jwt.decode(token, keys, algorithms=["RS256"]).claims
        except (JoseError, ValueError, UnicodeError, TypeError):
            return None
        token_use = claims.get("token_use")
        client = claims.get("client_id") if token_use == "access" else claims.get("aud")  # noqa: S105
        exp = claims.get("exp")
        if (claims.get("iss") != self.auth.issuer or token_use not in ("access", "id")
                or not isinstance(client, str) or not re.fullmatch(self.auth.app_id_client_regex, client)
                or not isinstance(exp, int | float) or exp <= time.time()):
            return None
        groups = claims.get("cognito:groups")
        return {"sub": claims.get("sub"), "issuer": claims.get("iss"),
                "username": claims.get("username") or claims.get("cognito:username"), "claims": claims,
                "sourceIp": ["127.0.0.1"], "defaultAuthStrategy": "ALLOW",
                "groups": groups if isinstance(groups, list) else None}


def _handler_ctx(channel: str, identity: Mapping[str, Any]) -> dict[str, Any]:
    namespace = channels.namespace_of(channel)
    return {"identity": dict(identity), "info": {
        "channel": {"path": channel, "segments": channel.strip("/").split("/")},
        "channelNamespace": {"name": namespace}, "operation": "SUBSCRIBE"},
        "request": {"headers": {}, "domainName": None}, "stash": {}, "events": None}


@dataclass(frozen=True, eq=False)
class _CognitoModeCaller(Caller):
    """A browser in Cognito mode: its provider (LAMBDA or COGNITO), checked again per subscribe like AppSync."""

    token: str = ""
    mode: str = ""
    identity: Mapping[str, Any] = field(default_factory=dict)
    api: Any = None  # the CognitoModeGateway (subscribe modes and the onSubscribe handler)

    def may_subscribe(self, channel: str) -> bool:
        namespace = channels.namespace_of(channel)
        if self.mode not in self.api.subscribe_modes.get(namespace, ()):
            return False  # e.g. a guest's Lambda-authorized token on restaurant-booking (COGNITO only)
        if self.mode == "AWS_LAMBDA" and not _authorize("EVENT_SUBSCRIBE", self.token, channel):
            return False
        handler = self.api.handlers.get(namespace)
        return handler is None or handler.on_subscribe(_handler_ctx(channel, self.identity))


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


class CognitoModeGateway(AuthorizerGateway):
    """The deployed API with ``staffAuth: cognito``: connect by LAMBDA or COGNITO, per-namespace subscribe modes."""

    def __init__(self, *, cognito: CognitoAuth, subscribe_modes: Mapping[str, Sequence[str]],
                 handlers: Mapping[str, AppSyncJsHandler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens = _UserPoolTokens(cognito)
        self.subscribe_modes = {ns: tuple(modes) for ns, modes in subscribe_modes.items()}
        self.handlers = dict(handlers)

    def caller(self, headers: Mapping[str, Any] | None) -> Caller | None:
        if not headers:
            return None
        lowered = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
        token = bearer_value(lowered.get("authorization"))
        if not token:
            return None
        if token.count(".") == 2:  # a JWT: the user-pool provider
            identity = self.tokens.identity(token)
            if identity is None:
                return None
            groups = identity.get("groups") or []
            principal = Principal("staff" if "staff" in groups else "user", subject=identity.get("sub"),
                                  username=identity.get("username"))
            return _CognitoModeCaller(principal, False, token, "AMAZON_COGNITO_USER_POOLS", identity, self)
        lambda_caller = super().caller(headers)
        if lambda_caller is None or lambda_caller.principal is None:
            return None
        context = {"kind": lambda_caller.principal.kind, **(
            {"sessionId": lambda_caller.principal.session_id} if lambda_caller.principal.session_id else {})}
        return _CognitoModeCaller(lambda_caller.principal, False, token, "AWS_LAMBDA",
                                  {"handlerContext": context}, self)


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
                 keepalive_seconds: float = 60.0, cognito: CognitoAuth | None = None,
                 subscribe_modes: Mapping[str, Sequence[str]] = COGNITO_SUBSCRIBE_MODES,
                 on_subscribe_code: Path | None = STAFF_ONLY_JS) -> None:
        self.book = book
        self.namespaces = tuple(namespaces)
        self.region = region
        self.handlers: dict[str, AppSyncJsHandler] = {}
        if cognito is None:
            self.gateway: AuthorizerGateway = AuthorizerGateway(
                staff_token=None, session_secret=None, api_key=None, keepalive_seconds=keepalive_seconds)
        else:
            if on_subscribe_code is not None:
                handler = AppSyncJsHandler(on_subscribe_code)  # one Node process; the namespaces share the code
                self.handlers = {ns: handler for ns in self.namespaces}
            self.gateway = CognitoModeGateway(
                cognito=cognito, subscribe_modes=subscribe_modes, handlers=self.handlers, staff_token=None,
                session_secret=None, api_key=None, keepalive_seconds=keepalive_seconds)
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
        for handler in set(self.handlers.values()):
            handler.close()


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"errorType": error_type, "message": message}]}, status_code=status)
