"""Credentials as a deployed task or host gets them, through the real SDK client, against the emulator.

No AWS keys in the environment and no profile files: the runtime must find its credentials at the local
ECS container endpoint or IMDSv2 (``emulators.credentials``), sign with exactly what was served, and keep
going when they rotate. With the credentials endpoint, the Bedrock endpoint or the region broken, the
guest is told within the documented bound (docs/credentials-and-deadlines.md) and the process recovers.

The Nova Sonic emulator verifies every SigV4 signature (request and event frames) against ``book``, the
``CredentialBook`` the local endpoints issue into: a key from anywhere else is refused with a 403.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulators.credentials import ContainerCredentialsEndpoint, InstanceMetadataEndpoint, free_port
from emulators.identity import CredentialBook
from emulators.nova_sonic import CallTool, Fail, Say, Script, Turn
from runtime.errors import Unavailable
from runtime.settings import Settings
from runtime.speech.nova_sonic import NovaSonicModel
from runtime.speech.session import SessionConfig, SessionManager
from tests.speech.conftest import SECRET, RecordingOutput, speak

pytestmark = pytest.mark.timeout(90)

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
BOOKING = {"name": "Ana Lopez", "date": TOMORROW, "hour": "19:00", "num_guests": 4}
# The documented bound (docs/credentials-and-deadlines.md): SPEECH_GIVE_UP_SECONDS (12) + 1 s to report.
GUEST_TOLD_WITHIN = Settings().speech_give_up_seconds + 1.0

_CREDENTIAL_RE = re.compile(r"Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/bedrock/aws4_request")

_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_EC2_METADATA_SERVICE_ENDPOINT")


@pytest.fixture
def no_aws_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The environment of a deployed task: no keys, no profiles, no files; IMDS off unless a test enables it."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-such-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def book() -> CredentialBook:
    return CredentialBook()


@pytest.fixture
def container(no_aws_keys: None, book: CredentialBook,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[ContainerCredentialsEndpoint]:
    endpoint = ContainerCredentialsEndpoint(book, authorization_token="task-token-6b1f", lifetime_seconds=3600)
    with endpoint:
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        yield endpoint


def signed_with(stream_headers: dict[str, str]) -> tuple[str, str, str | None]:
    """(access key, region, session token) a request was signed with, from its headers."""
    match = _CREDENTIAL_RE.search(stream_headers.get("authorization", ""))
    assert match is not None, stream_headers.get("authorization")
    return match.group(1), match.group(2), stream_headers.get("x-amz-security-token")


def booking_script() -> Script:
    return Script([Turn("a table for four tomorrow at seven", CallTool("create_restaurant_booking", BOOKING),
                        Say("Booked as {booking_id}.", 100))])


async def test_only_container_credentials_a_call_books_a_table_signed_with_the_served_keys(
        harness, store, container: ContainerCredentialsEndpoint, book: CredentialBook) -> None:
    async with harness(booking_script(), credentials=book) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        streams = h.emulator.streams

    [booking] = await store.bookings.list_by_date(TOMORROW)
    assert booking.name == "Ana Lopez"
    assert out.of_type("booking")[0]["booking"]["booking_id"] == booking.booking_id
    assert not out.of_type("error")
    assert container.fetches >= 1
    assert container.refused == 0  # the runtime presented the authorization token
    for stream in streams:
        key, region, token = signed_with(stream.headers)
        issued = book.lookup(key)
        assert issued is not None
        assert key in container.served_keys
        assert token == issued.session_token
        assert region == "us-east-1"


async def test_credentials_expiring_during_a_call_are_renewed_across_stream_renewals(
        harness, store, no_aws_keys: None, book: CredentialBook, monkeypatch: pytest.MonkeyPatch) -> None:
    # 6-second credentials, replaced by the endpoint when 3 s remain; streams renewed every ~1-2 s and cut
    # by the emulator at 3 s; the call lasts well past the first credentials' expiry.
    endpoint = ContainerCredentialsEndpoint(book, authorization_token="t0k", lifetime_seconds=6.0,
                                            rotate_before_seconds=3.0)
    config = SessionConfig(renew_after_seconds=1.0, renew_deadline_seconds=2.0, quiet_boundary_seconds=0.2,
                           backoff_initial_seconds=0.05)
    turns = [Turn(f"question {i}", Say(f"answer {i}", 150)) for i in range(40)]
    with endpoint:
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        async with harness(Script(turns), config=config, stream_limit_seconds=3.0, credentials=book) as h:
            session, out = await h.session()
            started = time.time()
            answered = 0
            while time.time() - started < 9.0:
                await speak(session)
                answered += 1
                await out.wait_for(lambda n=answered: len(out.finals("ASSISTANT")) == n)
            ended = time.time()
            await session.end("done")
            streams = list(h.emulator.streams)

    assert not out.of_type("error")
    assert session.recoveries == 0  # no stream failed: every one was replaced before its key ran out
    assert session.renewals >= 3
    keys = []
    for stream in streams:
        key, _, token = signed_with(stream.headers)
        issued = book.lookup(key)
        assert issued is not None
        assert issued.session_token == token
        opened_epoch = time.time() - (time.monotonic() - stream.opened_at)
        assert issued.expires_at is not None
        assert issued.expires_at > opened_epoch
        if key not in keys:
            keys.append(key)
    assert endpoint.fetches > 1
    assert len(keys) >= 2
    first = book.lookup(keys[0])
    assert first is not None
    assert first.expires_at is not None
    assert first.expires_at < ended
    stored = [(t.role, t.text) for t in await store.conversations.list(session.session_id)]
    assert stored[:2] == [("USER", "question 0"), ("ASSISTANT", "answer 0")]
    assert len(stored) == 2 * answered


async def _start_expecting_failure(manager: SessionManager) -> tuple[float, RecordingOutput]:
    output = RecordingOutput()
    session = await manager.create(output, transport="websocket")
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await session.start()
    elapsed = time.monotonic() - started
    print(f"guest told after {elapsed:.2f} s: {[m.get('code') for m in output.of_type('error')]}")  # figures
    assert session.ended
    assert manager.active_count == 0
    return elapsed, output


@pytest.mark.parametrize(("mode", "give_up"), [("hang", None), ("refuse", 4.0), ("error", 4.0)])
async def test_credentials_endpoint_down_the_guest_is_told_within_the_bound_and_the_process_recovers(
        mode: str, give_up: float | None, harness, store, settings, container: ContainerCredentialsEndpoint,
        book: CredentialBook) -> None:
    # The worst case (a hanging endpoint) with production timing; the other outages with a shorter give-up
    # deadline, which the bound scales with.
    config = SessionConfig.from_settings(settings)
    if give_up is not None:
        config = replace(config, give_up_seconds=give_up)
    async with harness(booking_script(), config=config, credentials=book) as h:
        container.go_down(mode)  # type: ignore[arg-type]
        elapsed, output = await _start_expecting_failure(h.manager)
        assert elapsed < config.give_up_seconds + 1.0 <= GUEST_TOLD_WITHIN
        [error] = output.of_type("error")
        assert error["code"].startswith("credentials_"), error
        assert output.of_type("status")[-1]["state"] == "error"
        assert h.emulator.streams == []  # nothing was sent unsigned or with stale keys

        container.go_up()  # the same process, the same model client: the next call works
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
    assert len(await store.bookings.list_by_date(TOMORROW)) == 1


async def test_bedrock_endpoint_unreachable_the_guest_is_told_within_the_bound(
        settings, store, bookings, certs, container: ContainerCredentialsEndpoint,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
    model = NovaSonicModel(settings)
    manager = SessionManager(model, bookings, store, settings, session_secret=SECRET)  # production timing
    try:
        elapsed, output = await _start_expecting_failure(manager)
    finally:
        await model.close()
    assert elapsed < GUEST_TOLD_WITHIN
    [error] = output.of_type("error")
    assert error["code"] in ("connection_error", "connect_timeout", "response_timeout")
    assert container.fetches >= 1  # credentials were fine; the endpoint was not


@pytest.mark.parametrize("region", ["eu-nowhere-9", "us-east-1x", ""])
async def test_a_wrong_region_is_not_retried_and_the_guest_is_told_at_once(
        region: str, harness, settings, container: ContainerCredentialsEndpoint, book: CredentialBook) -> None:
    settings.bedrock_region = region
    async with harness(Script([]), config=SessionConfig.from_settings(settings), credentials=book) as h:
        elapsed, output = await _start_expecting_failure(h.manager)
        assert h.emulator.streams == []
    assert elapsed < 1.0  # a wrong setting is not retried
    [error] = output.of_type("error")
    assert error["code"] == "unknown_region"


async def test_imdsv2_instance_profile_credentials(harness, store, no_aws_keys: None, book: CredentialBook,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with InstanceMetadataEndpoint(book, lifetime_seconds=3600, role_name="concierge-host") as imds:
        for name, value in imds.environment().items():
            monkeypatch.setenv(name, value)
        async with harness(booking_script(), credentials=book) as h:
            session, out = await h.session()
            await speak(session)
            await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
            await session.end("done")
            streams = h.emulator.streams
    assert len(await store.bookings.list_by_date(TOMORROW)) == 1
    assert imds.token_requests >= 1
    assert imds.fetches >= 1
    assert imds.refused == 0  # every metadata GET carried a session token (IMDSv2 only)
    for stream in streams:
        key, _, token = signed_with(stream.headers)
        assert key in imds.served_keys
        issued = book.lookup(key)
        assert issued is not None
        assert token == issued.session_token


async def test_credentials_endpoint_down_mid_call_the_guest_is_told_within_the_bound_of_the_fault(
        harness, store, settings, no_aws_keys: None, book: CredentialBook, monkeypatch: pytest.MonkeyPatch) -> None:
    # Short-lived credentials: every new stream needs a fetch, as a call would after the task role rotated.
    endpoint = ContainerCredentialsEndpoint(book, authorization_token="t0k", lifetime_seconds=60.0,
                                            rotate_before_seconds=1.0)
    script = Script([Turn("hello", Say("Hello, how can I help?", 100)),
                     Turn("book a table", Fail("modelStreamErrorException", "stream error"))])
    with endpoint:
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        async with harness(script, config=SessionConfig.from_settings(settings), credentials=book) as h:
            session, out = await h.session()
            await speak(session)
            await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
            endpoint.go_down("hang")
            spoke_at = time.monotonic()
            await speak(session)  # the stream dies on this turn; reconnecting needs credentials
            await out.wait_for(lambda: bool(out.of_type("error")), within=GUEST_TOLD_WITHIN + 2)
            told_after = time.monotonic() - spoke_at
            print(f"guest told {told_after:.2f} s after the fault")  # figures for the docs
            await out.wait_for(lambda: session.ended, within=10)
            endpoint.go_up()
    assert told_after < GUEST_TOLD_WITHIN
    [error] = out.of_type("error")
    assert error["code"] == "credentials_timeout"
    stored = [(t.role, t.text) for t in await store.conversations.list(session.session_id)]
    assert stored == [("USER", "hello"), ("ASSISTANT", "Hello, how can I help?"), ("USER", "book a table")]


async def test_a_refused_container_token_is_not_retried(harness, settings, container: ContainerCredentialsEndpoint,
                                                        book: CredentialBook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-the-task-token")
    async with harness(Script([]), config=SessionConfig.from_settings(settings), credentials=book) as h:
        elapsed, output = await _start_expecting_failure(h.manager)
        assert h.emulator.streams == []
    [error] = output.of_type("error")
    assert error["code"] == "credentials_refused"
    assert container.fetches == 0
    assert container.refused == 3  # botocore's own three tries, then the session gives up: no retry loop
    assert elapsed < GUEST_TOLD_WITHIN


async def test_keys_the_service_does_not_know_are_refused_and_not_retried(
        harness, settings, container: ContainerCredentialsEndpoint) -> None:
    # The emulator, like Bedrock, verifies the signature: keys it never issued get a 403, at once.
    async with harness(Script([]), config=SessionConfig.from_settings(settings), credentials=CredentialBook()) as h:
        elapsed, output = await _start_expecting_failure(h.manager)
        attempts = len(h.emulator.streams)
    [error] = output.of_type("error")
    assert error["code"] == "invalid_credentials"
    assert attempts <= 1  # not retried: a wrong key does not become right
    assert elapsed < 2.0
