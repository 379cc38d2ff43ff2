"""The AppSync Events WebSocket handshake, both sides: subprotocol names and the ``header-`` header map.

A client authorises the upgrade with two subprotocols, ``aws-appsync-event-ws`` and
``header-<base64url(JSON of its auth headers)>``
(https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html). The embedded gateway
decodes the map and every Python client of the project (tools/smoke.py, tools/rehearsal.py, bench/events.py,
the events tests) encodes it here, so the two sides cannot drift apart. Standard library only, like the rest
of this package that the Lambdas import (runtime/events/__init__.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

SUBPROTOCOL = "aws-appsync-event-ws"
HEADER_PREFIX = "header-"


def encode_header_map(headers: Mapping[str, str]) -> str:
    """``header-<base64url(json)>`` subprotocol value, as browsers send it (unpadded, as Amplify does)."""
    raw = json.dumps(dict(headers), separators=(",", ":")).encode()
    return HEADER_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_header_map(encoded: str) -> dict[str, Any] | None:
    """The map of a ``header-`` value without its prefix (or of ``?header=``), padded or not; None if not one."""
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def subprotocols_for(headers: Mapping[str, str]) -> list[str]:
    """The two subprotocols a client offers to connect with ``headers`` (its Authorization or x-api-key)."""
    return [SUBPROTOCOL, encode_header_map(headers)]
