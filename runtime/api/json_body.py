"""Reading JSON request bodies the same way on every route.

Requiring ``Content-Type: application/json`` is also a CSRF defence: a cross-site page can send a
``text/plain`` POST without a CORS preflight, but never an ``application/json`` one, and the runtime
approves no preflight.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from runtime.errors import ApiError


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def require_json_media_type(request: Request) -> None:
    if not is_json_media_type(request.headers.get("content-type", "")):
        raise ApiError("Send the body as JSON with 'Content-Type: application/json'.",
                       code="unsupported_media_type", status=415)


async def read_json(request: Request, *, required: bool) -> Any:
    """The request's JSON body: 415 for another media type, 400 for malformed JSON, None when absent."""
    body = await request.body()
    if not body.strip():
        if required:
            raise ApiError("The request needs a JSON body.", code="invalid_json", status=400)
        return None
    require_json_media_type(request)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(f"The body is not valid JSON: {exc}", code="invalid_json", status=400) from None
