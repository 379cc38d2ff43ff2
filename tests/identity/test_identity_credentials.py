"""Credential edge cases: where the JWKS comes from, non-ASCII tokens, the shared token in cognito mode."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from runtime.app import create_app
from runtime.auth import Principal, authenticate, mint_session_token, verify_session_token
from runtime.events import authorizer
from runtime.settings import load_settings
from runtime.staff_identity import CognitoStaffVerifier
from tests.events.helpers import SECRET, STAFF, serve
from tests.identity.conftest import Identities

pytestmark = pytest.mark.timeout(30)
SID = "3f2b6c1e-aaaa-bbbb-cccc-123456789abc"


def test_the_jwks_comes_from_the_stand_in_when_one_is_configured_else_from_the_issuer(
        identities: Identities) -> None:
    settings = load_settings(staff_auth="cognito", cognito_user_pool_id=identities.pool.pool_id,
                             cognito_client_id=identities.pool.client_id, cognito_endpoint_url=identities.cognito.url)
    assert CognitoStaffVerifier.from_settings(settings).jwks_url == identities.cognito.jwks_url(identities.pool)
    aws = CognitoStaffVerifier.from_settings(load_settings(
        staff_auth="cognito", cognito_user_pool_id="eu-west-1_AbCdEf123", cognito_client_id="abc123"))
    assert aws.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
    assert aws.jwks_url == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json"


def test_non_ascii_in_a_session_token_is_a_plain_refusal() -> None:
    token = mint_session_token(SECRET, SID, 60)
    for mac in ("é" * 43, "\u0661" * 43, "\ud800"):
        forged = token.rsplit(".", 1)[0] + "." + mac
        assert verify_session_token(SECRET, forged) is None, mac  # was: TypeError from hmac.compare_digest
        assert authenticate(forged, staff_token=STAFF, session_secret=SECRET) is None
    assert not Principal("guest", SID).may_read_session("é" + SID[1:])
    _, sid, expires, mac = token.split(".")
    arabic = "".join(chr(0x0660 + int(d)) for d in expires)  # int() would read these as the same number
    assert verify_session_token(SECRET, f"v1.{sid}.{arabic}.{mac}") is None


async def test_a_non_ascii_bearer_is_a_401_over_rest(tmp_path: Path) -> None:
    app = create_app(load_settings(data_dir=tmp_path, staff_token=STAFF, session_secret=SECRET))
    async with serve(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        token = mint_session_token(SECRET, SID, 60).rsplit(".", 1)[0] + ".\xe9\xe9\xe9"
        response = await http.get(f"/api/conversations/{SID}",
                                  headers=[(b"authorization", b"Bearer " + token.encode("latin-1"))])
        assert response.status_code == 401, response.text


def test_the_lambda_authorizer_refuses_the_shared_token_in_cognito_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAFF_TOKEN", STAFF)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    monkeypatch.delenv("STAFF_TOKEN_SECRET_ARN", raising=False)
    monkeypatch.delenv("SESSION_SECRET_ARN", raising=False)
    request = {"authorizationToken": STAFF, "requestContext": {"operation": "EVENT_SUBSCRIBE",
               "channel": "/restaurant-booking/*", "channelNamespaceName": "restaurant-booking"}}
    monkeypatch.setenv("STAFF_AUTH", "token")
    assert authorizer.handler(request)["isAuthorized"] is True
    monkeypatch.setenv("STAFF_AUTH", "cognito")
    assert authorizer.handler(request)["isAuthorized"] is False
    guest = {"authorizationToken": mint_session_token(SECRET, SID, 60), "requestContext": {
        "operation": "EVENT_SUBSCRIBE", "channel": f"/conversations/{SID}", "channelNamespaceName": "conversations"}}
    assert authorizer.handler(guest)["isAuthorized"] is True  # guests keep their session tokens


async def test_config_events_urls_come_from_the_public_origin_never_from_x_forwarded_host(tmp_path: Path) -> None:
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    for name, options, expected in [
        ("public origin", {"public_origin": "https://book.example.com"}, "https://book.example.com"),
        ("trusted proxy, no public origin", {}, None),
    ]:
        app = create_app(load_settings(data_dir=tmp_path / name.replace(" ", "-"), trust_proxy_headers=True,
                                       **options))
        async with serve(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
            events = (await http.get("/api/config", headers=forged)).json()["events"]
            origin = expected or f"https://{address}"  # the Host header, the scheme from the trusted proxy
            assert events["http"] == f"{origin}/event", name
            assert events["realtime"] == origin.replace("https", "wss", 1) + "/event/realtime", name
            assert "evil.example" not in str(events)
            assert (await http.get("/api/config")).json()["staffAuth"] == {"mode": "token"}
