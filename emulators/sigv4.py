"""SigV4 verification for local AWS stand-ins: the HTTP request, then the event-stream signature chain.

A stand-in that accepts any signature proves nothing about signing, credential rotation or the session
token; this module refuses a request exactly where AWS would, with the error code, message and status AWS
returns (JSON body ``{"message": ...}`` plus an ``x-amzn-errortype`` header), looking the access key up
in an ``emulators.identity.CredentialBook``.

Which signing code recomputes the signatures, and why:

- The request signature is recomputed with **botocore's** ``SigV4Auth`` (canonical request, string to
  sign, signing key). botocore is AWS's long-standing reference implementation and is *independent* of
  ``aws_sdk_signers``, which the Bedrock SDK client signs with: a bug in the client's signer then shows
  up as a refused request instead of being mirrored by the verifier.
- The event chunk signatures (``:date`` + ``:chunk-signature``, chained from the request's signature)
  follow the string-to-sign of ``aws_sdk_signers.AsyncEventSigner`` (``AWS4-HMAC-SHA256-PAYLOAD``; botocore
  has no event-stream signer). That class cannot *verify* - it always stamps ``:date`` with the current
  time - so the six-line string to sign is built here and the HMAC with botocore's signing-key
  derivation (``SigV4Auth.signature``); the ``:date`` header is re-encoded with the SDK's own event-stream
  header encoder so the bytes hashed are the bytes the client hashed.

Public API: ``verify_request(...) -> VerifiedRequest`` and ``EventSignatureChain(verified).verify(msg)``;
both raise ``SigV4Error`` (``code``, ``message``, ``status``; ``body()`` and ``headers()`` give the AWS
error response).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage

from emulators.identity import CredentialBook, IssuedCredentials

EVENT_STREAM_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
# AWS refuses a signature whose X-Amz-Date is more than 5 minutes from its clock
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/signing-elements.html, "Date").
MAX_CLOCK_SKEW_SECONDS = 300.0
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")

# The messages AWS sends for each refusal (observed on AWS JSON/REST-JSON services, Bedrock among them).
INVALID_TOKEN = "The security token included in the request is invalid."  # noqa: S105 - an error text
EXPIRED_TOKEN = "The security token included in the request is expired"  # noqa: S105 - an error text
BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                 "Secret Access Key and signing method. Consult the service documentation for details.")


class SigV4Error(Exception):
    """A refusal as AWS sends it: ``x-amzn-errortype: code``, HTTP ``status``, body ``{"message": ...}``."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> bytes:
        return json.dumps({"message": self.message}).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", b"application/json"), (b"x-amzn-errortype", self.code.encode())]


@dataclass(frozen=True)
class VerifiedRequest:
    """What a valid signature established: who signed, for which scope, and the chain's seed signature."""

    credentials: IssuedCredentials
    region: str
    service: str
    amz_date: str
    signature: str


def _amz_time(value: str) -> float:
    return dt.datetime.strptime(value, _AMZ_DATE).replace(tzinfo=dt.UTC).timestamp()


def _fmt(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(_AMZ_DATE)


def check_skew(amz_date: str, now: float, max_skew: float = MAX_CLOCK_SKEW_SECONDS) -> None:
    """AWS's wording for a signing time outside the allowed window (InvalidSignatureException, 403)."""
    signed_at = _amz_time(amz_date)
    if signed_at < now - max_skew:
        raise SigV4Error("InvalidSignatureException",
                         f"Signature expired: {amz_date} is now earlier than {_fmt(now - max_skew)} "
                         f"({_fmt(now)} - {int(max_skew // 60)} min.)")
    if signed_at > now + max_skew:
        raise SigV4Error("InvalidSignatureException",
                         f"Signature not yet current: {amz_date} is still later than {_fmt(now + max_skew)} "
                         f"({_fmt(now)} + {int(max_skew // 60)} min.)")


def verify_request(*, method: str, path: str, query: str, headers: Mapping[str, str], book: CredentialBook,
                   service: str, region: str | None = None, payload_hash: str | None = None,
                   body: bytes = b"", now: float | None = None,
                   max_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS) -> VerifiedRequest:
    """Verify a SigV4-signed request the way AWS does, in AWS's order of checks.

    ``path`` is the raw (still percent-encoded) request path, ``query`` the raw query string, ``headers``
    lower-case names. The payload hash in the canonical request is ``payload_hash`` if given, else the
    signed ``x-amz-content-sha256`` header, else the SHA-256 of ``body``. ``region=None`` accepts any
    region in the credential scope. Returns the credentials used; raises ``SigV4Error``.
    """
    now = time.time() if now is None else now
    authorization = headers.get("authorization")
    if not authorization:
        raise SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.match(authorization.strip())
    if match is None:
        raise SigV4Error("IncompleteSignatureException",
                         f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                         f"parameters. Authorization={authorization[:40]}", status=400)
    amz_date = headers.get("x-amz-date")
    if not amz_date or not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
        raise SigV4Error("IncompleteSignatureException",
                         "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                         status=400)
    signed = match.group("signed").split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            raise SigV4Error("InvalidSignatureException", f"'{required}' must be a 'SignedHeader' in the "
                             "AWS Authorization.")
    missing = [name for name in signed if name not in headers]
    if missing:
        raise SigV4Error("InvalidSignatureException", BAD_SIGNATURE)

    credentials = book.lookup(match.group("key"))
    token = headers.get("x-amz-security-token")
    if credentials is None:
        raise SigV4Error("UnrecognizedClientException", INVALID_TOKEN)
    # Temporary keys (STS, the ECS/IMDS endpoints) are only valid together with their session token; a
    # long-term key must not carry one.
    if credentials.session_token is not None and token != credentials.session_token:
        raise SigV4Error("UnrecognizedClientException", INVALID_TOKEN)
    if credentials.session_token is None and token:
        raise SigV4Error("UnrecognizedClientException", INVALID_TOKEN)
    if credentials.expired(now):
        raise SigV4Error("ExpiredTokenException", EXPIRED_TOKEN)
    if token is not None and "x-amz-security-token" not in signed:
        raise SigV4Error("InvalidSignatureException", BAD_SIGNATURE)

    scope_region, scope_service = match.group("region"), match.group("service")
    if match.group("date") != amz_date[:8]:
        raise SigV4Error("InvalidSignatureException",
                         f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                         f"HTTP: '{match.group('date')}' != '{amz_date[:8]}', from '{amz_date}'.")
    if scope_service != service:
        raise SigV4Error("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'. ")
    if region is not None and scope_region != region:
        raise SigV4Error("InvalidSignatureException", "Credential should be scoped to a valid region. ")
    check_skew(amz_date, now, max_skew_seconds)

    expected = compute_request_signature(
        method=method, path=path, query=query, signed_headers={name: headers[name] for name in signed},
        credentials=credentials, region=scope_region, service=service, amz_date=amz_date,
        payload_hash=payload_hash, body=body)
    if expected != match.group("signature"):
        raise SigV4Error("InvalidSignatureException", BAD_SIGNATURE)
    return VerifiedRequest(credentials, scope_region, service, amz_date, expected)


def compute_request_signature(*, method: str, path: str, query: str, signed_headers: Mapping[str, str],
                              credentials: IssuedCredentials, region: str, service: str, amz_date: str,
                              payload_hash: str | None = None, body: bytes = b"") -> str:
    """The signature botocore's SigV4Auth gives for exactly these signed headers (hex)."""
    host = signed_headers.get("host", "localhost")
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=dict(signed_headers), data=body)
    request.context["timestamp"] = amz_date
    signer = _Verifier(Credentials(credentials.access_key_id, credentials.secret_access_key,
                                   credentials.session_token), service, region, payload_hash)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)  # type: ignore[no-any-return]


class _Verifier(SigV4Auth):
    """botocore's SigV4Auth with an explicit payload hash (an unsigned body hash the caller knows)."""

    def __init__(self, credentials: Credentials, service: str, region: str, payload_hash: str | None) -> None:
        super().__init__(credentials, service, region)
        self._payload_hash = payload_hash

    def payload(self, request: Any) -> str:
        if self._payload_hash is not None:
            return self._payload_hash
        return super().payload(request)  # type: ignore[no-any-return]


class EventSignatureChain:
    """Verifies each signed envelope of an event-stream request body against the running chain.

    The seed is the request's signature; every envelope carries ``:date`` (a timestamp header) and
    ``:chunk-signature`` (32 raw bytes) and its payload is the encoded inner message; the final envelope has
    an empty payload. A wrong, missing or out-of-order signature raises ``SigV4Error``.
    """

    def __init__(self, verified: VerifiedRequest, *, max_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS) -> None:
        self._verified = verified
        self._prior = verified.signature
        self._max_skew = max_skew_seconds
        self._signer = SigV4Auth(Credentials(verified.credentials.access_key_id,
                                             verified.credentials.secret_access_key,
                                             verified.credentials.session_token),
                                 verified.service, verified.region)
        self.verified_events = 0

    def verify(self, message: EventMessage, *, now: float | None = None) -> None:
        date = message.headers.get(":date")
        signature = message.headers.get(":chunk-signature")
        if not isinstance(date, dt.datetime) or not isinstance(signature, bytes):
            raise SigV4Error("InvalidSignatureException", "Event is missing its :date or :chunk-signature header.")
        timestamp = date.astimezone(dt.UTC).strftime(_AMZ_DATE)
        check_skew(timestamp, time.time() if now is None else now, self._max_skew)
        encoder = EventHeaderEncoder()
        encoder.encode_headers({":date": date})
        scope = f"{timestamp[:8]}/{self._verified.region}/{self._verified.service}/aws4_request"
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, self._prior,
            sha256(encoder.get_result()).hexdigest(), sha256(message.payload).hexdigest()])
        request = AWSRequest(method="POST", url="https://localhost/")
        request.context["timestamp"] = timestamp
        expected = self._signer.signature(string_to_sign, request)
        if expected != signature.hex():
            raise SigV4Error("InvalidSignatureException", BAD_SIGNATURE)
        self._prior = expected
        self.verified_events += 1
