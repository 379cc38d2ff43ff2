"""The rehearsal's AppSync Events API refuses what the deployed one refuses.

Deployed (platform/concierge_platform/events.py): publishing is AWS_IAM only, subscribing goes through the
Lambda authorizer, there is no API key. The embedded gateway the stand-in builds on is more lenient in
each of these (it takes an API key, trusts runtime.auth directly): every test here would pass a publish
or subscribe through that lenient setup and fails it here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import urllib3
from botocore.credentials import Credentials

from emulators.appsync_events import LocalEventsApi
from emulators.identity import CredentialBook, IssuedCredentials
from runtime.events.publisher import AppSyncPublisher, PublishResult
from tests.events.helpers import SECRET, SESSION_A, SESSION_B, STAFF, guest_token, open_client, serve

pytestmark = pytest.mark.timeout(30)
EVENT = json.dumps({"type": "booking.created", "eventId": "booking:bk-1:created"})


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[LocalEventsApi, str]]:
    # The authorizer Lambda's documented alternative to its Secrets Manager ARNs.
    monkeypatch.setenv("STAFF_TOKEN", STAFF)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    monkeypatch.delenv("STAFF_TOKEN_SECRET_ARN", raising=False)
    monkeypatch.delenv("SESSION_SECRET_ARN", raising=False)
    stand_in = LocalEventsApi(CredentialBook(), namespaces=["conversations", "restaurant-booking"],
                              keepalive_seconds=0.2)
    async with serve(stand_in.app) as address:
        yield stand_in, address
    await stand_in.close()


def publish(address: str, credentials: Credentials | None = None, *, channel: str = "/restaurant-booking/bk-1",
            api_key: str | None = None) -> PublishResult:
    publisher = AppSyncPublisher(f"http://{address}/event", api_key=api_key, region="us-east-1",
                                 credentials=credentials, pool=urllib3.PoolManager())
    return publisher.publish(channel, [EVENT])


def creds(issued: IssuedCredentials, **changes: Any) -> Credentials:
    values = {"access_key": issued.access_key_id, "secret_key": issued.secret_access_key,
              "token": issued.session_token, **changes}
    return Credentials(**values)


async def test_a_signed_publish_reaches_a_staff_subscriber(api: tuple[LocalEventsApi, str]) -> None:
    stand_in, address = api
    issued = stand_in.book.issue(lifetime_seconds=900)
    async with open_client(f"ws://{address}/event/realtime", {"Authorization": STAFF}) as staff:
        assert (await staff.subscribe("all", "/restaurant-booking/*"))["type"] == "subscribe_success"
        result = await asyncio.to_thread(publish, address, creds(issued))
        assert result.ok, result.describe()
        frame = await staff.recv()
    assert frame["type"] == "data"
    assert frame["event"] == EVENT
    assert stand_in.log.keys == [issued.access_key_id]


@pytest.mark.parametrize(("case", "error_type"), [
    ("unknown key", "UnrecognizedClientException"),
    ("wrong secret", "InvalidSignatureException"),
    ("session token left out", "UnrecognizedClientException"),
    ("expired credentials", "ExpiredTokenException"),
])
async def test_bad_signatures_are_refused_with_the_iam_error(api: tuple[LocalEventsApi, str], case: str,
                                                             error_type: str) -> None:
    stand_in, address = api
    issued = stand_in.book.issue(lifetime_seconds=900)
    credentials = {
        "unknown key": creds(issued, access_key="ASIAUNKNOWNKEY000000"),
        "wrong secret": creds(issued, secret_key="not-the-secret"),
        "session token left out": creds(issued, token=None),
        "expired credentials": creds(stand_in.book.add(IssuedCredentials(
            "ASIAEXPIREDKEY000000", "secret", "token", expires_at=time.time() - 1))),
    }[case]
    result = await asyncio.to_thread(publish, address, credentials)
    assert result.status == 403
    assert result.errors[0]["errorType"] == error_type
    assert result.request_retryable  # the publisher retries auth failures (a role being rotated)
    assert stand_in.log.accepted == 0


async def test_there_is_no_api_key_and_browser_tokens_cannot_publish(api: tuple[LocalEventsApi, str]) -> None:
    stand_in, address = api
    by_key = await asyncio.to_thread(publish, address, api_key="da2-anykey")
    assert (by_key.status, by_key.errors[0]["errorType"]) == (403, "MissingAuthenticationTokenException")
    pool = urllib3.PoolManager()
    response = await asyncio.to_thread(
        pool.request, "POST", f"http://{address}/event", body=json.dumps({"channel": "/restaurant-booking/x",
                                                                          "events": [EVENT]}),
        headers={"content-type": "application/json", "authorization": f"Bearer {STAFF}"})
    # A bearer token is not a SigV4 Authorization header: AWS answers 400 IncompleteSignatureException.
    assert response.status == 400
    assert json.loads(response.data)["errors"][0]["errorType"] == "IncompleteSignatureException"
    assert stand_in.log.accepted == 0


async def test_only_the_declared_namespaces_exist(api: tuple[LocalEventsApi, str]) -> None:
    stand_in, address = api
    result = await asyncio.to_thread(publish, address, creds(stand_in.book.issue(lifetime_seconds=900)),
                                     channel="/elsewhere/x")
    assert result.status == 400
    assert result.errors[0]["errorType"] == "BadRequestException"


async def test_subscriptions_are_decided_by_the_lambda_authorizer(api: tuple[LocalEventsApi, str]) -> None:
    _, address = api
    async with open_client(f"ws://{address}/event/realtime", {"Authorization": guest_token(SESSION_A)}) as guest:
        assert (await guest.subscribe("mine", f"/conversations/{SESSION_A}"))["type"] == "subscribe_success"
        assert (await guest.subscribe("theirs", f"/conversations/{SESSION_B}"))["type"] == "subscribe_error"
        assert (await guest.subscribe("bookings", "/restaurant-booking/*"))["type"] == "subscribe_error"
    async with open_client(f"ws://{address}/event/realtime", {"x-api-key": "da2-anykey"}) as keyed:
        assert (await keyed.recv())["type"] == "connection_error"
