"""Who is calling: the one place REST handlers turn an ``Authorization`` header into a ``Principal``.

It defers to ``runtime.auth.authenticate`` so the REST API, the events gateway and the cloud
authorizer apply the same rules to the same credential. With ``STAFF_AUTH=cognito`` the services carry no
shared staff token and a staff verifier instead (``runtime.staff_identity``): staff then prove themselves with
a Cognito access token only, and a JWKS outage is a 503 (the token cannot be judged), not a 401.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from runtime.auth import Principal, authenticate
from runtime.errors import Forbidden, Unauthorized, Unavailable
from runtime.services import services_of
from runtime.staff_identity import StaffAuthUnavailable


def principal_of(conn: HTTPConnection) -> Principal | None:
    """The caller's principal, or None when no valid credential came with the request."""
    services = services_of(conn)
    try:
        return authenticate(conn.headers.get("authorization"), staff_token=services.staff_token,
                            session_secret=services.session_secret, staff=services.staff_verifier)
    except StaffAuthUnavailable as exc:
        raise Unavailable("Staff sign-in cannot be checked right now (the user pool's keys are unreachable); "
                          "try again shortly.", code="staff_auth_unavailable") from exc


def _sign_in_hint(conn: HTTPConnection) -> str:
    if services_of(conn).staff_verifier is not None:
        return "Sign in first: send 'Authorization: Bearer <token>' (a staff access token or a session token)."
    return "Sign in first: send 'Authorization: Bearer <token>' (staff token or session token)."


def require_principal(conn: HTTPConnection) -> Principal:
    principal = principal_of(conn)
    if principal is None:
        raise Unauthorized(_sign_in_hint(conn))
    return principal


def require_staff(conn: HTTPConnection) -> Principal:
    """401 without a valid credential, 403 with a guest's or a non-staff user's: staff views show every guest."""
    principal = require_principal(conn)
    if not principal.is_staff:
        if principal.kind == "user":
            raise Forbidden("This needs a member of the staff group; this account is not one.")
        raise Forbidden("This needs the staff token; a guest session token cannot open it.")
    return principal
