"""Amazon Nova Sonic over Bedrock bidirectional streaming (aws-sdk-bedrock-runtime 0.12).

SDK 0.12 facts this module is built around (reference/nova-sonic.md §3):

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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from copy import deepcopy
from typing import Any

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
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig

from runtime.settings import Settings
from runtime.speech.model import NovaEvent, SpeechModelError, SpeechStream, StreamOptions

log = logging.getLogger("runtime.speech.nova_sonic")

CA_BUNDLE_ENV = "NOVA_SONIC_CA_BUNDLE"
SEND_TIMEOUT_SECONDS = 5.0

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
    (ServiceQuotaExceededException, "quota_exceeded", False),
    (AccessDeniedException, "access_denied", False),
    (ResourceNotFoundException, "model_not_found", False),
]


def map_error(exc: BaseException) -> SpeechModelError:
    """Translate an SDK / transport failure into the seam's error with its retry verdict."""
    if isinstance(exc, SpeechModelError):
        return exc
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    if isinstance(exc, ValidationException):
        transient = any(marker in message for marker in _TRANSIENT_VALIDATION)
        return SpeechModelError(message, code="validation_transient" if transient else "validation_error",
                                retryable=transient)
    for kind, code, retryable in _ERROR_CODES:
        if isinstance(exc, kind):
            return SpeechModelError(message, code=code, retryable=retryable)
    # Connection resets, TLS or socket failures (the SDK wraps the CRT's error in a SmithyError): a new
    # stream on a new connection may well work.
    cause: BaseException | None = exc
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


_CLOSED = object()


class NovaSonicStream:
    """One bidirectional stream: serialised sends, and a reader task feeding ``receive``."""

    def __init__(self, duplex: Any, *, response_timeout: float = 10.0) -> None:
        self._duplex = duplex
        self._response_timeout = response_timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._ready = asyncio.Event()
        self._established = False  # the service answered: the connection reads our input
        self._failure: SpeechModelError | None = None
        self._reader = asyncio.create_task(self._read(), name="nova-sonic-reader")

    async def _read(self) -> None:
        try:
            # Never wait_for() the output: a timeout would cancel the request and kill the stream.
            waiting = asyncio.ensure_future(self._duplex.await_output())
            done, _ = await asyncio.wait({waiting}, timeout=self._response_timeout)
            if not done:
                waiting.cancel()
                raise SpeechModelError("no response from the model endpoint", code="connect_timeout",
                                       retryable=True)
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

        Not part of the SpeechStream seam; the session core calls it when a stream has it, after the
        prompt setup and before history and audio (livekit found that sending audio before the
        stream is ready gives "Chat history should be sent completely before streaming audio").
        """
        await self._ready.wait()
        if self._failure is not None:
            raise self._failure

    async def send(self, event: NovaEvent) -> None:
        if self._closed:
            raise SpeechModelError("stream is closed", code="stream_closed", retryable=True)
        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode()))
        if self._failure is not None:
            raise self._failure
        # Event-stream signatures chain from one frame to the next: frames must go out one at a time.
        async with self._send_lock:
            try:
                # A dead connection leaves the request body unread and the write blocked for good.
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await self._duplex.input_stream.send(chunk)
            except TimeoutError:
                self._failure = SpeechModelError("the model stopped reading input", code="connection_error",
                                                 retryable=True)
                raise self._failure from None
            except Exception as exc:
                raise map_error(exc) from exc

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
        if self._established or not self._ready.is_set():
            # Sends the signed empty end frame; bounded because a dead connection never reads it.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0), self._send_lock:
                    await self._duplex.input_stream.close()
        # Give the service a moment to finish the response before dropping the reader.
        with contextlib.suppress(Exception):
            await asyncio.wait({self._reader}, timeout=1.0)
        self._reader.cancel()
        await asyncio.wait({self._reader}, timeout=1.0)  # unlike awaiting it, never swallows our own cancel
        output = getattr(self._duplex, "output_stream", None)
        if output is not None:
            with contextlib.suppress(Exception):
                await output.close()


class NovaSonicModel:
    """``SpeechModel`` backed by Amazon Nova Sonic; one SDK client per process, one stream per segment."""

    name = "nova-sonic"

    def __init__(self, settings: Settings, *, ca_file: str | None = None, endpoint_uri: str | None = None,
                 connect_timeout_ms: int = 5000, response_timeout: float = 10.0) -> None:
        self._settings = settings
        self._response_timeout = response_timeout
        self._ca_file = ca_file or os.environ.get(CA_BUNDLE_ENV) or None
        self._endpoint_uri = endpoint_uri
        self._connect_timeout_ms = connect_timeout_ms
        self._client: AsyncBedrockRuntimeClient | None = None
        self._lock = asyncio.Lock()

    @property
    def model_id(self) -> str:
        return self._settings.nova_sonic_model_id

    async def _ensure_client(self) -> AsyncBedrockRuntimeClient:
        async with self._lock:
            if self._client is None:
                overrides: dict[str, Any] = {
                    "region": self._settings.bedrock_region,
                    "transport": TrustingCRTClient(ca_file=self._ca_file,
                                                   connect_timeout_ms=self._connect_timeout_ms),
                }
                if self._endpoint_uri:
                    overrides["endpoint_uri"] = self._endpoint_uri
                config = await AsyncBedrockRuntimeConfig.resolve(**overrides)
                self._client = AsyncBedrockRuntimeClient(config=config)
            return self._client

    async def open(self, options: StreamOptions) -> SpeechStream:
        try:
            client = await self._ensure_client()
            duplex = await client.invoke_model_with_bidirectional_stream(
                InvokeModelWithBidirectionalStreamOperationInput(model_id=self.model_id))
        except Exception as exc:
            raise map_error(exc) from exc
        log.debug("opened Nova Sonic stream", extra={"session_id": options.session_id, "model": self.model_id})
        return NovaSonicStream(duplex, response_timeout=self._response_timeout)

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
