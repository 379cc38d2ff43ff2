"""The AppSync Lambda authorizer applies the same rules as the embedded gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runtime.events import authorizer
from tests.events.helpers import SECRET, SESSION_A, SESSION_B, STAFF, guest_token


def request(token: str | None, operation: str, channel: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"apiId": "api123", "accountId": "123456789012", "requestId": "r-1",
                               "operation": operation}
    if channel is not None:
        context["channel"] = channel
        context["channelNamespaceName"] = channel.strip("/").split("/")[0]
    return {"authorizationToken": token, "requestContext": context, "requestHeaders": {"host": "example"}}


@pytest.fixture
def env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAFF_TOKEN", STAFF)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    monkeypatch.delenv("STAFF_TOKEN_SECRET_ARN", raising=False)
    monkeypatch.delenv("SESSION_SECRET_ARN", raising=False)


@pytest.mark.parametrize(("token", "operation", "channel", "allowed"), [
    (STAFF, "EVENT_CONNECT", None, True),
    (STAFF, "EVENT_SUBSCRIBE", "/restaurant-booking/*", True),
    (STAFF, "EVENT_SUBSCRIBE", "conversations/*", True),
    (f"Bearer {STAFF}", "EVENT_SUBSCRIBE", "/conversations/*", True),
    (STAFF, "EVENT_PUBLISH", "/restaurant-booking/b-1", False),
    ("guest", "EVENT_CONNECT", None, True),
    ("guest", "EVENT_SUBSCRIBE", f"/conversations/{SESSION_A}", True),
    ("guest", "EVENT_SUBSCRIBE", f"/conversations/{SESSION_B}", False),
    ("guest", "EVENT_SUBSCRIBE", "/conversations/*", False),
    ("guest", "EVENT_SUBSCRIBE", "/restaurant-booking/*", False),
    ("guest", "EVENT_SUBSCRIBE", f"/conversations/{SESSION_A}/*", False),
    ("guest", "EVENT_PUBLISH", f"/conversations/{SESSION_A}", False),
    ("forged", "EVENT_CONNECT", None, False),
    (None, "EVENT_CONNECT", None, False),
    (STAFF, "EVENT_SUBSCRIBE", "/unknown/*", False),
])
def test_rules(env_secrets: None, token: str | None, operation: str, channel: str | None, allowed: bool) -> None:
    credential = guest_token(SESSION_A) if token == "guest" else token
    response = authorizer.handler(request(credential, operation, channel), None)
    assert response["isAuthorized"] is allowed
    assert response["ttlOverride"] == 0  # a cached connect decision must not answer a later subscribe


def test_expired_guest_token_is_refused(env_secrets: None) -> None:
    token = guest_token(SESSION_A, ttl=60, now=1_000_000)
    response = authorizer.handler(request(token, "EVENT_SUBSCRIBE", f"/conversations/{SESSION_A}"), None)
    assert response["isAuthorized"] is False


def test_handler_context_names_the_guest(env_secrets: None) -> None:
    response = authorizer.handler(request(guest_token(SESSION_A), "EVENT_CONNECT"), None)
    assert response["handlerContext"] == {"kind": "guest", "sessionId": SESSION_A}


@pytest.fixture
def secrets_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("STAFF_TOKEN", raising=False)
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    authorizer._secret_cache.clear()
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        staff = client.create_secret(Name="staff", SecretString=STAFF)["ARN"]
        session = client.create_secret(Name="session", SecretString=SECRET)["ARN"]
        monkeypatch.setenv("STAFF_TOKEN_SECRET_ARN", staff)
        monkeypatch.setenv("SESSION_SECRET_ARN", session)
        yield
    authorizer._secret_cache.clear()


def test_secrets_from_secrets_manager(secrets_manager: None) -> None:
    assert authorizer.handler(request(STAFF, "EVENT_SUBSCRIBE", "/restaurant-booking/*"), None)["isAuthorized"]
    guest = request(guest_token(SESSION_A), "EVENT_SUBSCRIBE", f"/conversations/{SESSION_A}")
    assert authorizer.handler(guest, None)["isAuthorized"]


def test_unreadable_secret_denies_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer._secret_cache.clear()
    with mock_aws():
        monkeypatch.setenv("STAFF_TOKEN_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone")
        response = authorizer.handler(request(STAFF, "EVENT_CONNECT"), None)
    assert response["isAuthorized"] is False
