"""Publisher for an AppSync Events HTTP endpoint (cloud mode), signed with SigV4 or an API key.

Used by the DynamoDB-stream Lambda, so it is synchronous and needs only what the Lambda Python
runtime ships: the standard library, botocore (SigV4 signing, credentials chain) and urllib3 (pooled
HTTP, reused across invocations). The same class publishes to the embedded gateway of a standalone
runtime (``http://127.0.0.1:8000/event`` with its ``APPSYNC_API_KEY``), which is how the tests
exercise it over real HTTP.

AppSync accepts at most five events per request and reports failures per event (HTTP 200 with a
``failed`` list) or for the whole request (``errors``); ``PublishResult`` keeps both so the caller
can decide what to retry.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session

MAX_EVENTS_PER_REQUEST = 5
_REGION_IN_HOST = re.compile(r"\.appsync-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
# Failures that will fail again however often they are retried (the event itself is wrong).
PERMANENT_EVENT_CODES = frozenset({"EventTooLargeException", "BadRequestException"})


@dataclass(frozen=True, slots=True)
class FailedEvent:
    index: int
    code: str
    message: str

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT_EVENT_CODES


@dataclass(slots=True)
class PublishResult:
    """Outcome of one publish request of up to five events."""

    status: int  # HTTP status; 0 when the request never got an answer
    successful: list[int] = field(default_factory=list)
    failed: list[FailedEvent] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # request-level errors

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.failed and not self.errors

    @property
    def request_failed(self) -> bool:
        return self.status != 200 or bool(self.errors)

    @property
    def request_retryable(self) -> bool:
        """Throttling, server errors, network trouble and auth (a key/role being rotated) may pass later.

        A 400 is the request's own fault and is not retried.
        """
        return self.request_failed and self.status != 400

    def describe(self) -> str:
        if self.errors:
            return "; ".join(f"{e.get('errorType')}: {e.get('message')}" for e in self.errors)
        return ", ".join(f"#{f.index} {f.code}: {f.message}" for f in self.failed) or f"HTTP {self.status}"


def event_url(endpoint: str) -> str:
    """Accept a bare domain, a base URL or the full ``.../event`` URL and return the publish URL."""
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/event") else endpoint + "/event"


class AppSyncPublisher:
    """Publish stringified JSON events to an AppSync Events API (or the embedded gateway)."""

    def __init__(self, endpoint: str, *, api_key: str | None = None, region: str | None = None,
                 credentials: Credentials | None = None, timeout: float = 5.0,
                 pool: urllib3.PoolManager | None = None) -> None:
        self.url = event_url(endpoint)
        self.api_key = api_key
        host = urlsplit(self.url).hostname or ""
        match = _REGION_IN_HOST.search(host)
        self.region = region or (match.group(1) if match else None) or os.environ.get("AWS_REGION", "us-east-1")
        self._credentials = credentials
        self.timeout = timeout
        self._pool = pool or urllib3.PoolManager(num_pools=4, maxsize=4)

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            return {**headers, "x-api-key": self.api_key}
        credentials = self._credentials or get_session().get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign AppSync requests and no APPSYNC_API_KEY")
        request = AWSRequest(method="POST", url=self.url, data=body, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "appsync", self.region).add_auth(request)
        return dict(request.headers.items())

    def publish(self, channel: str, events: Sequence[str]) -> PublishResult:
        """One request of 1-5 events; never raises for HTTP or network failures (see ``PublishResult``)."""
        if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"publish takes 1 to {MAX_EVENTS_PER_REQUEST} events per request")
        body = json.dumps({"channel": channel, "events": list(events)}).encode()
        try:
            response = self._pool.request("POST", self.url, body=body, headers=self._signed_headers(body),
                                          timeout=self.timeout, retries=False)
        except urllib3.exceptions.HTTPError as exc:
            return PublishResult(0, errors=[{"errorType": "NetworkError", "message": str(exc)}])
        return _parse(response.status, response.data)

    def publish_all(self, channel: str, events: Sequence[str]) -> list[PublishResult]:
        """Publish in requests of five, in order, stopping after the first request that failed."""
        results: list[PublishResult] = []
        for start in range(0, len(events), MAX_EVENTS_PER_REQUEST):
            result = self.publish(channel, events[start:start + MAX_EVENTS_PER_REQUEST])
            results.append(result)
            if not result.ok:
                break
        return results


def _parse(status: int, raw: bytes) -> PublishResult:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    if not isinstance(body, Mapping):
        body = {}
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    if status != 200 and not errors:
        errors = [{"errorType": f"HTTP{status}", "message": raw[:200].decode("utf-8", "replace")}]
    successful = [int(s["index"]) for s in body.get("successful") or [] if isinstance(s, dict) and "index" in s]
    failed = [
        FailedEvent(int(f.get("index", 0)), str(f.get("code") or f.get("errorCode") or "Unknown"),
                    str(f.get("message") or f.get("errorMessage") or ""))
        for f in body.get("failed") or [] if isinstance(f, dict)
    ]
    return PublishResult(status, successful, sorted(failed, key=lambda f: f.index), errors)
