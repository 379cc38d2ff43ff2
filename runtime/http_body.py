"""Reading JSON request bodies the same way on every route: the one home of the body helpers.

Used by the booking API (runtime/api/) and the WebRTC offer (runtime/media/routes.py) alike, so it sits
beside the other cross-area HTTP helpers (errors, origin, http_timeouts) rather than inside either area.

Requiring ``Content-Type: application/json`` is also a CSRF defence: a cross-site page can send a
``text/plain`` POST without a CORS preflight, but never an ``application/json`` one, and the runtime
approves no preflight.

Nesting depth is bounded before parsing: CPython's ``json`` decoder recurses once per ``[``/``{``, so a
64 KB body of 30,000 brackets raises ``RecursionError`` (a 500), and a depth just under the interpreter's
limit would still blow up later in validation or in ``json.dumps``. No body of this API nests deeper
than 3; ``MAX_JSON_DEPTH`` leaves ample room.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from runtime.errors import ApiError

MAX_JSON_DEPTH = 32
# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth(body: bytes) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped); O(n) and never recursive."""
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def loads_json(body: bytes, *, code: str = "invalid_json") -> Any:
    """Parse a JSON body or raise a 400 ``ApiError``: malformed, not UTF-8, or nested too deeply."""
    if json_depth(body) > MAX_JSON_DEPTH:
        raise ApiError(f"The body is nested too deeply (more than {MAX_JSON_DEPTH} levels).", code=code, status=400)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(f"The body is not valid JSON: {exc}", code=code, status=400) from None


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def require_json_media_type(request: Request) -> None:
    if not is_json_media_type(request.headers.get("content-type", "")):
        raise ApiError("Send the body as JSON with 'Content-Type: application/json'.",
                       code="unsupported_media_type", status=415)


async def read_json(request: Request, *, required: bool, code: str = "invalid_json") -> Any:
    """The request's JSON body: 415 for another media type, 400 (``code``) for malformed JSON, None when absent."""
    body = await request.body()
    if not body.strip():
        if required:
            raise ApiError("The request needs a JSON body.", code=code, status=400)
        return None
    require_json_media_type(request)
    return loads_json(body, code=code)
