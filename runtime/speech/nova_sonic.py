"""Amazon Nova Sonic over Bedrock bidirectional streaming (aws-sdk-bedrock-runtime 0.12).

SDK 0.12 facts this module is built around (docs/nova-sonic.md):

- ``AsyncBedrockRuntimeConfig.resolve`` is the only way to make a config; the default transport
  (aiohttp) cannot do duplex streams, so the CRT transport is passed explicitly.
- One client (and so one CRT connection pool with one HTTP/2 connection) serves every stream of the
  process; renewal opens another HTTP/2 stream on it, which is fast.
- ``asyncio.wait_for(stream.await_output(), ...)`` would cancel the request task on timeout and kill
  the stream, so output is read by one long-lived task per stream that feeds a queue.
- Modelled errors are raised by ``receive()``; they are mapped to ``SpeechModelError`` here so the
  session core never imports the SDK.

Endpoint and trust: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` overrides the endpoint (the SDK reads it),
and ``NOVA_SONIC_CA_BUNDLE`` names an extra PEM file of trusted CAs. Tests use both to point this
exact code at the local emulator; production sets neither.

Credentials and deadlines (docs/credentials-and-deadlines.md): credentials come from botocore's chain
(``runtime.speech.credentials``), resolved once per stream off the event loop under
``AWS_CREDENTIALS_TIMEOUT_SECONDS``. SDK 0.12's ``duplex_stream`` awaits a future that is only set once
the request is signed and handed to the transport: any failure before that (credentials, endpoint,
signing) leaves ``invoke_model_with_bidirectional_stream`` waiting forever and the failed request task
unretrieved. ``open`` therefore resolves credentials and checks the region itself first, watches the
request task through an interceptor (``_Opening``), and bounds the call by ``SPEECH_CONNECT_TIMEOUT_SECONDS``;
the first response is bounded by ``SPEECH_RESPONSE_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import os
import weakref
from collections.abc import Iterator
from copy import deepcopy
from typing import Any

import botocore.loaders
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    AccessDeniedException,
    BidirectionalInputPayloadPart,
    InternalServerException,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
    InvokeModelWithBidirectionalStreamOutputChunk,
    ModelErrorException,
    ModelNotReadyException,
    ModelStreamErrorException,
    ModelTimeoutException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ServiceUnavailableException,
    ThrottlingException,
    ValidationException,
)
from awscrt import io as crt_io
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.exceptions import InvalidEventBytes
from smithy_core.exceptions import CallError, SmithyIdentityError
from smithy_core.interceptors import Interceptor, OutputContext
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig

from runtime.settings import Settings
from runtime.speech.credentials import AwsCredentialSource, StreamIdentityResolver, pinned
from runtime.speech.model import NovaEvent, SpeechModelError, SpeechStream, StreamOptions

log = logging.getLogger("runtime.speech.nova_sonic")

CA_BUNDLE_ENV = "NOVA_SONIC_CA_BUNDLE"
SEND_TIMEOUT_SECONDS = 5.0
_CLOSING_EVENTS = ("contentEnd", "promptEnd", "sessionEnd")

# ValidationException texts that are really transient service faults (livekit#6010, strands 531).
_TRANSIENT_VALIDATION = ("System instability detected", "RST_STREAM", "InternalErrorCode=531")

_ERROR_CODES: list[tuple[type[Exception], str, bool]] = [
    (ModelTimeoutException, "model_timeout", True),
    (ThrottlingException, "throttled", True),
    (ModelStreamErrorException, "model_stream_error", True),
    (InternalServerException, "internal_server_error", True),
    (ServiceUnavailableException, "service_unavailable", True),
    (ModelNotReadyException, "model_not_ready", True),
    (ModelErrorException, "model_error", True),
    (InvalidEventBytes, "invalid_event_bytes", True),  # an output frame cut short: a new stream may work
    (ServiceQuotaExceededException, "quota_exceeded", False),
    (AccessDeniedException, "access_denied", False),
    (ResourceNotFoundException, "model_not_found", False),
]


# Errors the service answers with before any stream exists (HTTP 403/400, AWS error shape), which the SDK
# reports as an unmodelled CallError naming the type: bad keys or signatures never get better by retrying;
# an expired token does once fresh credentials are fetched.
_AUTH_ERRORS: list[tuple[str, str, bool]] = [
    ("ExpiredToken", "credentials_expired", True),
    ("UnrecognizedClient", "invalid_credentials", False),
    ("InvalidSignature", "invalid_signature", False),
    ("SignatureDoesNotMatch", "invalid_signature", False),
    ("IncompleteSignature", "invalid_signature", False),
    ("MissingAuthenticationToken", "invalid_credentials", False),
    ("InvalidClientTokenId", "invalid_credentials", False),
    ("AccessDenied", "access_denied", False),
]
# CRT errors that mean "no such host": a wrong region or endpoint name, not a passing fault.
_CRT_NO_HOST = ("AWS_IO_DNS_INVALID_NAME", "AWS_IO_DNS_NO_ADDRESS_FOR_HOST")


def map_error(exc: BaseException) -> SpeechModelError:
    """Translate an SDK / transport failure into the seam's error with its retry verdict."""
    if isinstance(exc, SpeechModelError):
        return exc
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    if isinstance(exc, SmithyIdentityError):
        return SpeechModelError(message, code="credentials_unavailable", retryable=True)
    if isinstance(exc, ValidationException):
        transient = any(marker in message for marker in _TRANSIENT_VALIDATION)
        return SpeechModelError(message, code="validation_transient" if transient else "validation_error",
                                retryable=transient)
    for kind, code, retryable in _ERROR_CODES:
        if isinstance(exc, kind):
            return SpeechModelError(message, code=code, retryable=retryable)
    if type(exc) is CallError:
        for marker, code, retryable in _AUTH_ERRORS:
            if marker in message:
                return SpeechModelError(message, code=code, retryable=retryable)
        status = exc.response_metadata.http_status_code
        if status in (401, 403):
            return SpeechModelError(message, code="access_denied", retryable=False)
        if exc.fault == "server" or exc.is_throttling_error or exc.is_timeout_error:
            return SpeechModelError(message, code="service_unavailable", retryable=True)
    # Connection resets, TLS or socket failures (the SDK wraps the CRT's error in a SmithyError): a new
    # stream on a new connection may well work.
    cause: BaseException | None = exc
    while cause is not None:
        if any(name in str(cause) for name in _CRT_NO_HOST):
            return SpeechModelError(message, code="endpoint_not_found", retryable=False)
        cause = cause.__cause__
    cause = exc
    while cause is not None:
        if isinstance(cause, (OSError, TimeoutError)) or type(cause).__name__ in (
                "AwsCrtError", "SmithyHTTPError", "_CRTTimeoutError"):
            return SpeechModelError(message, code="connection_error", retryable=True)
        cause = cause.__cause__
    return SpeechModelError(message, code="model_failure", retryable=False)


class TrustingCRTClient(AWSCRTHTTPClient):
    """The CRT transport, optionally trusting one extra CA bundle and with a chosen connect timeout.

    The CRT builds its TLS context privately (``_tls_ctx``) with the system trust store only, so the
    only way to add a CA without replacing the process-wide ``SSL_CERT_FILE`` is to rebuild that
    context here. ``__deepcopy__`` is overridden because the SDK deep-copies the config and the base
    class would rebuild a plain client, losing the trust.
    """

    def __init__(self, *, ca_file: str | None = None, connect_timeout_ms: int = 5000,
                 client_config: AWSCRTHTTPClientConfig | None = None, **kwargs: Any) -> None:
        super().__init__(client_config=client_config or AWSCRTHTTPClientConfig(force_http_2=True), **kwargs)
        self._ca_file = ca_file
        self._connect_timeout_ms = connect_timeout_ms
        self._socket_options.connect_timeout_ms = connect_timeout_ms
        if ca_file:
            options = crt_io.TlsContextOptions()
            options.override_default_trust_store_from_path(None, ca_file)
            self._tls_ctx = crt_io.ClientTlsContext(options)

    def __deepcopy__(self, memo: Any) -> TrustingCRTClient:
        return TrustingCRTClient(ca_file=self._ca_file, connect_timeout_ms=self._connect_timeout_ms,
                                 client_config=deepcopy(self._config), eventloop=self._eventloop)

    async def _await_response(self, stream: Any) -> Any:
        """awscrt writes the request body of an HTTP/2 stream from a task it never awaits (``_writer``); when
        the service ends the stream first (limit, error) that task fails with "HTTP-stream has completed" and
        is reported as never retrieved. The failure is already known from the response side; retrieve it."""
        writer = getattr(stream, "_writer", None)
        if isinstance(writer, asyncio.Future):
            writer.add_done_callback(_retrieve_writer)
            opening = _OPENING.get()  # this runs inside the request task, which inherits ``open``'s context
            if opening is not None:
                opening.writer = writer  # so the stream can end it on close, whatever state the peer left
        return await super()._await_response(stream)

    async def _build_new_connection(self, url: Any) -> Any:
        """Never cancel a CRT connect half-way: awscrt then fails to complete the cancelled future from its
        own thread (``InvalidStateError: CANCELLED``). A caller that gives up (a deadline) leaves it to
        finish - bounded by the connect timeout, which also covers the TLS handshake - and it is closed."""
        attempt = asyncio.ensure_future(super()._build_new_connection(url))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(_close_unwanted_connection)
            raise


def _retrieve_writer(writer: asyncio.Future[Any]) -> None:
    if not writer.cancelled() and writer.exception() is not None:
        log.debug("request body writer ended: %s", writer.exception())


def _close_unwanted_connection(attempt: asyncio.Future[Any]) -> None:
    if attempt.cancelled() or attempt.exception() is not None:
        return
    closing = asyncio.ensure_future(attempt.result().close())
    closing.add_done_callback(lambda done: done.cancelled() or done.exception())


@functools.cache
def _known_regions() -> frozenset[str]:
    """Every region botocore's endpoint data names, in every partition (aws, aws-cn, aws-us-gov, ...)."""
    data = botocore.loaders.create_loader().load_data("endpoints")
    return frozenset(region for partition in data["partitions"] for region in partition.get("regions", {}))


def check_region(region: str | None) -> str:
    """Refuse a missing or unknown region at once: the SDK would fail it only inside its request task.

    Not retryable - the setting is wrong. botocore's partition data is the source (pinned with botocore);
    a region newer than that data needs a botocore upgrade.
    """
    if not region or region not in _known_regions():
        raise SpeechModelError(f"unknown AWS region {region!r} for Bedrock (BEDROCK_REGION)", code="unknown_region",
                               retryable=False)
    return region


class _Opening:
    """What ``open`` learns about the SDK's request task, which the SDK keeps to itself."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.writer: asyncio.Future[Any] | None = None  # awscrt's request-body writer task
        self.finished: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()


_OPENING: contextvars.ContextVar[_Opening | None] = contextvars.ContextVar("nova_sonic_opening", default=None)


@contextlib.contextmanager
def _watching(opening: _Opening) -> Iterator[None]:
    token = _OPENING.set(opening)
    try:
        yield
    finally:
        _OPENING.reset(token)


class _WatchRequest(Interceptor[Any, Any, Any, Any]):
    """Hands ``open`` the request task and its early failure (both hooks run inside that task)."""

    def read_before_execution(self, context: Any) -> None:
        opening = _OPENING.get()
        if opening is not None:
            opening.task = asyncio.current_task()

    def read_after_execution(self, context: OutputContext[Any, Any, Any, Any]) -> None:
        opening = _OPENING.get()
        if opening is not None and not opening.finished.done():
            response = context.response
            opening.finished.set_result(response if isinstance(response, BaseException) else None)

    def __deepcopy__(self, memo: Any) -> _WatchRequest:
        return self  # stateless; the SDK deep-copies its config once at setup


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a task's outcome as seen: its failure is reported through ``open``, not the loop's handler."""
    if not task.cancelled():
        task.exception()


_CLOSED = object()


class NovaSonicStream:
    """One bidirectional stream: serialised sends, and a reader task feeding ``receive``.

    ``identity`` is the credential the stream was opened with; every event frame is signed with it
    (``runtime.speech.credentials``).
    """

    def __init__(self, duplex: Any, *, identity: AWSCredentialsIdentity | None = None,
                 response_timeout: float = 10.0, opening: _Opening | None = None) -> None:
        self._duplex = duplex
        self._opening = opening
        self._identity = identity
        self._response_timeout = response_timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._ready = asyncio.Event()
        self._established = False  # the service answered: the connection reads our input
        self._failure: SpeechModelError | None = None
        self._reader = asyncio.create_task(self._read(), name="nova-sonic-reader")

    @contextlib.contextmanager
    def _signing(self) -> Iterator[None]:
        if self._identity is None:
            yield
        else:
            with pinned(self._identity):
                yield

    async def _read(self) -> None:
        waiting: asyncio.Future[Any] | None = None
        try:
            # Never wait_for() the output: a timeout would cancel the request and kill the stream.
            waiting = asyncio.ensure_future(self._duplex.await_output())
            done, _ = await asyncio.wait({waiting}, timeout=self._response_timeout)
            if not done:
                waiting.cancel()
                raise SpeechModelError(f"no response from the model endpoint within {self._response_timeout:g} s",
                                       code="response_timeout", retryable=True)
            _, output = waiting.result()
            self._established = True
            self._ready.set()
            while True:
                item = await output.receive()
                if item is None:
                    break
                if isinstance(item, InvokeModelWithBidirectionalStreamOutputChunk):
                    raw = item.value.bytes_ or b"{}"
                    self._queue.put_nowait(json.loads(raw))
                else:
                    log.debug("ignoring output union member %s", type(item).__name__)
        except asyncio.CancelledError:
            if waiting is not None:
                waiting.cancel()
                waiting.add_done_callback(_retrieve)
            raise
        except Exception as exc:
            self._failure = map_error(exc)
            self._queue.put_nowait(self._failure)
            return
        finally:
            self._ready.set()
        self._queue.put_nowait(_CLOSED)

    async def ready(self) -> None:
        """Wait for the service's response headers: proves the endpoint, TLS and credentials work.

        The session core awaits it after the prompt setup and before history and audio (livekit found
        that sending audio before the stream is ready gives "Chat history should be sent completely
        before streaming audio").
        Bounded by the response timeout (the reader gives up then).
        """
        await self._ready.wait()
        if self._failure is not None:
            raise self._failure

    async def send(self, event: NovaEvent) -> None:
        if self._closed:
            raise SpeechModelError("stream is closed", code="stream_closed", retryable=True)
        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode()))
        # After a modelled error the input side usually still works: the closing events (contentEnd,
        # promptEnd, sessionEnd) still go out so the old stream is ended as the protocol asks.
        if self._failure is not None and next(iter(event.get("event", {})), "") not in _CLOSING_EVENTS:
            raise self._failure
        # Event-stream signatures chain from one frame to the next: frames must go out one at a time.
        async with self._send_lock:
            try:
                # A dead connection leaves the request body unread and the write blocked for good.
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    with self._signing():
                        await self._duplex.input_stream.send(chunk)
            except TimeoutError:
                self._failure = SpeechModelError("the model stopped reading input", code="connection_error",
                                                 retryable=True)
                raise self._failure from None
            except Exception as exc:
                raise map_error(exc) from exc

    def abort(self) -> list[asyncio.Future[Any]]:
        """Drop the stream now, without the end frame (process shutdown); returns the tasks to let finish."""
        self._closed = True
        tasks: list[asyncio.Future[Any]] = [self._reader]
        self._reader.cancel()
        writer = self._opening.writer if self._opening is not None else None
        if writer is not None and not writer.done():
            writer.cancel()
            tasks.append(writer)
        return tasks

    async def receive(self) -> NovaEvent | None:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            return None
        if isinstance(item, SpeechModelError):
            self._queue.put_nowait(_CLOSED)
            raise item
        return item  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._established:
            # Sends the signed empty end frame; bounded because a dead connection never reads it.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0), self._send_lock:
                    with self._signing():
                        await self._duplex.input_stream.close()
            # Give the service a moment to finish the response before dropping the reader.
            with contextlib.suppress(Exception):
                await asyncio.wait({self._reader}, timeout=1.0)
        else:
            # Never answered (or refused, e.g. a 403): nothing to finish politely, and the caller may be
            # waiting on us to tell the guest. Drop the request, and end the request body too, or the
            # transport's body-writer task would wait for input until the process exits.
            self._reader.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5), self._send_lock:
                    with self._signing():
                        await self._duplex.input_stream.close()
        self._reader.cancel()
        await asyncio.wait({self._reader}, timeout=1.0)  # unlike awaiting it, never swallows our own cancel
        writer = self._opening.writer if self._opening is not None else None
        if writer is not None and not writer.done():
            # The end frame could not be written (a send held the lock on a dead connection): the body
            # writer would otherwise wait for input until the process exits.
            writer.cancel()
        output = getattr(self._duplex, "output_stream", None)
        if output is not None:
            with contextlib.suppress(Exception):
                await output.close()


class NovaSonicModel:
    """``SpeechModel`` backed by Amazon Nova Sonic; one SDK client per process, one stream per segment.

    Deadlines default to the settings (``AWS_CREDENTIALS_TIMEOUT_SECONDS``, ``SPEECH_CONNECT_TIMEOUT_SECONDS``,
    ``SPEECH_RESPONSE_TIMEOUT_SECONDS``); the keyword arguments override them for tests.
    """

    name = "nova-sonic"
    greets_unprompted = False  # it only answers input: the session asks it to greet (docs/greeting.md)

    def __init__(self, settings: Settings, *, ca_file: str | None = None, endpoint_uri: str | None = None,
                 connect_timeout_ms: int | None = None, response_timeout: float | None = None,
                 credentials_timeout: float | None = None,
                 credentials: AwsCredentialSource | None = None) -> None:
        self._settings = settings
        self._response_timeout = (settings.speech_response_timeout_seconds if response_timeout is None
                                  else response_timeout)
        self._ca_file = ca_file or os.environ.get(CA_BUNDLE_ENV) or None
        self._endpoint_uri = endpoint_uri
        self._connect_timeout_ms = (int(settings.speech_connect_timeout_seconds * 1000) if connect_timeout_ms is None
                                    else connect_timeout_ms)
        self.credentials = credentials or AwsCredentialSource(
            timeout_seconds=settings.aws_credentials_timeout_seconds if credentials_timeout is None
            else credentials_timeout)
        self._client: AsyncBedrockRuntimeClient | None = None
        self._lock = asyncio.Lock()
        self._streams: weakref.WeakSet[NovaSonicStream] = weakref.WeakSet()

    @property
    def model_id(self) -> str:
        return self._settings.nova_sonic_model_id

    @property
    def ready(self) -> bool:
        return True  # nothing to load: each stream proves the service itself (NovaSonicStream.ready)

    async def warm_up(self) -> None:
        """Nothing to load. Credentials and the connection are per stream, within its deadlines
        (docs/credentials-and-deadlines.md), so warming them here would only move the wait."""

    async def _ensure_client(self) -> AsyncBedrockRuntimeClient:
        async with self._lock:
            if self._client is None:
                overrides: dict[str, Any] = {
                    "region": self._settings.bedrock_region,
                    "transport": TrustingCRTClient(ca_file=self._ca_file,
                                                   connect_timeout_ms=self._connect_timeout_ms),
                    "aws_credentials_identity_resolver": _SharedResolver(self.credentials),
                    "interceptors": [_WatchRequest()],
                }
                if self._endpoint_uri:
                    overrides["endpoint_uri"] = self._endpoint_uri
                config = await AsyncBedrockRuntimeConfig.resolve(**overrides)
                self._client = AsyncBedrockRuntimeClient(config=config)
            return self._client

    async def open(self, options: StreamOptions) -> SpeechStream:
        """Open a stream within the deadlines, or raise a classified ``SpeechModelError``; never hangs."""
        check_region(self._settings.bedrock_region)
        identity = await self.credentials.resolve()  # bounded; classified
        connect_timeout = self._connect_timeout_ms / 1000
        try:
            async with asyncio.timeout(connect_timeout):
                client = await self._ensure_client()
        except TimeoutError as exc:
            raise SpeechModelError("setting up the Bedrock client took too long", code="connect_timeout",
                                   retryable=True) from exc
        except Exception as exc:
            raise map_error(exc) from exc
        duplex, opening = await self._invoke(client, identity, connect_timeout)
        log.debug("opened Nova Sonic stream", extra={"session_id": options.session_id, "model": self.model_id})
        stream = NovaSonicStream(duplex, identity=identity, response_timeout=self._response_timeout, opening=opening)
        self._streams.add(stream)
        return stream

    async def _invoke(self, client: AsyncBedrockRuntimeClient, identity: AWSCredentialsIdentity,
                      limit_seconds: float) -> tuple[Any, _Opening]:
        opening = _Opening()
        request = InvokeModelWithBidirectionalStreamOperationInput(model_id=self.model_id)
        # The request task and every task it starts copy this context: they sign with ``identity`` and
        # report to ``opening``.
        with pinned(identity), _watching(opening):
            opener = asyncio.ensure_future(client.invoke_model_with_bidirectional_stream(request))
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(limit_seconds):
                await asyncio.wait({opener, opening.finished}, return_when=asyncio.FIRST_COMPLETED)
                if not opener.done():
                    failure = opening.finished.result()
                    if failure is None:  # the request already succeeded; the SDK is about to hand it over
                        await asyncio.wait({opener})
        except TimeoutError:
            self._abandon(opener, opening)
            raise SpeechModelError(f"opening the stream took longer than {limit_seconds:g} s",
                                   code="connect_timeout", retryable=True) from None
        except BaseException:  # cancelled by the session's own deadline or hang-up
            self._abandon(opener, opening)
            raise
        if failure is not None:  # failed before the SDK handed the stream over: it would wait forever
            self._abandon(opener, opening)
            raise map_error(failure) from failure
        try:
            return opener.result(), opening
        except Exception as exc:
            raise map_error(exc) from exc

    @staticmethod
    def _abandon(opener: asyncio.Future[Any], opening: _Opening) -> None:
        """Stop an open that will not complete, leaving no task whose failure nobody retrieves."""
        for task in (opener, opening.task):
            if task is not None:
                task.cancel()
                task.add_done_callback(_retrieve)

    async def close(self) -> None:
        # Streams a session is still closing (or never closed) end now: their tasks must not outlive us.
        leftovers = [task for stream in list(self._streams) for task in stream.abort()]
        if leftovers:
            await asyncio.wait(leftovers, timeout=1.0)
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        self.credentials.close()


class _SharedResolver(StreamIdentityResolver):
    """The resolver the SDK config holds; shared, not copied, when the SDK deep-copies its config."""

    def __deepcopy__(self, memo: Any) -> _SharedResolver:
        return self
