"""The local Cognito is at least as strict as Cognito where staff sign-in depends on it.

Each test names the moto leniency it guards against: run against bare moto, it fails.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from pycognito.aws_srp import AWSSRP

from emulators.cognito import LocalCognito
from tests.identity.conftest import PASSWORD, Identities, idp, sign_in

pytestmark = [pytest.mark.timeout(30),
              pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")]  # pycognito


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return exc.response["Error"]["Code"]


def test_srp_with_the_right_password_gives_access_id_and_refresh_tokens(identities: Identities) -> None:
    claims = claims_of(identities.alice.access)
    pool = identities.pool
    assert claims["iss"] == f"https://cognito-idp.us-east-1.amazonaws.com/{pool.pool_id}"
    assert claims["token_use"] == "access"
    assert claims["client_id"] == pool.client_id
    assert claims["username"] == "alice"
    assert claims["cognito:groups"] == ["staff"]
    assert claims["exp"] - claims["iat"] == 3600  # the client's 60-minute access-token validity
    id_claims = claims_of(identities.alice.id)
    assert id_claims["token_use"] == "id"
    assert id_claims["aud"] == pool.client_id


def test_a_wrong_password_or_an_unknown_user_is_refused(identities: Identities) -> None:
    # moto returns a random SRP_B and accepts any PASSWORD_CLAIM_SIGNATURE: this signs in there.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        sign_in(identities.cognito, identities.pool, "alice", "Wrong-Horse-9!")
    assert error_code(refused.value) == "NotAuthorizedException"
    assert refused.value.response["Error"]["Message"] == "Incorrect username or password."
    # The client prevents user-existence errors: an unknown user looks the same (moto: UserNotFoundException).
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        sign_in(identities.cognito, identities.pool, "nobody")
    assert error_code(unknown.value) == "NotAuthorizedException"


def test_a_forged_claim_signature_is_refused(identities: Identities) -> None:
    client = idp(identities.cognito)
    srp = AWSSRP("alice", PASSWORD, identities.pool.pool_id, identities.pool.client_id, client=client)
    challenge = client.initiate_auth(AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params(),
                                     ClientId=identities.pool.client_id)
    answer = srp.process_challenge(challenge["ChallengeParameters"], srp.get_auth_params())
    answer["PASSWORD_CLAIM_SIGNATURE"] = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.respond_to_auth_challenge(ClientId=identities.pool.client_id, ChallengeName="PASSWORD_VERIFIER",
                                         ChallengeResponses=answer)
    assert error_code(refused.value) == "NotAuthorizedException"
    # The challenge is spent: replaying a correct answer for it is refused too.
    good = srp.process_challenge(challenge["ChallengeParameters"], srp.get_auth_params())
    with pytest.raises(botocore.exceptions.ClientError):
        client.respond_to_auth_challenge(ClientId=identities.pool.client_id, ChallengeName="PASSWORD_VERIFIER",
                                         ChallengeResponses=good)


def test_password_auth_is_not_enabled_on_the_srp_only_client(identities: Identities) -> None:
    # moto ignores ExplicitAuthFlows and signs in with USER_PASSWORD_AUTH.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        idp(identities.cognito).initiate_auth(ClientId=identities.pool.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                              AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})
    assert error_code(refused.value) == "InvalidParameterException"


def test_each_pool_signs_with_its_own_key(identities: Identities) -> None:
    # moto signs every pool's tokens with one shared key (kid "dummy").
    cognito = identities.cognito
    keys = KeySet.import_key_set(httpx.get(cognito.jwks_url(identities.pool)).json())
    other = KeySet.import_key_set(httpx.get(cognito.jwks_url(identities.other_pool)).json())
    assert jwt.decode(identities.alice.access, keys, algorithms=["RS256"]).claims["username"] == "alice"
    assert {k.kid for k in keys.keys}.isdisjoint({k.kid for k in other.keys})
    forged = identities.carol_other_pool.access
    header = json.loads(base64.urlsafe_b64decode(forged.split(".")[0] + "=="))
    kid = keys.keys[0].kid
    relabelled = base64.urlsafe_b64encode(json.dumps({**header, "kid": kid}).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(".".join([relabelled, *forged.split(".")[1:]]), keys, algorithms=["RS256"])


def test_new_password_required_needs_the_temporary_password_proven_first(identities: Identities) -> None:
    # moto lets NEW_PASSWORD_REQUIRED be answered with the session of a merely *started* SRP sign-in.
    local_cognito, pool = identities.cognito, identities.pool
    local_cognito.add_user(pool, "dora", PASSWORD, temporary=True)
    client = idp(local_cognito)
    srp = AWSSRP("dora", PASSWORD, pool.pool_id, pool.client_id, client=client)
    started = client.initiate_auth(AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params(),
                                   ClientId=pool.client_id)
    skip = {"USERNAME": "dora", "NEW_PASSWORD": "Another-Horse-9!"}
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.respond_to_auth_challenge(ClientId=pool.client_id, ChallengeName="NEW_PASSWORD_REQUIRED",
                                         Session=started["ChallengeParameters"]["SECRET_BLOCK"],
                                         ChallengeResponses=skip)
    assert error_code(refused.value) == "NotAuthorizedException"
    proven = client.respond_to_auth_challenge(
        ClientId=pool.client_id, ChallengeName="PASSWORD_VERIFIER",
        ChallengeResponses=srp.process_challenge(started["ChallengeParameters"], srp.get_auth_params()))
    assert proven["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    # As Cognito sends them (moto sends none): browser SDKs JSON-parse the two attribute strings.
    parameters = proven["ChallengeParameters"]
    assert parameters["USER_ID_FOR_SRP"] == "dora"
    assert json.loads(parameters["requiredAttributes"]) == []
    assert "sub" not in json.loads(parameters["userAttributes"])
    done = client.respond_to_auth_challenge(ClientId=pool.client_id, ChallengeName="NEW_PASSWORD_REQUIRED",
                                            Session=proven["Session"], ChallengeResponses=skip)
    assert claims_of(done["AuthenticationResult"]["AccessToken"])["username"] == "dora"
    assert sign_in(local_cognito, pool, "dora", "Another-Horse-9!").access


def test_refresh_tokens_work_only_for_their_client_and_until_revoked(identities: Identities) -> None:
    # moto refreshes with any client and has no RevokeToken.
    client, pool = idp(identities.cognito), identities.pool
    tokens = sign_in(identities.cognito, pool, "alice")
    refreshed = client.initiate_auth(ClientId=pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                                     AuthParameters={"REFRESH_TOKEN": tokens.refresh})["AuthenticationResult"]
    assert claims_of(refreshed["AccessToken"])["username"] == "alice"
    with pytest.raises(botocore.exceptions.ClientError) as other_client:
        client.initiate_auth(ClientId=identities.other_client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                             AuthParameters={"REFRESH_TOKEN": tokens.refresh})
    assert error_code(other_client.value) == "NotAuthorizedException"
    client.revoke_token(Token=tokens.refresh, ClientId=pool.client_id)
    with pytest.raises(botocore.exceptions.ClientError) as revoked:
        client.initiate_auth(ClientId=pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                             AuthParameters={"REFRESH_TOKEN": tokens.refresh})
    assert error_code(revoked.value) == "NotAuthorizedException"


def test_global_sign_out_ends_refresh(identities: Identities) -> None:
    client, pool = idp(identities.cognito), identities.pool
    tokens = sign_in(identities.cognito, pool, "alice")
    client.global_sign_out(AccessToken=tokens.access)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.initiate_auth(ClientId=pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                             AuthParameters={"REFRESH_TOKEN": tokens.refresh})
    assert error_code(refused.value) == "NotAuthorizedException"


def test_refresh_tokens_expire_with_the_clients_validity(identities: Identities,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's refresh tokens never expire; the staff client's last 12 hours.
    local_cognito, pool = identities.cognito, identities.pool
    monkeypatch.setattr(local_cognito.state, "clock", lambda: time.time() - 12 * 3600 - 1)
    tokens = sign_in(local_cognito, pool, "alice")
    monkeypatch.setattr(local_cognito.state, "clock", time.time)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        idp(local_cognito).initiate_auth(ClientId=pool.client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                                         AuthParameters={"REFRESH_TOKEN": tokens.refresh})
    assert error_code(refused.value) == "NotAuthorizedException"


def test_the_browser_may_call_it_cross_origin(local_cognito: LocalCognito) -> None:
    preflight = httpx.options(local_cognito.url + "/", headers={
        "Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-amz-target,x-amz-user-agent"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    allowed = preflight.headers["access-control-allow-headers"]
    assert {"content-type", "x-amz-target", "x-amz-user-agent"} <= {h.strip() for h in allowed.split(",")}
    call = httpx.post(local_cognito.url + "/", content=b'{"ClientId": "nope", "AuthFlow": "USER_SRP_AUTH"}',
                      headers={"Origin": "http://127.0.0.1:5173", "Content-Type": "application/x-amz-json-1.1",
                               "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth"})
    assert call.headers["access-control-allow-origin"] == "*"
    assert call.json()["__type"] == "ResourceNotFoundException"


WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
SIGN_IN_JS = """
const { CognitoUserPool, CognitoUser, AuthenticationDetails } = require("amazon-cognito-identity-js");
const [poolId, clientId, endpoint, ...passwords] = process.argv.slice(1);
const pool = new CognitoUserPool({ UserPoolId: poolId, ClientId: clientId, endpoint });
const signIn = (password) => new Promise((resolve) => {
  new CognitoUser({ Username: "alice", Pool: pool }).authenticateUser(
    new AuthenticationDetails({ Username: "alice", Password: password }), {
      onSuccess: (session) => resolve({ ok: session.getAccessToken().payload.username }),
      onFailure: (error) => resolve({ error: error.code }),
    });
});
(async () => {
  const results = [];
  for (const password of passwords) { results.push(await signIn(password)); }
  console.log(JSON.stringify(results));
})();
"""


@pytest.mark.skipif(not (WEBAPP / "node_modules" / "amazon-cognito-identity-js").is_dir(),
                    reason="the web app's dependencies are not installed (npm ci in webapp/)")
def test_the_web_apps_cognito_library_signs_in(identities: Identities) -> None:
    # Interoperability with the browser's SRP client (pure-JS big integers: ~1-2 s; refusals are tested above).
    pool, url = identities.pool, identities.cognito.url
    run = subprocess.run(["node", "-e", SIGN_IN_JS, pool.pool_id, pool.client_id, url, PASSWORD],
                         cwd=WEBAPP, capture_output=True, text=True, timeout=20, check=True)
    assert json.loads(run.stdout) == [{"ok": "alice"}]


def totp_now(secret: str) -> str:
    """The authenticator app's code (RFC 6238: SHA-1, 6 digits, 30 s)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return TOTP(key, 6, SHA1(), 30, enforce_key_length=False).generate(time.time()).decode()


def test_totp_mfa_needs_a_proven_password_the_users_own_secret_and_its_codes(identities: Identities) -> None:
    # moto: MFA_SETUP with a merely started sign-in's session returns tokens; one constant secret for every
    # user; any code accepted.
    cognito = identities.cognito
    pool = cognito.create_staff_pool(mfa="ON")
    cognito.add_user(pool, "frank", PASSWORD)
    client = idp(cognito)

    def password_step() -> tuple[dict, dict]:
        srp = AWSSRP("frank", PASSWORD, pool.pool_id, pool.client_id, client=client)
        started = client.initiate_auth(AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params(),
                                       ClientId=pool.client_id)
        return started, client.respond_to_auth_challenge(
            ClientId=pool.client_id, ChallengeName="PASSWORD_VERIFIER",
            ChallengeResponses=srp.process_challenge(started["ChallengeParameters"], srp.get_auth_params()))

    def refused(code: str, call: Any, **kwargs: Any) -> None:
        with pytest.raises(botocore.exceptions.ClientError) as error:
            call(**kwargs)
        assert error_code(error.value) == code

    srp = AWSSRP("frank", PASSWORD, pool.pool_id, pool.client_id, client=client)
    started = client.initiate_auth(AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params(),
                                   ClientId=pool.client_id)
    refused("NotAuthorizedException", client.respond_to_auth_challenge, ClientId=pool.client_id,
            ChallengeName="MFA_SETUP", Session=started["ChallengeParameters"]["SECRET_BLOCK"],
            ChallengeResponses={"USERNAME": "frank"})

    _, setup = password_step()
    assert setup["ChallengeName"] == "MFA_SETUP"
    first = client.associate_software_token(Session=setup["Session"])["SecretCode"]
    secret = client.associate_software_token(Session=setup["Session"])["SecretCode"]  # replaces the first
    assert secret != first
    right = totp_now(secret)
    refused("CodeMismatchException", client.verify_software_token, Session=setup["Session"],
            UserCode=f"{(int(right) + 1) % 10**6:06d}")
    refused("NotAuthorizedException", client.respond_to_auth_challenge, ClientId=pool.client_id,
            ChallengeName="MFA_SETUP", Session=setup["Session"], ChallengeResponses={"USERNAME": "frank"})
    verified = client.verify_software_token(Session=setup["Session"], UserCode=right)
    assert verified["Status"] == "SUCCESS"
    done = client.respond_to_auth_challenge(ClientId=pool.client_id, ChallengeName="MFA_SETUP",
                                            Session=verified["Session"], ChallengeResponses={"USERNAME": "frank"})
    assert claims_of(done["AuthenticationResult"]["AccessToken"])["username"] == "frank"

    _, mfa = password_step()
    assert mfa["ChallengeName"] == "SOFTWARE_TOKEN_MFA"
    answer = {"USERNAME": "frank", "SOFTWARE_TOKEN_MFA_CODE": f"{(int(totp_now(secret)) + 1) % 10**6:06d}"}
    refused("CodeMismatchException", client.respond_to_auth_challenge, ClientId=pool.client_id,
            ChallengeName="SOFTWARE_TOKEN_MFA", Session=mfa["Session"], ChallengeResponses=answer)
    signed_in = client.respond_to_auth_challenge(
        ClientId=pool.client_id, ChallengeName="SOFTWARE_TOKEN_MFA", Session=mfa["Session"],
        ChallengeResponses={**answer, "SOFTWARE_TOKEN_MFA_CODE": totp_now(secret)})
    assert claims_of(signed_in["AuthenticationResult"]["AccessToken"])["username"] == "frank"
