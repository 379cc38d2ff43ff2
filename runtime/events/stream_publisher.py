"""Lambda: DynamoDB stream records -> AppSync Events (the cloud twin of local change capture).

``handler(event, context)`` is wired to the streams of the bookings, conversations and sessions tables
with ``ReportBatchItemFailures`` (and bisect, bounded retries, max record age, an on-failure
destination:
https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html). For each record, in stream
order, it:

1. skips REMOVEs (TTL expiry, ``userIdentity.principalId == dynamodb.amazonaws.com``, and deletes
   browsers are not told about),
2. names the logical table by comparing the table in ``eventSourceARN`` with ``BOOKING_TABLE`` /
   ``CHAT_HISTORY_TABLE`` / ``SESSION_TABLE``,
3. turns the images into a ``Change`` and calls ``runtime.changes.to_event`` - the very function local
   capture calls, so cloud and standalone events are identical, ``eventId`` included,
4. publishes each channel's events in order, at most five per request.

Ordering: a channel stops at its first failure; its later records are not sent in this invocation.
The lowest failed sequence number is returned in ``batchItemFailures``, so Lambda retries from there.
Events of other channels after that point are delivered again on retry - at-least-once delivery that
clients absorb by de-duplicating on ``eventId``. Failures that retrying cannot fix (HTTP 400, an
oversized or malformed event) are logged and skipped instead of blocking the shard.

Only the standard library, botocore and urllib3 are imported (what the Lambda Python runtime has).
Configuration: ``APPSYNC_ENDPOINT`` (required), ``APPSYNC_API_KEY`` (else SigV4 with the function's
role, which needs ``appsync:EventPublish``), ``AWS_REGION`` and the three table names.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.changes import change_from_stream_record, to_event
from runtime.events.publisher import MAX_EVENTS_PER_REQUEST, AppSyncPublisher, PublishResult
from runtime.stores.base import TableName

log = logging.getLogger("runtime.events.stream_publisher")
log.setLevel(logging.INFO)

TTL_PRINCIPAL = "dynamodb.amazonaws.com"


class Publisher(Protocol):
    def publish(self, channel: str, events: Sequence[str]) -> PublishResult: ...


@dataclass(frozen=True, slots=True)
class _Pending:
    position: int  # index of the record in the batch (stream order)
    sequence_number: str
    event: str


def table_name_of(arn: str) -> str | None:
    """``arn:aws:dynamodb:<region>:<acct>:table/<name>/stream/<label>`` -> ``<name>``."""
    _, _, rest = arn.partition(":table/")
    name = rest.split("/", 1)[0]
    return name or None


def _is_ttl_delete(record: Mapping[str, Any]) -> bool:
    identity = record.get("userIdentity") or {}
    return identity.get("type") == "Service" and identity.get("principalId") == TTL_PRINCIPAL


def _pending_by_channel(records: Sequence[Mapping[str, Any]], tables: Mapping[str, TableName]
                        ) -> dict[str, list[_Pending]]:
    by_channel: dict[str, list[_Pending]] = {}
    for position, record in enumerate(records):
        sequence_number = str(record.get("dynamodb", {}).get("SequenceNumber", ""))
        if record.get("eventName") == "REMOVE" or _is_ttl_delete(record):
            continue
        table = tables.get(table_name_of(str(record.get("eventSourceARN", ""))) or "")
        if table is None:
            log.warning("record from an unknown table skipped: %s", record.get("eventSourceARN"))
            continue
        try:
            event = to_event(change_from_stream_record(record, table))
        except (KeyError, TypeError, ValueError):
            log.exception("undecodable %s record %s skipped", table, sequence_number)
            continue
        if event is None:
            continue
        channel, payload = event
        by_channel.setdefault(channel, []).append(
            _Pending(position, sequence_number, json.dumps(payload, separators=(",", ":"))))
    return by_channel


def _publish_channel(publisher: Publisher, channel: str, pending: list[_Pending]) -> _Pending | None:
    """Publish one channel in order; return the first record that must be retried, if any."""
    for start in range(0, len(pending), MAX_EVENTS_PER_REQUEST):
        chunk = pending[start:start + MAX_EVENTS_PER_REQUEST]
        try:
            result = publisher.publish(channel, [p.event for p in chunk])
        except Exception:  # signing without credentials, a bug in a custom publisher: retry later
            log.exception("publishing to %s raised", channel)
            return chunk[0]
        if result.request_failed:
            if result.request_retryable:
                log.warning("publish to %s failed (%s); will retry", channel, result.describe())
                return chunk[0]
            log.error("publish to %s refused (%s); %d events dropped", channel, result.describe(), len(chunk))
            continue
        for failure in result.failed:
            if not 0 <= failure.index < len(chunk):
                return chunk[0]
            if failure.permanent:
                log.error("event %s on %s dropped: %s %s", chunk[failure.index].sequence_number, channel,
                          failure.code, failure.message)
                continue
            log.warning("event on %s failed (%s); will retry", channel, result.describe())
            return chunk[failure.index]
    return None


def process(records: Sequence[Mapping[str, Any]], *, publisher: Publisher, tables: Mapping[str, TableName]
            ) -> dict[str, list[dict[str, str]]]:
    """Publish the events of ``records``; return Lambda's partial batch response."""
    first_failure: _Pending | None = None
    for channel, pending in _pending_by_channel(records, tables).items():
        failed = _publish_channel(publisher, channel, pending)
        if failed is not None and (first_failure is None or failed.position < first_failure.position):
            first_failure = failed
    if first_failure is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": first_failure.sequence_number}]}


@dataclass(frozen=True)
class _Config:
    publisher: AppSyncPublisher
    tables: dict[str, TableName]


_cached: tuple[tuple[str | None, ...], _Config] | None = None


def _config() -> _Config:
    """Build the publisher once per container (pooled connections survive between invocations)."""
    global _cached
    names = ("APPSYNC_ENDPOINT", "APPSYNC_API_KEY", "AWS_REGION", "BOOKING_TABLE", "CHAT_HISTORY_TABLE",
             "SESSION_TABLE")
    key = tuple(os.environ.get(n) for n in names)
    if _cached is not None and _cached[0] == key:
        return _cached[1]
    endpoint, api_key, region, bookings, conversations, sessions = key
    if not endpoint:
        raise RuntimeError("APPSYNC_ENDPOINT is not set")
    tables: dict[str, TableName] = {}
    for name, logical in ((bookings, "bookings"), (conversations, "conversations"), (sessions, "sessions")):
        if name:
            tables[name] = logical  # type: ignore[assignment]
    config = _Config(AppSyncPublisher(endpoint, api_key=api_key or None, region=region), tables)
    _cached = (key, config)
    return config


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    config = _config()
    records = event.get("Records") or []
    response = process(records, publisher=config.publisher, tables=config.tables)
    log.info("published stream batch: %d records, failures=%s", len(records), response["batchItemFailures"])
    return response
