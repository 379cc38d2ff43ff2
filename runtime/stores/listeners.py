"""Change listeners shared by both stores: called in order after a commit, isolated from each other.

A failing listener (say the events gateway) must never turn a committed booking into an error for
the guest who made it, so failures are logged and the next listener still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from runtime.stores.base import Change, ChangeListener

log = logging.getLogger("runtime.stores.listeners")


class Listeners:
    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def add(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                await listener(change)
            except Exception:
                log.exception("change listener failed", extra={"table": change.table})
