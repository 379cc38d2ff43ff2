"""Fixtures for the events area (helpers live in ``tests/events/helpers.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime.events.gateway import standalone_app
from tests.events.helpers import Served, make_gateway, serve


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    gateway = make_gateway()
    async with serve(standalone_app(gateway)) as address:
        yield Served(gateway, address)
