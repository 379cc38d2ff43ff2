"""Pure ASGI middleware: request body limit, security headers, request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so WebSockets and streamed bodies pass through untouched and
the body limit is enforced while reading, before a large body is buffered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.errors import error_body
from runtime.metrics import HTTP_LATENCY, HTTP_REQUESTS


async def _send_json(send: Send, status: int, body: dict[str, object], *, close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class _BodyTooLarge(Exception):
    pass


class _BodyTimedOut(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 when a request body exceeds its route's limit, 408 when it is not all there in time.

    ``max_bytes`` applies everywhere except the paths in ``path_limits``: the events gateway's
    ``POST /event`` takes up to five 240 KB events (AppSync's 1.2 MB publish request), far above
    what any REST body needs. ``body_timeout`` bounds the time from the request's start to its body's
    last byte (a slow-body client otherwise holds the handler for ever; uvicorn has no such timeout, see
    ``runtime.http_timeouts``); waits after the body is complete (for a disconnect) are not bounded.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None,
                 body_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)

        def too_large() -> Awaitable[None]:
            return _send_json(send, 413, error_body(
                "payload_too_large", f"request body is larger than {limit} bytes"))

        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await too_large()
                return
        received = 0
        response_started = False
        body_done = False
        deadline = None if self.body_timeout is None else time.monotonic() + self.body_timeout

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done or deadline is None:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        message = await receive()
                except TimeoutError:
                    raise _BodyTimedOut from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await too_large()
        except _BodyTimedOut:
            if not response_started:  # the rest of the body may never come: close after answering
                await _send_json(send, 408, error_body(
                    "request_timeout", f"the request body did not arrive within {self.body_timeout:g} s"),
                    close=True)


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"microphone=(self), camera=()"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


class MetricsMiddleware:
    """Count requests by route template (not raw path, to keep label cardinality bounded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if status < 400 else "unmatched")
            HTTP_REQUESTS.labels(template, scope["method"], str(status)).inc()
            HTTP_LATENCY.labels(template).observe(time.perf_counter() - start)
