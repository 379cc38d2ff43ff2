"""Local change capture: committed store changes become gateway events (standalone mode).

The standalone twin of the DynamoDB stream + Lambda publisher: both call ``runtime.changes.to_event``,
so a browser sees the same channel and payload (including the deterministic ``eventId``) in both modes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.changes import to_event

if TYPE_CHECKING:
    from runtime.events.gateway import EventsGateway
    from runtime.stores.base import Change, Store

log = logging.getLogger("runtime.events.capture")


class LocalCapture:
    """Store listener that publishes each change's event through the embedded gateway."""

    def __init__(self, gateway: EventsGateway) -> None:
        self.gateway = gateway

    async def __call__(self, change: Change) -> None:
        # Runs after the store committed; a failure here must never fail the write that caused it.
        try:
            event = to_event(change)
            if event is None:
                return
            channel, payload = event
            outcome = await self.gateway.publish(channel, payload)
            if outcome.failed:
                log.warning("event not published", extra={"channel": channel, "failed": outcome.failed})
        except Exception:
            log.exception("could not publish the event of a %s change", change.table)


def attach(store: Store, gateway: EventsGateway) -> Callable[[], None]:
    """Start capturing ``store``'s changes into ``gateway``; returns the function that stops it."""
    return store.subscribe(LocalCapture(gateway))
