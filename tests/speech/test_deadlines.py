"""Every wait on the model path is bounded, and no failure is left as an unretrieved task exception."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_core.exceptions import CallError
from smithy_core.response import ResponseMetadata

from emulators.credentials import ContainerCredentialsEndpoint
from emulators.nova_sonic import Script
from runtime.errors import Unavailable
from runtime.speech.credentials import AwsCredentialSource
from runtime.speech.model import SpeechModelError, StreamOptions
from runtime.speech.nova_sonic import NovaSonicModel, map_error
from runtime.speech.session import SessionConfig, SessionManager
from tests.conftest import ROOT
from tests.speech.conftest import SECRET, RecordingOutput
from tests.speech.test_credentials import no_aws_keys  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(60)


class ExpiredBetweenResolutionAndSigning(AwsCredentialSource):
    """Credentials that expired after they were resolved: the SDK's signer refuses them inside its request
    task, before the stream is handed over - the path where SDK 0.12 used to wait forever."""

    async def resolve(self) -> AWSCredentialsIdentity:
        return AWSCredentialsIdentity(access_key_id="ASIAEXPIREDEXPIRED00", secret_access_key="s",
                                      session_token="t", expiration=datetime.now(UTC) - timedelta(seconds=1))


async def test_a_failure_inside_the_sdk_before_the_stream_exists_is_raised_not_hung(
        settings, harness) -> None:
    async with harness(Script([])) as h:
        model = NovaSonicModel(settings, credentials=ExpiredBetweenResolutionAndSigning(timeout_seconds=1.0))
        started = time.monotonic()
        try:
            with pytest.raises(SpeechModelError) as raised:
                await model.open(StreamOptions(session_id="s-1"))
        finally:
            await model.close()
        assert time.monotonic() - started < 1.0
        assert h.emulator.streams == []  # nothing left the process
    assert "expired" in str(raised.value).lower()


@pytest.fixture
def hanging_container(no_aws_keys: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContainerCredentialsEndpoint]:  # noqa: F811
    endpoint = ContainerCredentialsEndpoint(authorization_token="tok")
    with endpoint:
        for name, value in endpoint.environment().items():
            monkeypatch.setenv(name, value)
        endpoint.go_down("hang")
        yield endpoint


async def test_credential_resolution_has_a_deadline_and_a_stuck_fetch_is_joined_not_repeated(
        hanging_container: ContainerCredentialsEndpoint) -> None:
    source = AwsCredentialSource(timeout_seconds=0.5)
    try:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(SpeechModelError) as raised:
                await source.resolve()
            assert 0.45 < time.monotonic() - started < 1.0
            assert raised.value.code == "credentials_timeout"
            assert raised.value.retryable
        assert hanging_container.requests == 1  # one blocked fetch in its thread, not three piling up
    finally:
        hanging_container.go_up()
        source.close()


async def test_no_response_headers_is_a_response_timeout_and_the_guest_is_told(settings, store, bookings, certs,
                                                                              monkeypatch) -> None:
    # A listener that accepts connections and never says a word (a black-holed load balancer).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"https://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
    model = NovaSonicModel(settings, response_timeout=1.0)
    manager = SessionManager(model, bookings, store, settings, session_secret=SECRET,
                             config=SessionConfig(give_up_seconds=3.0, backoff_initial_seconds=0.05))
    output = RecordingOutput()
    session = await manager.create(output)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable):
            await session.start()
    finally:
        await model.close()
        listener.close()
    assert time.monotonic() - started < 3.0 + 1.0
    [error] = output.of_type("error")
    assert error["code"] in ("response_timeout", "connect_timeout", "connection_error")


async def test_give_up_deadline_ends_retries_even_with_attempts_left(settings, store, bookings, certs,
                                                                    monkeypatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"https://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("NOVA_SONIC_CA_BUNDLE", certs.ca_file)
    model = NovaSonicModel(settings, response_timeout=5.0)  # one attempt alone outlasts the give-up deadline
    manager = SessionManager(model, bookings, store, settings, session_secret=SECRET,
                             config=SessionConfig(give_up_seconds=1.5, max_attempts=20))
    output = RecordingOutput()
    session = await manager.create(output)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable):
            await session.start()
    finally:
        await model.close()
        listener.close()
    assert time.monotonic() - started < 1.5 + 1.0
    assert len(output.of_type("error")) == 1


def test_the_guard_fails_a_test_that_loses_a_task_exception(tmp_path: Path) -> None:
    """The root conftest's guard must catch what asyncio only reports at garbage collection."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(textwrap.dedent('''
        import asyncio

        async def boom() -> None:
            raise RuntimeError("lost failure")

        async def test_loses_one() -> None:
            asyncio.get_running_loop().create_task(boom())  # nobody awaits it
            await asyncio.sleep(0.05)

        async def test_retrieves_one() -> None:
            task = asyncio.get_running_loop().create_task(boom())
            await asyncio.wait({task})
            assert isinstance(task.exception(), RuntimeError)
    '''))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(probe)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # Both tests' bodies pass; the one that lost its task's failure errors at teardown.
    assert "2 passed, 1 error" in output, output
    assert "ERROR at teardown of test_loses_one" in output, output
    assert "Task exception was never retrieved: RuntimeError: lost failure" in output, output


async def test_the_event_loop_stays_responsive_while_a_credentials_fetch_hangs(
        hanging_container: ContainerCredentialsEndpoint) -> None:
    source = AwsCredentialSource(timeout_seconds=1.0)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(SpeechModelError):
            await source.resolve()
    finally:
        ticker.cancel()
        hanging_container.go_up()
        source.close()
    assert ticks > 50  # ~100 expected; a blocking fetch on the loop would give 0


@pytest.mark.parametrize(("status", "error_id", "code", "retryable"), [
    (403, "UnrecognizedClientException", "invalid_credentials", False),
    (403, "InvalidSignatureException", "invalid_signature", False),
    (403, "ExpiredTokenException", "credentials_expired", True),
    (403, "AccessDeniedException:", "access_denied", False),
    (403, None, "access_denied", False),
    (503, None, "service_unavailable", True),
])
def test_service_errors_the_sdk_does_not_model_are_classified(status: int, error_id: str | None, code: str,
                                                              retryable: bool) -> None:
    # As smithy_http's RestJson protocol builds them for an error type outside the model.
    message = f"Unknown error for operation com.amazonaws.bedrockruntime#InvokeModelWithBidirectionalStream " \
              f"- status: {status}" + (f" - id: {error_id}" if error_id else "")
    error = CallError(message=message, fault="client" if status < 500 else "server")
    error.response_metadata = ResponseMetadata(http_status_code=status)
    mapped = map_error(error)
    assert (mapped.code, mapped.retryable) == (code, retryable)
