"""Foundation fixtures: a started store of each kind (SQLite file, DynamoDB under moto) and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from runtime.settings import Settings, load_settings
from runtime.stores.base import Store
from runtime.stores.dynamodb import DynamoDBStore
from runtime.stores.sqlite import SQLiteStore

# Store contract tests call repositories directly (no date rules), so a fixed day is fine there.
DAY = "2026-12-10"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # These tests model many guests behind one test client: the booking abuse limits (tests/abuse) are off.
    return load_settings(data_dir=tmp_path, staff_token="staff-secret-token",
                         session_secret="session-secret-for-tests", seats_per_slot=40,
                         booking_limit_per_slot=0, booking_limit_per_day=0, booking_limit_seats=0)


def sqlite_store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "store.db")


def dynamodb_store() -> DynamoDBStore:
    client = boto3.client("dynamodb", region_name="us-east-1")
    # max_concurrency=1: see runtime/stores/dynamodb.py - moto's transaction rollback is not thread safe.
    return DynamoDBStore(booking_table="Bookings", chat_history_table="Conversations", session_table="Sessions",
                         client=client, create_tables=True, max_concurrency=1)


@pytest.fixture(params=["sqlite", "dynamodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        store: Store = sqlite_store(tmp_path)
        await store.start()
        yield store
        await store.close()
        return
    with mock_aws():
        store = dynamodb_store()
        await store.start()
        yield store
        await store.close()
