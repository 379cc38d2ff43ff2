"""Who is calling: the one place REST handlers turn an ``Authorization`` header into a ``Principal``.

It defers to ``runtime.auth.authenticate`` so the REST API, the events gateway and the cloud
authorizer apply the same rules to the same credential.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from runtime.auth import Principal, authenticate
from runtime.errors import Forbidden, Unauthorized
from runtime.services import services_of


def principal_of(conn: HTTPConnection) -> Principal | None:
    """The caller's principal, or None when no valid credential came with the request."""
    services = services_of(conn)
    return authenticate(conn.headers.get("authorization"), staff_token=services.staff_token,
                        session_secret=services.session_secret)


def require_principal(conn: HTTPConnection) -> Principal:
    principal = principal_of(conn)
    if principal is None:
        raise Unauthorized("Sign in first: send 'Authorization: Bearer <token>' (staff token or session token).")
    return principal


def require_staff(conn: HTTPConnection) -> Principal:
    """401 without a valid credential, 403 with a guest's: staff views show every guest's data."""
    principal = require_principal(conn)
    if not principal.is_staff:
        raise Forbidden("This needs the staff token; a guest session token cannot open it.")
    return principal
