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


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Per-stream knobs the session core passes when opening a stream."""

    session_id: str


@runtime_checkable
class SpeechModel(Protocol):
    """A factory of duplex event streams; one per conversation segment (renewal opens another)."""

    name: str  # "nova-sonic" | "local" | "scripted"

    async def open(self, options: StreamOptions) -> SpeechStream: ...

    async def close(self) -> None:
        """Release shared resources (connection pools, loaded models)."""
        ...
