"""Pick the store for this process from ``settings.store`` (``sqlite`` | ``dynamodb``)."""

from __future__ import annotations

from runtime.settings import Settings
from runtime.stores.base import Store


def make_store(settings: Settings, *, create_tables: bool = False) -> Store:
    """Build (not start) the configured store.

    ``create_tables`` only matters for DynamoDB and is for tests and local development against a
    DynamoDB emulator (boto3 honours ``AWS_ENDPOINT_URL_DYNAMODB``); in AWS, Pulumi owns the tables.
    """
    if settings.store == "dynamodb":
        from runtime.stores.dynamodb import DynamoDBStore  # boto3 is only imported when used

        return DynamoDBStore(
            booking_table=settings.booking_table, chat_history_table=settings.chat_history_table,
            session_table=settings.session_table, region=settings.aws_region,
            retention_days=settings.conversation_retention_days, create_tables=create_tables,
        )
    from runtime.stores.sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_file, retention_days=settings.conversation_retention_days)
