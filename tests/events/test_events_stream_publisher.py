"""The DynamoDB-stream Lambda: records read from moto's DynamoDB Streams, published over real HTTP.

The embedded gateway on 127.0.0.1 stands in for AppSync (it takes the publisher's API key) and a
staff subscriber checks what browsers would receive. No event source mapping is created in moto (it
would consume the records itself): the handler is called with records from ``get_records``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.changes import to_event
from runtime.events import stream_publisher
from runtime.events.gateway import standalone_app
from runtime.events.publisher import AppSyncPublisher
from runtime.stores.base import Booking, Change, SessionRecord
from runtime.stores.dynamodb import DynamoDBStore
from tests.events.helpers import API_KEY, STAFF, Client, make_gateway, open_client, serve

TABLES = {"booking_table": "Bookings", "chat_history_table": "Conversations", "session_table": "Sessions"}
SESSION_A = "sess-aaaa-1111"
SESSION_B = "sess-bbbb-2222"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
async def store(aws: None) -> AsyncIterator[DynamoDBStore]:
    store = DynamoDBStore(**TABLES, client=boto3.client("dynamodb", region_name="us-east-1"),
                          create_tables=True, max_concurrency=1)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSYNC_API_KEY", API_KEY)
    monkeypatch.setenv("BOOKING_TABLE", TABLES["booking_table"])
    monkeypatch.setenv("CHAT_HISTORY_TABLE", TABLES["chat_history_table"])
    monkeypatch.setenv("SESSION_TABLE", TABLES["session_table"])


def stream_event(table: str) -> list[dict[str, Any]]:
    """Every record of ``table``'s stream, shaped as Lambda's DynamoDB event source delivers them."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=100)
            for record in page["Records"]:
                data = dict(record["dynamodb"])
                data["ApproximateCreationDateTime"] = data["ApproximateCreationDateTime"].timestamp()
                records.append({**record, "dynamodb": data, "eventSourceARN": arn})
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return records


def booking(booking_id: str, name: str = "Ada", hour: str = "19:00") -> Booking:
    return Booking(booking_id=booking_id, name=name, date="2026-12-10", hour=hour, num_guests=2,
                   status="confirmed", created_at="2026-12-03T09:00:00Z")


@asynccontextmanager
async def appsync_stand_in(app: ASGIApp | None = None) -> AsyncIterator[tuple[str, Client]]:
    """Serve the gateway (optionally wrapped) and yield its address and a staff subscriber of everything."""
    gateway = make_gateway()
    async with serve(app or standalone_app(gateway)) as address, \
            open_client(f"ws://{address}/event/realtime", {"Authorization": STAFF}) as client:
        for sub_id, channel in (("bookings", "/restaurant-booking/*"), ("conversations", "/conversations/*")):
            assert (await client.subscribe(sub_id, channel))["type"] == "subscribe_success"
        yield address, client


async def received(client: Client, count: int) -> list[dict[str, Any]]:
    return [json.loads((await client.recv())["event"]) for _ in range(count)]


async def test_stream_records_reach_a_staff_subscriber(store: DynamoDBStore, lambda_env: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    local: list[dict[str, Any]] = []  # what standalone local capture would publish for the same writes

    async def capture(change: Change) -> None:
        event = to_event(change)
        if event is not None:
            local.append(event[1])

    store.subscribe(capture)
    created, _ = await store.bookings.create(booking("bk-1"), seats_per_slot=40, idempotency_key="k1",
                                             request_hash="h1")
    cancelled, _ = await store.bookings.cancel("bk-1", "ill", now="2026-12-04T10:00:00Z")
    await store.conversations.append(SESSION_A, "USER", "a table for two", turn_id="t1", now="2026-12-03T09:00:00Z")
    await store.sessions.put(SessionRecord(session_id=SESSION_A, status="active", created_at="2026-12-03T09:00:00Z",
                                           expires_at=1_900_000_000))
    async with appsync_stand_in() as (address, client):
        monkeypatch.setenv("APPSYNC_ENDPOINT", f"http://{address}")
        for table in TABLES.values():
            response = await asyncio.to_thread(stream_publisher.handler, {"Records": stream_event(table)}, None)
            assert response == {"batchItemFailures": []}
        events = await received(client, 4)
        await client.nothing()
    assert events == [
        {"type": "booking.created", "eventId": "booking:bk-1:created", "booking": created.to_dict()},
        {"type": "booking.cancelled", "eventId": "booking:bk-1:cancelled", "booking": cancelled.to_dict()},
        {"type": "turn.added", "eventId": f"turn:{SESSION_A}:1", "turn": {
            "session_id": SESSION_A, "seq": 1, "role": "USER", "text": "a table for two",
            "created_at": "2026-12-03T09:00:00Z", "turn_id": "t1"}},
        {"type": "session.started", "eventId": f"session:{SESSION_A}:started", "session": {
            "session_id": SESSION_A, "status": "active", "created_at": "2026-12-03T09:00:00Z",
            "expires_at": 1_900_000_000, "transport": "webrtc", "engine": "local", "usage": {}}},
    ]
    assert events == local  # cloud and standalone events are identical, eventId included


async def test_removes_and_ttl_deletes_publish_nothing(store: DynamoDBStore, lambda_env: None) -> None:
    await store.bookings.create(booking("bk-2"), seats_per_slot=40, idempotency_key=None, request_hash="h")
    boto3.client("dynamodb", region_name="us-east-1").delete_item(
        TableName="Bookings", Key={"pk": {"S": "BOOKING#bk-2"}, "sk": {"S": "BOOKING"}})
    records = stream_event("Bookings")
    removes = [r for r in records if r["eventName"] == "REMOVE"]
    assert len(removes) == 1
    ttl_remove = {**removes[0], "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}
    async with appsync_stand_in() as (address, client):
        publisher = AppSyncPublisher(f"http://{address}/event", api_key=API_KEY)
        tables = {"Bookings": "bookings"}
        result = await asyncio.to_thread(stream_publisher.process, [removes[0], ttl_remove],
                                         publisher=publisher, tables=tables)
        assert result == {"batchItemFailures": []}
        await client.nothing()


class FailChannel:
    """ASGI wrapper in front of the gateway: answers 503 to chosen publish requests of one channel."""

    def __init__(self, app: ASGIApp, channel: str, fail_requests: set[int]) -> None:
        self.app, self.channel, self.fail_requests = app, channel, fail_requests
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json.loads(body).get("channel") == self.channel:
            self.seen += 1
            if self.seen in self.fail_requests:
                await send({"type": "http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"errors":[{"errorType":"ServiceUnavailable",'
                                                                    b'"message":"try later"}]}'})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def test_failure_mid_batch_reports_the_first_failed_record_and_keeps_order(
        store: DynamoDBStore) -> None:
    # Session A gets 7 turns (two publish requests: 5 + 2), session B 2 turns, interleaved in the stream.
    plan = [(SESSION_A, n) for n in range(1, 6)] + [(SESSION_B, 1), (SESSION_A, 6), (SESSION_B, 2), (SESSION_A, 7)]
    for session, n in plan:
        await store.conversations.append(session, "USER", f"{session} turn {n}", turn_id=f"{session}-{n}",
                                         now="2026-12-03T09:00:00Z")
    records = stream_event("Conversations")
    tables = {"Conversations": "conversations"}

    def turn_record(session: str, seq: int) -> dict[str, Any]:
        return next(r for r in records if r["dynamodb"].get("NewImage", {}).get("kind", {}).get("S") == "turn"
                    and r["dynamodb"]["NewImage"]["session_id"]["S"] == session
                    and r["dynamodb"]["NewImage"]["seq"]["N"] == str(seq))

    gateway = make_gateway()
    flaky = FailChannel(standalone_app(gateway), f"/conversations/{SESSION_A}", fail_requests={2})
    async with appsync_stand_in(flaky) as (address, client):
        publisher = AppSyncPublisher(f"http://{address}/event", api_key=API_KEY)
        result = await asyncio.to_thread(stream_publisher.process, records, publisher=publisher, tables=tables)
        failed_seq = turn_record(SESSION_A, 6)["dynamodb"]["SequenceNumber"]
        assert result == {"batchItemFailures": [{"itemIdentifier": failed_seq}]}
        first = await received(client, 7)
        await client.nothing()
        # Session A stopped at its failure (turns 1-5 only, in order); session B was not held up.
        assert [e["eventId"] for e in first if e["turn"]["session_id"] == SESSION_A] == [
            f"turn:{SESSION_A}:{n}" for n in range(1, 6)]
        assert {e["eventId"] for e in first if e["turn"]["session_id"] == SESSION_B} == {
            f"turn:{SESSION_B}:1", f"turn:{SESSION_B}:2"}

        # Lambda retries from the reported record onwards; this time the stand-in accepts everything.
        start = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == failed_seq)
        retry = await asyncio.to_thread(stream_publisher.process, records[start:], publisher=publisher, tables=tables)
        assert retry == {"batchItemFailures": []}
        second = await received(client, 3)  # A6, A7 and a duplicate of B2 (published after the failure point)
        await client.nothing()
    unique = {e["eventId"]: e for e in first + second}
    assert sorted(unique) == sorted([f"turn:{SESSION_A}:{n}" for n in range(1, 8)]
                                    + [f"turn:{SESSION_B}:1", f"turn:{SESSION_B}:2"])
    assert [e["turn"]["seq"] for e in second if e["turn"]["session_id"] == SESSION_A] == [6, 7]


async def test_an_event_appsync_refuses_for_good_is_skipped_not_retried(store: DynamoDBStore) -> None:
    await store.bookings.create(booking("bk-big", name="x" * (250 * 1024)), seats_per_slot=40,
                                idempotency_key=None, request_hash="h1")
    await store.bookings.create(booking("bk-ok", hour="20:00"), seats_per_slot=40, idempotency_key=None,
                                request_hash="h2")
    async with appsync_stand_in() as (address, client):
        publisher = AppSyncPublisher(f"http://{address}/event", api_key=API_KEY)
        result = await asyncio.to_thread(stream_publisher.process, stream_event("Bookings"), publisher=publisher,
                                         tables={"Bookings": "bookings"})
        assert result == {"batchItemFailures": []}  # retrying an oversized event would block the shard forever
        assert [e["eventId"] for e in await received(client, 1)] == ["booking:bk-ok:created"]
        await client.nothing()


async def test_unreachable_endpoint_fails_the_batch_at_its_first_record(store: DynamoDBStore) -> None:
    await store.bookings.create(booking("bk-3"), seats_per_slot=40, idempotency_key=None, request_hash="h")
    records = stream_event("Bookings")
    async with serve(standalone_app(make_gateway())) as address:
        pass  # the port is free again: nothing listens there now
    publisher = AppSyncPublisher(f"http://{address}/event", api_key=API_KEY, timeout=1)
    result = await asyncio.to_thread(stream_publisher.process, records, publisher=publisher,
                                     tables={"Bookings": "bookings"})
    first_booking = next(r for r in records if r["dynamodb"]["NewImage"].get("kind", {}).get("S") == "booking")
    assert result == {"batchItemFailures": [{"itemIdentifier": first_booking["dynamodb"]["SequenceNumber"]}]}


async def test_records_of_unknown_tables_are_ignored(store: DynamoDBStore) -> None:
    await store.bookings.create(booking("bk-4"), seats_per_slot=40, idempotency_key=None, request_hash="h")
    async with appsync_stand_in() as (address, client):
        publisher = AppSyncPublisher(f"http://{address}/event", api_key=API_KEY)
        result = await asyncio.to_thread(stream_publisher.process, stream_event("Bookings"), publisher=publisher,
                                         tables={"SomeOtherTable": "bookings"})
        assert result == {"batchItemFailures": []}
        await client.nothing()


def test_sigv4_signing_for_appsync() -> None:
    from botocore.credentials import Credentials

    publisher = AppSyncPublisher("abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-1.amazonaws.com",
                                 credentials=Credentials("AKIDEXAMPLE", "secret", "session-token"))
    assert publisher.url == "https://abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-1.amazonaws.com/event"
    headers = {k.lower(): v for k, v in publisher._signed_headers(b'{"channel":"/x/y","events":["1"]}').items()}
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/appsync/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-token"
    assert "x-api-key" not in headers
