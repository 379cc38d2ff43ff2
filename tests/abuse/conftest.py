"""Abuse-limit fixtures: a started store of each kind (SQLite file, DynamoDB under moto)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runtime.stores.base import Store
from runtime.stores.dynamodb import DynamoDBStore
from runtime.stores.sqlite import SQLiteStore


class SerialisedClient:
    """A boto3 client whose calls run one at a time, as each real DynamoDB request is atomic.

    moto's transaction rollback is not thread safe (runtime/stores/dynamodb.py), but two stores - two
    hosts - must run on their own threads for their read-check-write sequences to interleave. Serialising
    single calls keeps moto sound and leaves every interleaving *between* calls possible.
    """

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client, self._lock = client, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name == "get_waiter":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def dynamodb_host(lock: threading.Lock) -> DynamoDBStore:
    client = SerialisedClient(boto3.client("dynamodb", region_name="us-east-1"), lock)
    return DynamoDBStore(booking_table="Bookings", chat_history_table="Conversations", session_table="Sessions",
                         client=client, create_tables=True, max_concurrency=4)


@pytest.fixture(params=["sqlite", "dynamodb"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Store]]:
    """A factory of started stores sharing one database: workers on one SQLite file, or hosts on one table."""
    opened: list[Store] = []

    async def close() -> None:
        for store in opened:
            await store.close()

    if request.param == "sqlite":
        def sqlite() -> Store:
            store = SQLiteStore(tmp_path / "shared.db")
            opened.append(store)
            return store

        yield sqlite
        await close()
        return
    with mock_aws():
        lock = threading.Lock()

        def dynamodb() -> Store:
            store = dynamodb_host(lock)
            opened.append(store)
            return store

        yield dynamodb
        await close()


@pytest.fixture
async def store(stores: Callable[[], Store]) -> Store:
    store = stores()
    await store.start()
    return store
