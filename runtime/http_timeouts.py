"""Read timeouts for slow clients: uvicorn's h11 protocol with a header deadline and a body backstop.

uvicorn (0.54) has ``timeout_keep_alive`` - how long an idle connection *between* requests stays open - but
no timeout for reading a request: a client that opens a connection and sends its headers one byte every
few seconds (slow-loris), or a body that never finishes, holds a socket and a slot for ever (500 such
connections were all still open after 30 s). h11 offers only ``max_incomplete_event_size`` (a size bound,
not a time bound). So this module adds the smallest thing that works, on uvicorn's own protocol class:

- a *header* deadline, from the connection's start or the first byte of the next request on a kept-alive
  connection, to the complete request head: past it the client gets ``408`` and the connection closes;
- a *body* backstop: a request whose body is still arriving ``body_timeout`` + 1 s after its head is cut.
  The clean answer to a slow body is the ASGI-level deadline in ``runtime.middleware.BodyLimitMiddleware``
  (a 408 JSON error through the app, at ``body_timeout``); this backstop catches the bodies no handler reads.

An idle keep-alive connection is not touched here: it stays governed by ``timeout_keep_alive``
(``KEEP_ALIVE_SECONDS``, above the load balancer's idle timeout, so the ALB is the side that closes it).

The class is named in ``uvicorn.run(http="runtime.http_timeouts:TimedH11Protocol")``, so each worker
process imports it; ``create_app`` calls ``configure`` with that worker's settings.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass
class _Timeouts:
    header_seconds: float = 10.0
    body_seconds: float = 30.0


_TIMEOUTS = _Timeouts()
BODY_BACKSTOP_GRACE_SECONDS = 1.0


def configure(*, header_seconds: float, body_seconds: float) -> None:
    """Set this process's read timeouts (one app per worker process; called by ``create_app``)."""
    _TIMEOUTS.header_seconds = header_seconds
    _TIMEOUTS.body_seconds = body_seconds


def _timeout_response() -> bytes:
    body = json.dumps({"error": {"code": "request_timeout",
                                 "message": "the request was not received in time"}}).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
    return head + body


class TimedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol plus a request-head deadline and a request-body backstop (see module doc)."""

    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _requests_seen = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(_TIMEOUTS.header_seconds, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_timers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update_timers()

    def _handed_over(self) -> bool:
        """Closed, or upgraded to a WebSocket (whose own protocol object owns the transport now)."""
        return self.transport is None or self.transport.is_closing() or self.transport.get_protocol() is not self

    def _update_timers(self) -> None:
        if self._handed_over():
            self._cancel_timers()
            return
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.trailing_data[0]:  # part of the next request's head is here
            if self._header_timer is None:  # a new request's head has begun: its clock starts now
                self._header_timer = self.loop.call_later(_TIMEOUTS.header_seconds, self._on_header_timeout)
        elif state is not h11.IDLE and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(
                    _TIMEOUTS.body_seconds + BODY_BACKSTOP_GRACE_SECONDS, self._on_body_timeout)
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self._handed_over() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is still being answered (pipelining); its head is not what is late
        # h11 cannot send a response before it has parsed a request, so the 408 is written raw.
        self.transport.write(_timeout_response())
        self.transport.close()

    def _on_body_timeout(self) -> None:
        self._body_timer = None
        if self._handed_over() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app sees http.disconnect; nothing more is written
            self.cycle.message_event.set()
        self.transport.close()
