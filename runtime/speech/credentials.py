"""AWS credentials for the Bedrock SDK the way a deployed task or host gets them, with a deadline.

Why botocore's provider chain and not the SDK's own: aws-sdk-bedrock-runtime 0.12's default chain covers
only environment variables, profile files and ``credential_process``; the ECS container endpoint and IMDS
need extra packages, and SSO and web identity are not there at all. botocore (already a pinned dependency
for DynamoDB) has the complete, long-maintained chain - environment, shared config/credentials files and
profiles, SSO, web identity (EKS/IRSA), assume-role, ``credential_process``, the container endpoint
(``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` / ``_FULL_URI`` with ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` or
``_TOKEN_FILE``) and IMDSv2 - and ``RefreshableCredentials`` that refresh temporary keys before they expire
(advisory 15 min, mandatory 10 min ahead). Its fetches go over urllib3 (HTTP/1.1), never through the CRT
transport the SDK forces to HTTP/2, which the container endpoint and IMDS do not speak.

botocore is blocking, so every fetch runs in a worker thread (``_fetch``) under a deadline: the event
loop carries live audio and must never wait on a credentials endpoint. A thread cannot be cancelled, so a
timed-out fetch is left to finish on its own (botocore bounds it: container 3 x 2 s, IMDS 1 x 1 s) and the
next request joins it instead of starting another.

Streams and signing: the SDK asks the identity resolver for credentials when it signs the request *and
for every event frame* it sends (smithy_aws_event_stream ``AWSEventPublisher.send``), i.e. ~30 times a
second. ``StreamIdentityResolver`` therefore answers from a context variable holding the identity the
current stream was opened with (``pinned``); ``NovaSonicModel`` resolves it once per stream, off the loop,
with the deadline, and pins it around the request and around each send. So a stream signs all its frames
with one key (the signature chain of its events starts from the request's signature), and every new stream
- each renewal of a long call - signs with whatever is current. A stream lives at most 8 minutes and
botocore hands out keys with at least 10 minutes left (or fetches new ones), so a pinned key does not
expire mid-stream for real temporary credentials.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import botocore.exceptions
import botocore.session
from botocore.credentials import Credentials
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_core.exceptions import SmithyIdentityError

from runtime.speech.model import SpeechModelError

log = logging.getLogger("runtime.speech.credentials")

_PINNED: contextvars.ContextVar[AWSCredentialsIdentity | None] = contextvars.ContextVar(
    "nova_sonic_stream_identity", default=None)


@contextlib.contextmanager
def pinned(identity: AWSCredentialsIdentity) -> Iterator[None]:
    """Make ``identity`` the one the SDK signs with in this context (and tasks created from it)."""
    token = _PINNED.set(identity)
    try:
        yield
    finally:
        _PINNED.reset(token)


def classify(exc: BaseException) -> SpeechModelError:
    """A credential failure as the session core's error: transient outages retry, wrong setup does not."""
    if isinstance(exc, SpeechModelError):
        return exc
    message = f"AWS credentials: {exc}" if str(exc) else f"AWS credentials: {type(exc).__name__}"
    if isinstance(exc, TimeoutError):
        return SpeechModelError(message, code="credentials_timeout", retryable=True)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return SpeechModelError(message, code="credentials_missing", retryable=False)
    text = str(exc)
    # The container endpoint refusing our token (botocore: "Received non 200 response (401|403) ...") will
    # not change on retry; connection refused, 5xx, timeouts may (the ECS agent restarting).
    if any(f"non 200 response ({status})" in text or f"non 200 response {status}" in text
           for status in (400, 401, 403, 404)):
        return SpeechModelError(message, code="credentials_refused", retryable=False)
    if isinstance(exc, (botocore.exceptions.CredentialRetrievalError, botocore.exceptions.MetadataRetrievalError,
                        botocore.exceptions.HTTPClientError, OSError, RuntimeError)):
        return SpeechModelError(message, code="credentials_unavailable", retryable=True)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        # Misconfiguration: unknown profile, broken config file, SSO token missing...
        return SpeechModelError(message, code="credentials_invalid", retryable=False)
    return SpeechModelError(message, code="credentials_unavailable", retryable=True)


class AwsCredentialSource:
    """botocore's default credential chain, resolved and refreshed in a worker thread under a deadline."""

    def __init__(self, *, timeout_seconds: float,
                 session: botocore.session.Session | None = None) -> None:
        self._timeout = timeout_seconds
        self._session = session
        self._credentials: Credentials | None = None
        # One dedicated thread: fetches are serialised (botocore locks anyway) and a stuck endpoint can
        # never starve the default executor that other parts of the runtime use.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="aws-credentials")
        self._inflight: asyncio.Future[AWSCredentialsIdentity] | None = None
        self.resolutions = 0  # completed resolutions (diagnostics)

    def _fetch(self) -> AWSCredentialsIdentity:
        """Blocking: find credentials (first time or after a failure), then refresh them if due."""
        credentials = self._credentials
        if credentials is None:
            # A fresh botocore session re-reads the environment and files, so a fixed setup is picked up.
            session = self._session or botocore.session.Session()
            credentials = session.get_credentials()
            if credentials is None:
                raise botocore.exceptions.NoCredentialsError()
        try:
            frozen = credentials.get_frozen_credentials()  # RefreshableCredentials refresh here when due
        except Exception:
            self._credentials = None  # start from the chain again next time
            raise
        self._credentials = credentials
        if not frozen.access_key or not frozen.secret_key:
            raise botocore.exceptions.NoCredentialsError()
        # No ``expiration`` on purpose: aws_sdk_signers refuses to sign with an expired identity, and a
        # stream keeps the key it opened with for its event frames (see the module docstring).
        return AWSCredentialsIdentity(access_key_id=frozen.access_key, secret_access_key=frozen.secret_key,
                                      session_token=frozen.token or None)

    async def resolve(self) -> AWSCredentialsIdentity:
        """Current credentials; raises ``SpeechModelError`` (classified) within ``timeout_seconds``."""
        loop = asyncio.get_running_loop()
        if self._inflight is None or self._inflight.done():
            future = loop.run_in_executor(self._executor, self._fetch)
            # Retrieve the outcome even when every waiter timed out, so it is never reported as lost.
            future.add_done_callback(_consume)
            self._inflight = future
        try:
            async with asyncio.timeout(self._timeout):
                identity = await asyncio.shield(self._inflight)
        except TimeoutError as exc:
            raise classify(TimeoutError(f"no credentials within {self._timeout:g} s")) from exc
        except Exception as exc:
            error = classify(exc)
            log.warning("resolving AWS credentials failed: %s (%s)", exc, error.code)
            raise error from exc
        self.resolutions += 1
        return identity

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class StreamIdentityResolver:
    """The smithy ``IdentityResolver`` given to the SDK config: the pinned stream identity, else the source.

    The fallback (no pinned identity) only serves callers outside ``NovaSonicModel``; it is bounded by the
    source's deadline like everything else.
    """

    def __init__(self, source: AwsCredentialSource) -> None:
        self._source = source

    async def get_identity(self, *, properties: Mapping[str, Any]) -> AWSCredentialsIdentity:
        identity = _PINNED.get()
        if identity is not None:
            return identity
        try:
            return await self._source.resolve()
        except SpeechModelError as exc:
            raise SmithyIdentityError(str(exc)) from exc

    async def invalidate(self) -> None:
        return None
