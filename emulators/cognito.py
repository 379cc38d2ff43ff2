"""A local Amazon Cognito user pool for staff sign-in: moto's ``cognito-idp`` server, made as strict as Cognito.

moto (5.2.5) serves the user-pool API and mints RS256 JWTs, but is lenient exactly where the product relies on
Cognito (docs/staff-sign-in.md):

- ``USER_SRP_AUTH`` accepts ANY password: moto returns random ``SALT``/``SRP_B`` and never checks
  ``PASSWORD_CLAIM_SIGNATURE``. Here the server side of Cognito's SRP-6a runs for real (3072-bit group, g=2,
  k = H(N|g), x = H(salt | H(poolName + userIdForSrp + ":" + password)), the claim an HMAC under the HKDF of
  the session key) and a wrong password is ``NotAuthorizedException``;
- every moto pool signs with the SAME key (kid ``dummy``), so a token of another pool verifies against this
  pool's JWKS. Here each pool gets its own RSA key and kid, served at ``/<poolId>/.well-known/jwks.json``;
- the app client's ``ExplicitAuthFlows`` are ignored (``USER_PASSWORD_AUTH`` works on an SRP-only client), and
  its token validities are ignored (always 1 h). Here both are enforced as configured;
- a refresh token works with any client and never expires; ``NEW_PASSWORD_REQUIRED`` can be answered without
  ever proving the temporary password; an unknown user gets ``UserNotFoundException`` although the client
  prevents user-existence errors. Here each is refused/answered as Cognito does;
- ``RevokeToken`` is not implemented. Here it revokes the refresh token;
- MFA: moto gives every user the same TOTP secret, accepts any code, and answers ``MFA_SETUP`` with tokens for a
  session that never proved the password. Here each user gets their own secret, codes are checked (RFC 6238,
  one step of skew), and every challenge after the first needs a password-proven session.

Why a WSGI layer in front of moto's app instead of patching moto's backend classes: moto's state is global to
the process (other tests use ``mock_aws``), so class-level patches would change moto for everyone. The layer
intercepts only the operations above, keeps its own SRP state, and hands everything else (and the verified
steps) to moto unchanged. Per-pool signing keys are set on the pool *instances* this stand-in creates.

The browser calls the stand-in from the web app's origin, unsigned, as it calls Cognito: moto routes unsigned
``AWSCognitoIdentityProviderService.*`` calls to ``us-east-1``, so pools live there, and CORS (preflight
included) is answered here like Cognito does (``Access-Control-Allow-Origin: *``) because moto's dispatcher
cannot pick a service for a preflight that carries no ``X-Amz-Target``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MethodType, TracebackType
from typing import Any, Literal

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from joserfc import jwt
from joserfc.jwk import RSAKey
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger("emulators.cognito")

REGION = "us-east-1"  # moto answers unsigned (browser) user-pool calls from this region's backend only
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
CHALLENGE_LIFETIME_SECONDS = 180.0  # Cognito's authentication session lasts 3 minutes

# Cognito's SRP group: the 3072-bit MODP prime of RFC 3526, g = 2 (as amazon-cognito-identity-js hard-codes).
N_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
N = int(N_HEX, 16)
G = 2


def _pad_hex(value: int | str) -> str:
    """Hex as Cognito's SRP hashes it: even length, and a leading 00 when the top bit is set (positive)."""
    text = value if isinstance(value, str) else f"{value:x}"
    if len(text) % 2 == 1:
        return "0" + text
    return "00" + text if text[0] in "89ABCDEFabcdef" else text


def _hash_hex(hex_text: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_text)).hexdigest()


K_MULTIPLIER = int(_hash_hex("00" + N_HEX + "0" + f"{G:x}"), 16)  # k = H(N | g), with the padding Cognito uses


def _hkdf(ikm: bytes, salt: bytes) -> bytes:
    """The one-block HKDF (RFC 5869, info "Caldera Derived Key") that turns S into the 16-byte claim key."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, b"Caldera Derived Key\x01", hashlib.sha256).digest()[:16]


def _verifier(pool_name: str, user_id_for_srp: str, password: str, salt_hex: str) -> int:
    inner = hashlib.sha256(f"{pool_name}{user_id_for_srp}:{password}".encode()).hexdigest()
    x = int(_hash_hex(_pad_hex(salt_hex) + inner), 16)
    return pow(G, x, N)


@dataclass(frozen=True)
class StaffPool:
    pool_id: str
    client_id: str
    region: str
    group: str


@dataclass
class _SrpChallenge:
    pool_id: str
    username: str | None  # None: a simulated challenge for an unknown user (always refused)
    user_id_for_srp: str
    big_a: int
    small_b: int
    big_b: int
    verifier: int
    secret_block: bytes
    expires_at: float


@dataclass
class _PoolKeys:
    key: RSAKey
    kid: str


@dataclass
class _State:
    clock: Callable[[], float]
    lock: threading.Lock = field(default_factory=threading.Lock)
    challenges: dict[str, _SrpChallenge] = field(default_factory=dict)  # by base64 secret block
    verified_sessions: set[str] = field(default_factory=set)  # passed SRP: may answer the next challenge
    mfa_set_up_sessions: set[str] = field(default_factory=set)  # VerifySoftwareToken succeeded: may answer MFA_SETUP
    totp_pending: dict[tuple[str, str], str] = field(default_factory=dict)  # (pool, user) -> associated secret
    totp_active: dict[tuple[str, str], str] = field(default_factory=dict)  # (pool, user) -> verified secret
    keys: dict[str, _PoolKeys] = field(default_factory=dict)  # by pool id
    refresh_issued: dict[str, float] = field(default_factory=dict)  # refresh token -> issue time


class CognitoError(Exception):
    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error_type, self.message, self.status = error_type, message, status


def _backend() -> Any:
    from moto.cognitoidp.models import cognitoidp_backends

    return cognitoidp_backends[DEFAULT_ACCOUNT_ID][REGION]


def _validity_seconds(client: Any, kind: Literal["AccessToken", "IdToken", "RefreshToken"]) -> int:
    """The app client's configured lifetime (Cognito defaults: 60 min, 60 min, 30 days)."""
    config = client.extended_config
    default_units = {"AccessToken": "hours", "IdToken": "hours", "RefreshToken": "days"}
    value = config.get(f"{kind}Validity")
    unit = (config.get("TokenValidityUnits") or {}).get(kind, default_units[kind])
    if value is None:
        return {"AccessToken": 3600, "IdToken": 3600, "RefreshToken": 30 * 86400}[kind]
    return int(value) * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[unit]


_FLOW_PERMISSION = {
    "USER_SRP_AUTH": "ALLOW_USER_SRP_AUTH",
    "USER_PASSWORD_AUTH": "ALLOW_USER_PASSWORD_AUTH",
    "REFRESH_TOKEN_AUTH": "ALLOW_REFRESH_TOKEN_AUTH",
    "REFRESH_TOKEN": "ALLOW_REFRESH_TOKEN_AUTH",
    "CUSTOM_AUTH": "ALLOW_CUSTOM_AUTH",
}
_DEFAULT_FLOWS = ("ALLOW_USER_SRP_AUTH", "ALLOW_CUSTOM_AUTH", "ALLOW_REFRESH_TOKEN_AUTH")  # Cognito's default
_TIMESTAMP_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} \d{1,2} \d{2}:\d{2}:\d{2} UTC \d{4}$")
_INCORRECT = "Incorrect username or password."


class _StrictLayer:
    """WSGI app in front of moto's: strict SRP, per-pool keys, client flows/validities, CORS."""

    def __init__(self, moto_app: Any, state: _State) -> None:
        self.moto_app = moto_app
        self.state = state

    # --- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method == "OPTIONS":
            return self._respond(start_response, 200, b"", content_type="text/plain", preflight=True)
        jwks = re.fullmatch(r"/([\w-]+_[0-9A-Za-z]+)/\.well-known/jwks\.json", path)
        if method == "GET" and jwks:
            keys = self.state.keys.get(jwks.group(1))
            if keys is None:
                return self._respond(start_response, 404, b'{"message":"User pool does not exist"}')
            body = json.dumps({"keys": [keys.key.as_dict(private=False)]}).encode()
            return self._respond(start_response, 200, body, content_type="application/json")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        handler = {"InitiateAuth": self._initiate_auth, "RespondToAuthChallenge": self._respond_to_challenge,
                   "RevokeToken": self._revoke_token, "AssociateSoftwareToken": self._associate_software_token,
                   "VerifySoftwareToken": self._verify_software_token}.get(operation)
        if handler is not None:
            try:
                params = json.loads(body or b"{}")
                result = handler(params)
            except CognitoError as exc:
                payload = json.dumps({"__type": exc.error_type, "message": exc.message}).encode()
                return self._respond(start_response, exc.status, payload, error_type=exc.error_type)
            except ValueError:
                return self._respond(start_response, 400, b'{"__type":"SerializationException"}')
            except Exception:  # a stand-in bug: still answer with CORS, or the browser only reports "CORS"
                log.exception("local Cognito failed on %s", operation)
                return self._respond(start_response, 500, b'{"__type":"InternalErrorException"}',
                                     error_type="InternalErrorException")
            if result is not None:
                return self._respond(start_response, 200, json.dumps(result).encode())
            environ["wsgi.input"] = io.BytesIO(body)  # verified: moto does the rest (tokens, challenges)
            if operation == "RespondToAuthChallenge":
                return self._moto_with_challenge_parameters(environ, start_response)
        response: Iterable[bytes] = self.moto_app(environ, self._with_cors(start_response))
        return response

    def _moto_with_challenge_parameters(self, environ: dict[str, Any],
                                        start_response: Callable[..., Any]) -> Iterable[bytes]:
        """moto's answer, with the NEW_PASSWORD_REQUIRED parameters Cognito sends and moto leaves out.

        Cognito names the user and passes ``userAttributes`` / ``requiredAttributes`` as JSON *strings*
        (RespondToAuthChallenge, "ChallengeParameters"); amazon-cognito-identity-js parses both, so with
        moto's empty map a first sign-in with a temporary password cannot finish in the browser.
        """
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.moto_app(environ, capture))
        status, headers = captured["status"], list(captured["headers"])
        if status.startswith("200"):
            answer = json.loads(body or b"{}")
            if answer.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
                username, pool = _backend().sessions[answer["Session"]]
                user = pool.users[username]
                hidden = {"sub", "email_verified", "phone_number_verified"}
                attributes = {a["Name"]: a["Value"] for a in user.attributes if a["Name"] not in hidden}
                answer["ChallengeParameters"] = {"USER_ID_FOR_SRP": user.username, "requiredAttributes": "[]",
                                                 "userAttributes": json.dumps(attributes)}
                body = json.dumps(answer).encode()
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
        self._with_cors(start_response)(status, headers)
        return [body]

    @staticmethod
    def _with_cors(start_response: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(name.lower() == "access-control-allow-origin" for name, _ in headers):
                headers = [*headers, ("Access-Control-Allow-Origin", "*")]
            return start_response(status, headers, exc_info)
        return wrapped

    @staticmethod
    def _respond(start_response: Callable[..., Any], status: int, body: bytes, *,
                 content_type: str = "application/x-amz-json-1.1", error_type: str | None = None,
                 preflight: bool = False) -> list[bytes]:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   ("Access-Control-Allow-Origin", "*"), ("x-amzn-RequestId", str(uuid.uuid4()))]
        if error_type:
            headers.append(("x-amzn-ErrorType", error_type))
        if preflight:
            headers += [("Access-Control-Allow-Methods", "POST, GET, OPTIONS"),
                        ("Access-Control-Allow-Headers",
                         "content-type, x-amz-target, x-amz-user-agent, cache-control, authorization"),
                        ("Access-Control-Max-Age", "600")]
        start_response(f"{status} {reason}", headers)
        return [body]

    # --- operations ---------------------------------------------------------------------------

    def _client(self, client_id: object) -> tuple[Any, Any]:
        for pool in _backend().user_pools.values():
            if isinstance(client_id, str) and client_id in pool.clients:
                return pool, pool.clients[client_id]
        raise CognitoError("ResourceNotFoundException", f"User pool client {client_id} does not exist.")

    def _initiate_auth(self, params: dict[str, Any]) -> dict[str, Any] | None:
        flow = params.get("AuthFlow")
        pool, client = self._client(params.get("ClientId"))
        allowed = client.extended_config.get("ExplicitAuthFlows") or _DEFAULT_FLOWS
        permission = _FLOW_PERMISSION.get(str(flow))
        if permission is None or permission not in allowed:
            raise CognitoError("InvalidParameterException", f"{flow} flow not enabled for this client")
        auth = params.get("AuthParameters") or {}
        if flow in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"):
            self._check_refresh_token(pool, client, auth.get("REFRESH_TOKEN"))
            return None
        if flow != "USER_SRP_AUTH":
            return None
        return self._start_srp(pool, client, auth)

    def _check_refresh_token(self, pool: Any, client: Any, token: object) -> None:
        record = pool.refresh_tokens.get(token) if isinstance(token, str) else None
        if record is None or record[0] != client.id:
            raise CognitoError("NotAuthorizedException", "Invalid Refresh Token")
        if pool.id not in self.state.keys:
            return  # a pool made around create_staff_pool: moto's own (lenient) rules apply
        issued = self.state.refresh_issued.get(token) if isinstance(token, str) else None
        if issued is None or self.state.clock() >= issued + _validity_seconds(client, "RefreshToken"):
            raise CognitoError("NotAuthorizedException", "Refresh Token has expired")

    def _start_srp(self, pool: Any, client: Any, auth: dict[str, Any]) -> dict[str, Any]:
        username, srp_a = auth.get("USERNAME"), auth.get("SRP_A")
        if not isinstance(username, str) or not username or not isinstance(srp_a, str):
            raise CognitoError("InvalidParameterException", "Missing required parameter USERNAME or SRP_A")
        try:
            big_a = int(srp_a, 16)
        except ValueError as exc:
            raise CognitoError("InvalidParameterException", "SRP_A is not a hexadecimal number") from exc
        if big_a % N == 0:  # SRP-6a safety check: A = 0 (mod N) would make the session key guessable
            raise CognitoError("InvalidParameterException", "SRP_A is invalid")
        user = pool._get_user(username)
        prevent = client.extended_config.get("PreventUserExistenceErrors") == "ENABLED"
        if user is None and not prevent:
            raise CognitoError("UserNotFoundException", "User does not exist.")
        if user is not None and not user.enabled:
            raise CognitoError("NotAuthorizedException", "User is disabled.")
        if user is not None and str(getattr(user.status, "value", user.status)) == "UNCONFIRMED":
            raise CognitoError("UserNotConfirmedException", "User is not confirmed.")
        pool_name = pool.id.split("_", 1)[1]
        user_id_for_srp = user.username if user is not None else username
        salt_hex = secrets.token_hex(16)
        # An unknown user gets a challenge that looks like any other (random verifier) and is always refused.
        password = user.password if user is not None else secrets.token_urlsafe(24)
        verifier = _verifier(pool_name, user_id_for_srp, password, salt_hex)
        # A 512-bit secret exponent: ample for a local stand-in, and 6x cheaper than a full-size one under load.
        small_b = secrets.randbits(512) | (1 << 511)
        big_b = (K_MULTIPLIER * verifier + pow(G, small_b, N)) % N
        secret_block = secrets.token_bytes(64)
        block_b64 = base64.standard_b64encode(secret_block).decode()
        with self.state.lock:
            self.state.challenges[block_b64] = _SrpChallenge(
                pool.id, user.username if user is not None else None, user_id_for_srp, big_a, small_b, big_b,
                verifier, secret_block, self.state.clock() + CHALLENGE_LIFETIME_SECONDS)
        if user is not None:
            _backend().sessions[block_b64] = (user.username, pool)  # moto's session for the verified next step
        return {"ChallengeName": "PASSWORD_VERIFIER", "ChallengeParameters": {
            "SALT": salt_hex, "SRP_B": f"{big_b:x}", "SECRET_BLOCK": block_b64,
            "USER_ID_FOR_SRP": user_id_for_srp, "USERNAME": user_id_for_srp}}

    def _respond_to_challenge(self, params: dict[str, Any]) -> dict[str, Any] | None:
        name = params.get("ChallengeName")
        responses = params.get("ChallengeResponses") or {}
        if name == "PASSWORD_VERIFIER":
            self._verify_password_claim(params.get("ClientId"), responses)
            return None
        # Every later step needs a session that proved the password: moto answers NEW_PASSWORD_REQUIRED and
        # MFA_SETUP (tokens!) for the session of a merely started sign-in, and any SOFTWARE_TOKEN_MFA_CODE.
        session = params.get("Session")
        with self.state.lock:
            proven = session in self.state.verified_sessions
            set_up = session in self.state.mfa_set_up_sessions
        if not proven or (name == "MFA_SETUP" and not set_up):
            raise CognitoError("NotAuthorizedException", "Invalid session for the user.")
        if name == "SOFTWARE_TOKEN_MFA":
            username, pool = _backend().sessions[session]
            secret = self.state.totp_active.get((pool.id, username))
            if secret is None or not _totp_ok(secret, responses.get("SOFTWARE_TOKEN_MFA_CODE")):
                raise CognitoError("CodeMismatchException", "Invalid code received for user")
        elif name not in ("NEW_PASSWORD_REQUIRED", "MFA_SETUP"):
            raise CognitoError("InvalidParameterException", f"{name} is not a challenge of this pool (TOTP only)")
        return None

    def _verify_password_claim(self, client_id: object, responses: dict[str, Any]) -> None:
        pool, _ = self._client(client_id)
        block = responses.get("PASSWORD_CLAIM_SECRET_BLOCK")
        with self.state.lock:
            challenge = self.state.challenges.pop(block, None) if isinstance(block, str) else None
        if challenge is None or challenge.pool_id != pool.id or self.state.clock() > challenge.expires_at:
            raise CognitoError("NotAuthorizedException", "Invalid session for the user, session is expired.")
        signature, timestamp = responses.get("PASSWORD_CLAIM_SIGNATURE"), responses.get("TIMESTAMP")
        username = responses.get("USERNAME")
        ok = (challenge.username is not None and isinstance(signature, str) and isinstance(timestamp, str)
              and bool(_TIMESTAMP_RE.fullmatch(timestamp)) and username in (challenge.username,
                                                                             challenge.user_id_for_srp))
        if ok:
            u = int(_hash_hex(_pad_hex(challenge.big_a) + _pad_hex(challenge.big_b)), 16)
            s = pow(challenge.big_a * pow(challenge.verifier, u, N), challenge.small_b, N)
            key = _hkdf(bytes.fromhex(_pad_hex(s)), bytes.fromhex(_pad_hex(u)))
            message = (pool.id.split("_", 1)[1].encode() + challenge.user_id_for_srp.encode()
                       + challenge.secret_block + str(timestamp).encode())
            expected = base64.standard_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
            ok = u != 0 and hmac.compare_digest(expected.encode(), str(signature).encode("utf-8", "replace"))
        if not ok:
            _backend().sessions.pop(block, None)
            raise CognitoError("NotAuthorizedException", _INCORRECT)
        with self.state.lock:
            self.state.verified_sessions.add(str(block))

    def _mfa_subject(self, params: dict[str, Any]) -> tuple[tuple[str, str], str | None]:
        """(pool id, username) of an MFA set-up call, by a password-proven session or a valid access token."""
        backend = _backend()
        session, token = params.get("Session"), params.get("AccessToken")
        if isinstance(session, str) and session:
            with self.state.lock:
                proven = session in self.state.verified_sessions
            if not proven or session not in backend.sessions:
                raise CognitoError("NotAuthorizedException", "Invalid session for the user.")
            username, pool = backend.sessions[session]
            return (pool.id, username), session
        for pool in backend.user_pools.values():
            if isinstance(token, str) and token in pool.access_tokens:
                return (pool.id, pool.access_tokens[token][1]), None
        raise CognitoError("NotAuthorizedException", "Invalid Access Token")

    def _associate_software_token(self, params: dict[str, Any]) -> dict[str, Any]:
        """A fresh TOTP secret per user (moto hands every user the same constant one)."""
        subject, session = self._mfa_subject(params)
        secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
        with self.state.lock:
            self.state.totp_pending[subject] = secret
        return {"SecretCode": secret, **({"Session": session} if session else {})}

    def _verify_software_token(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check the first code against the associated secret (moto accepts any code unless told otherwise)."""
        subject, session = self._mfa_subject(params)
        with self.state.lock:
            secret = self.state.totp_pending.get(subject)
        if secret is None or not _totp_ok(secret, params.get("UserCode")):
            raise CognitoError("CodeMismatchException", "Code mismatch and fail enable Software Token MFA")
        result: dict[str, Any] = _backend().verify_software_token(params.get("AccessToken"), session, "", "")
        with self.state.lock:
            self.state.totp_active[subject] = self.state.totp_pending.pop(subject)
            if result.get("Session"):
                self.state.verified_sessions.add(result["Session"])
                self.state.mfa_set_up_sessions.add(result["Session"])
        return result

    def _revoke_token(self, params: dict[str, Any]) -> dict[str, Any]:
        pool, client = self._client(params.get("ClientId"))
        token = params.get("Token")
        record = pool.refresh_tokens.get(token) if isinstance(token, str) else None
        if record is None or record[0] != client.id:
            raise CognitoError("UnsupportedTokenTypeException", "The token is not a valid refresh token")
        pool.refresh_tokens[token] = None
        return {}


def _totp_ok(secret: str, code: object, *, now: float | None = None) -> bool:
    """RFC 6238 TOTP as Cognito uses it (SHA-1, 6 digits, 30 s), one step of clock skew either way."""
    if not isinstance(code, str) or not re.fullmatch(r"\d{6}", code):
        return False
    totp = TOTP(base64.b32decode(secret + "=" * (-len(secret) % 8)), 6, SHA1(), 30,  # noqa: S303 - RFC 6238
                enforce_key_length=False)
    at = int(time.time() if now is None else now)
    for step in (-30, 0, 30):
        try:
            totp.verify(code.encode(), at + step)
        except InvalidToken:
            continue
        return True
    return False


def _install_pool_keys(pool: Any, state: _State) -> None:
    """Give one moto pool instance its own signing key and Cognito's token lifetimes and claims."""
    kid = base64.standard_b64encode(secrets.token_bytes(32)).decode()
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"}, private=True)
    state.keys[pool.id] = _PoolKeys(key, kid)
    original_refresh = pool.create_refresh_token

    def create_jwt(self: Any, client_id: str, username: str, token_use: str, expires_in: int = 3600,
                   extra_data: dict[str, Any] | None = None) -> tuple[str, int]:
        now = int(state.clock())
        client = self.clients.get(client_id)
        if client is not None:
            kind: Literal["AccessToken", "IdToken"] = "AccessToken" if token_use == "access" else "IdToken"  # noqa: S105
            expires_in = _validity_seconds(client, kind)
        user = self._get_user(username)
        payload: dict[str, Any] = {
            "sub": user.id, "iss": f"https://cognito-idp.{self.region}.amazonaws.com/{self.id}",
            "token_use": token_use, "auth_time": now, "iat": now, "exp": now + expires_in,
            "jti": str(uuid.uuid4()), "event_id": str(uuid.uuid4()),
        }
        if token_use == "access":  # noqa: S105 - a claim value, not a password
            payload.update({"client_id": client_id, "username": user.username, "version": 2})
        else:
            payload.update({"aud": client_id, "cognito:username": user.username})
        payload.update(extra_data or {})
        return jwt.encode({"kid": kid, "alg": "RS256"}, payload, key), expires_in

    def create_refresh_token(self: Any, client_id: str, username: str) -> tuple[str, str]:
        token, origin_jti = original_refresh(client_id, username)
        state.refresh_issued[token] = state.clock()
        return token, origin_jti

    pool.create_jwt = MethodType(create_jwt, pool)
    pool.create_refresh_token = MethodType(create_refresh_token, pool)


class _QuietHandler(MotoRequestHandler):
    """moto's request handler without a stderr line per request (tests stay readable)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LocalCognito:
    """A strict local Cognito user-pools endpoint on 127.0.0.1 (or ``host``) and a free port; ``url`` is its
    endpoint. ``host``: the rehearsal serves it on its public edge address, reachable from every namespace."""

    def __init__(self, *, clock: Callable[[], float] = time.time, host: str = "127.0.0.1") -> None:
        self.state = _State(clock=clock)
        self._host = host
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.url = ""

    def __enter__(self) -> LocalCognito:
        app = _StrictLayer(DomainDispatcherApplication(create_backend_app), self.state)
        self._server = make_server(self._host, 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://{self._host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="local-cognito", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def client(self) -> Any:
        """A boto3 ``cognito-idp`` client for the stand-in (admin calls are signed with throwaway keys)."""
        if self._client is None:  # one per stand-in: making a boto3 client costs ~0.2 s
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        return boto3.client("cognito-idp", region_name=REGION, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106
                            config=Config(retries={"max_attempts": 1}))

    def create_staff_pool(self, *, mfa: Literal["OFF", "OPTIONAL", "ON"] = "OFF", group: str = "staff",
                          access_token_minutes: int = 60, refresh_token_hours: int = 12) -> StaffPool:
        """A pool configured as the platform configures the staff pool (admins create users, SRP only)."""
        idp = self.client()
        pool_id = idp.create_user_pool(
            PoolName=f"staff-{secrets.token_hex(4)}", MfaConfiguration=mfa,
            AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
            Policies={"PasswordPolicy": {"MinimumLength": 12, "RequireUppercase": True, "RequireLowercase": True,
                                         "RequireNumbers": True, "RequireSymbols": True}},
        )["UserPool"]["Id"]
        if mfa != "OFF":
            idp.set_user_pool_mfa_config(UserPoolId=pool_id, MfaConfiguration=mfa,
                                         SoftwareTokenMfaConfiguration={"Enabled": True})
        client_id = idp.create_user_pool_client(
            UserPoolId=pool_id, ClientName="staff-web", GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            PreventUserExistenceErrors="ENABLED",
            AccessTokenValidity=access_token_minutes, IdTokenValidity=access_token_minutes,
            RefreshTokenValidity=refresh_token_hours,
            TokenValidityUnits={"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "hours"},
        )["UserPoolClient"]["ClientId"]
        idp.create_group(UserPoolId=pool_id, GroupName=group)
        _install_pool_keys(_backend().user_pools[pool_id], self.state)
        return StaffPool(pool_id=pool_id, client_id=client_id, region=REGION, group=group)

    def add_user(self, pool: StaffPool, username: str, password: str, *, groups: Sequence[str] = ("staff",),
                 temporary: bool = False) -> None:
        """An admin-created user; ``temporary=True`` leaves it in FORCE_CHANGE_PASSWORD (NEW_PASSWORD_REQUIRED)."""
        idp = self.client()
        idp.admin_create_user(UserPoolId=pool.pool_id, Username=username, TemporaryPassword=password,
                              MessageAction="SUPPRESS")
        if not temporary:
            idp.admin_set_user_password(UserPoolId=pool.pool_id, Username=username, Password=password,
                                        Permanent=True)
        existing = {g["GroupName"] for g in idp.list_groups(UserPoolId=pool.pool_id)["Groups"]}
        for group in groups:
            if group not in existing:
                idp.create_group(UserPoolId=pool.pool_id, GroupName=group)
                existing.add(group)
            idp.admin_add_user_to_group(UserPoolId=pool.pool_id, Username=username, GroupName=group)

    def jwks_url(self, pool: StaffPool) -> str:
        return f"{self.url}/{pool.pool_id}/.well-known/jwks.json"

    @staticmethod
    def timestamp(now: datetime | None = None) -> str:
        """The ``TIMESTAMP`` format Cognito's SRP claim signs (``Tue Dec 2 01:52:43 UTC 2026``)."""
        now = now or datetime.now(UTC)
        return now.strftime("%a %b ") + f"{now.day} " + now.strftime("%H:%M:%S UTC %Y")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m emulators.cognito --user NAME --password PW``: a staff pool with one user, until interrupted.

    Prints ``READY <url> <poolId> <clientId>`` and the ``ENV`` lines that point the runtime at it.
    """
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--user", action="append", default=[], help="staff user to create (repeatable)")
    parser.add_argument("--password", required=True, help="their password (>= 12 chars, mixed, digit, symbol)")
    parser.add_argument("--mfa", choices=["OFF", "OPTIONAL", "ON"], default="OFF")
    args = parser.parse_args(argv)
    with LocalCognito() as cognito:
        pool = cognito.create_staff_pool(mfa=args.mfa)
        for user in args.user or ["staff"]:
            cognito.add_user(pool, user, args.password)
        print(f"READY {cognito.url} {pool.pool_id} {pool.client_id}", flush=True)
        for line in ("STAFF_AUTH=cognito", f"COGNITO_USER_POOL_ID={pool.pool_id}",
                     f"COGNITO_CLIENT_ID={pool.client_id}", f"COGNITO_REGION={pool.region}",
                     f"COGNITO_ENDPOINT_URL={cognito.url}"):
            print(f"ENV {line}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
