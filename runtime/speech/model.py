"""The speech model seam (DESIGN §3.1).

A ``SpeechModel`` opens a duplex stream of Nova Sonic events: JSON objects of the form
``{"event": {"<name>": {...}}}`` go in through ``send`` and the same kind come out of ``receive``.
Amazon Nova Sonic (``runtime.speech.nova_sonic``), the embedded offline engine (``runtime.engine``)
and the scripted fake used by tests all implement it; the session core never knows which it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

NovaEvent = dict[str, Any]


class SpeechModelError(Exception):
    """A failure of the model stream.

    ``retryable`` tells the session core whether reopening the stream (with history) may succeed:
    model timeout, throttling, model stream errors, "System instability detected" and
    ``RST_STREAM`` 531 are retryable; validation errors are not.
    """

    def __init__(self, message: str, *, code: str, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@runtime_checkable
class SpeechStream(Protocol):
    async def send(self, event: NovaEvent) -> None:
        """Send one input event. Raises SpeechModelError when the stream is broken."""
        ...

    async def receive(self) -> NovaEvent | None:
        """Next output event; None once the model has closed the stream normally.

        Raises SpeechModelError for modelled errors (validationException, modelTimeoutException...).
        """
        ...

    async def close(self) -> None:
        """Close the input side (after sessionEnd) and release the connection. Idempotent."""
        ...

    async def ready(self) -> None:
        """Return once the model has accepted the stream; raise SpeechModelError if it will not.

        The session core awaits it after the prompt setup and before history and audio: Nova Sonic's
        response headers prove endpoint, TLS and credentials, and audio sent before them is refused
        ("Chat history should be sent completely before streaming audio"). A stream with nothing to
        confirm returns at once.
        """
        ...


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Per-stream knobs the session core passes when opening a stream."""

    session_id: str
    # A short line the engine speaks before anything else on this stream (the failover notice). Only the
    # offline engine honours it; Nova Sonic has no such input and never gets one (docs/failover.md).
    notice: str | None = None


@runtime_checkable
class SpeechModel(Protocol):
    """A factory of duplex event streams; one per conversation segment (renewal opens another)."""

    name: str  # "nova-sonic" | "local" | "scripted"
    # Whether the engine opens a new conversation with a greeting of its own (the offline engine does).
    # When False (Nova 2 Sonic, which only ever answers input), the session asks for the greeting with a
    # cross-modal text prompt at the start of a call (docs/greeting.md); an engine that greets by itself
    # must never get that prompt, or the guest would be greeted twice.
    greets_unprompted: bool

    async def open(self, options: StreamOptions) -> SpeechStream: ...

    @property
    def ready(self) -> bool:
        """Whether a session can open a stream now without a load first (the offline engine's models).

        ``/readyz`` reports it, so a load balancer sends callers only to processes whose first call is fast.
        """
        ...

    async def warm_up(self) -> None:
        """Load or prepare whatever the first stream would otherwise wait for; idempotent. Started at
        start-up by ``serve`` and by the first readiness probe."""
        ...

    async def close(self) -> None:
        """Release shared resources (connection pools, loaded models)."""
        ...
