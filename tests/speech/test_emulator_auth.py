"""The emulator verifies SigV4 as Bedrock does; the runtime turns each refusal into the right verdict.

Each test here passed against the previous emulator only by accident of leniency: it checked no signature,
so a wrong secret, an unknown key, an expired or missing session token or a wrong region all got a stream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from aws_sdk_signers import AsyncEventSigner, AWSCredentialIdentity, SigV4SigningProperties
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage

from emulators.identity import CredentialBook, IssuedCredentials
from emulators.nova_sonic import Say, Script, Turn
from emulators.sigv4 import EVENT_STREAM_PAYLOAD, EventSignatureChain, SigV4Error, verify_request
from runtime.speech import protocol as p
from runtime.speech.model import SpeechModelError, StreamOptions
from runtime.speech.nova_sonic import NovaSonicModel
from tests.speech.conftest import served_model, speak

pytestmark = pytest.mark.timeout(60)

KEY, SECRET, TOKEN = "ASIATESTTESTTEST0001", "the-right-secret", "the-session-token"


@pytest.fixture
def signing_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def use(key: str = KEY, secret: str = SECRET, token: str | None = TOKEN) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        if token is None:
            monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        else:
            monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    return use


served = served_model  # the emulator verifying against a given book, and the real client


async def _start(model: NovaSonicModel) -> None:
    async with asyncio.timeout(10):
        stream = await model.open(StreamOptions(session_id="auth-test"))
        try:
            await stream.send(p.session_start())
            await stream.receive()
        finally:
            await stream.close()


async def first_failure(model: NovaSonicModel) -> SpeechModelError:
    """Open a stream and start a session; the refusal surfaces at open or at the first receive."""
    with pytest.raises(SpeechModelError) as raised:
        await _start(model)
    return raised.value


def book_with(**changes: Any) -> CredentialBook:
    book = CredentialBook()
    book.add(IssuedCredentials(**{"access_key_id": KEY, "secret_access_key": SECRET, "session_token": TOKEN,
                                  "expires_at": time.time() + 3600, **changes}))
    return book


@pytest.mark.parametrize(("label", "book_changes", "env", "aws_code", "runtime_code", "retryable"), [
    ("wrong secret", {}, {"secret": "not-the-secret"}, "InvalidSignatureException", "invalid_signature", False),
    ("unknown key", {"access_key_id": "ASIAUNKNOWNUNKNOWN00"}, {}, "UnrecognizedClientException",
     "invalid_credentials", False),
    ("expired", {"expires_at": time.time() - 5}, {}, "ExpiredTokenException", "credentials_expired", True),
    ("no session token", {}, {"token": None}, "UnrecognizedClientException", "invalid_credentials", False),
    ("wrong session token", {}, {"token": "another-token"}, "UnrecognizedClientException",
     "invalid_credentials", False),
])
async def test_a_bad_signature_is_refused_with_the_services_403_and_classified(
        certs, settings, monkeypatch, signing_env, label: str, book_changes: dict[str, Any], env: dict[str, Any],
        aws_code: str, runtime_code: str, retryable: bool) -> None:
    signing_env(**env)
    async with served(certs, settings, monkeypatch, book_with(**book_changes)) as (emulator, model):
        error = await first_failure(model)
    [refusal] = emulator.refusals
    assert (refusal.status, refusal.code) == (403, aws_code), label
    assert emulator.streams == []
    assert (error.code, error.retryable) == (runtime_code, retryable), (label, str(error))


async def test_a_request_signed_for_another_region_is_refused(certs, settings, monkeypatch, signing_env) -> None:
    signing_env()
    async with served(certs, settings, monkeypatch, book_with(), region="eu-west-1") as (emulator, model):
        error = await first_failure(model)
    assert emulator.refusals[0].code == "InvalidSignatureException"
    assert "region" in emulator.refusals[0].message
    assert (error.code, error.retryable) == ("invalid_signature", False)


async def test_valid_signatures_open_a_stream_and_every_event_signature_is_verified(harness) -> None:
    async with harness(Script([Turn("hello", Say("hi", 100))])) as h:
        session, out = await h.session()
        await speak(session)
        await out.wait_for(lambda: len(out.finals("ASSISTANT")) == 1)
        await session.end("done")
        await asyncio.sleep(0.1)
    [stream] = h.emulator.streams
    assert stream.access_key_id == "testing"
    # every input event arrived in an envelope whose chunk signature matched the chain
    assert stream.verified_events >= len(stream.events) > 10
    assert h.emulator.refusals == []


# --- the verifier itself, against independent signers ----------------------------------------------------

def _signed_headers(amz_date: str, secret: str = SECRET) -> dict[str, str]:
    request = AWSRequest(method="POST", url="https://127.0.0.1:8443/model/amazon.nova-2-sonic-v1%3A0/x",
                         headers={"x-amz-date": amz_date, "x-amz-security-token": TOKEN,
                                  "x-amz-content-sha256": EVENT_STREAM_PAYLOAD,
                                  "content-type": "application/vnd.amazon.eventstream"})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(KEY, secret, TOKEN), "bedrock", "us-east-1")
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:8443"
    signed = ";".join(sorted(headers))
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={KEY}/{amz_date[:8]}/us-east-1/bedrock/aws4_request, "
                                f"SignedHeaders={signed}, Signature={signature}")
    return headers


def _verify(headers: dict[str, str], *, now: float | None = None) -> Any:
    return verify_request(method="POST", path="/model/amazon.nova-2-sonic-v1%3A0/x", query="", headers=headers,
                          book=book_with(), service="bedrock", region="us-east-1", now=now)


def test_the_signing_clock_may_be_five_minutes_off_and_no_more() -> None:
    now = time.time()
    stamp = dt.datetime.fromtimestamp(now - 240, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    assert _verify(_signed_headers(stamp), now=now).credentials.access_key_id == KEY
    late = dt.datetime.fromtimestamp(now - 360, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with pytest.raises(SigV4Error) as raised:
        _verify(_signed_headers(late), now=now)
    assert raised.value.code == "InvalidSignatureException"
    assert "Signature expired" in raised.value.message


def test_a_tampered_signed_header_breaks_the_signature() -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = _signed_headers(stamp)
    headers["content-type"] = "application/json"
    with pytest.raises(SigV4Error) as raised:
        _verify(headers)
    assert raised.value.code == "InvalidSignatureException"


async def test_the_event_chain_accepts_the_sdks_signer_and_refuses_a_replayed_or_altered_event() -> None:
    """Envelopes signed by aws_sdk_signers (what the SDK uses) verify; reordering or tampering does not."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    verified = _verify(_signed_headers(stamp))
    signer = AsyncEventSigner(initial_signature=verified.signature.encode(), event_encoder_cls=EventHeaderEncoder)
    identity = AWSCredentialIdentity(access_key_id=KEY, secret_access_key=SECRET, session_token=TOKEN)
    properties = SigV4SigningProperties(region="us-east-1", service="bedrock")
    envelopes = []
    for text in ("one", "two"):
        inner = EventMessage(headers={":event-type": "chunk"}, payload=text.encode())
        envelopes.append(await signer.sign(event=inner, identity=identity, properties=properties))
    chain = EventSignatureChain(verified)
    chain.verify(envelopes[0])
    with pytest.raises(SigV4Error):
        chain.verify(envelopes[0])  # the same envelope again: its signature no longer continues the chain
    chain = EventSignatureChain(verified)
    altered = EventMessage(headers=envelopes[0].headers, payload=envelopes[0].payload + b"x")
    with pytest.raises(SigV4Error):
        chain.verify(altered)
