"""AppSync Events Lambda authorizer: the browser-facing rules of the embedded gateway, in the cloud.

AppSync calls ``handler`` with the ``Authorization`` value a browser put in its header map (the staff
token or a guest ``sessionToken``) and the operation. The decision uses ``runtime.auth`` exactly as the
REST API and the embedded gateway do:

- ``EVENT_CONNECT``: any valid credential;
- ``EVENT_SUBSCRIBE``: ``may_subscribe(principal, channel)`` - guests only their own
  ``/conversations/<sessionId>``, staff anything (wildcards included);
- ``EVENT_PUBLISH``: always refused. Publishing is server side: the stream publisher signs with IAM,
  which the namespaces' publish auth mode takes instead of this authorizer.

Request shape (AppSync Events Lambda authorization)::

    {"authorizationToken": "...", "requestContext": {"apiId", "accountId", "requestId",
     "operation": "EVENT_CONNECT|EVENT_SUBSCRIBE|EVENT_PUBLISH", "channelNamespaceName", "channel"},
     "requestHeaders": {...}}

Response: ``{"isAuthorized": bool, "ttlOverride": 0, "handlerContext": {...}}``. ``ttlOverride`` is 0
because AppSync caches a decision per token: a cached "yes" for connecting must never answer a later
subscribe to some other session's channel.

Secrets come from ``STAFF_TOKEN`` / ``SESSION_SECRET``, or, when ``STAFF_TOKEN_SECRET_ARN`` /
``SESSION_SECRET_ARN`` are set, from Secrets Manager (fetched once per container). Standard library and
boto3 only (what the Lambda runtime ships).

With ``STAFF_AUTH=cognito`` (the platform sets it in the function's environment) staff sign in with Cognito and
AppSync's ``AMAZON_COGNITO_USER_POOLS`` provider checks their JWTs; this authorizer then takes guests' session
tokens only and refuses the shared staff token, even when ``STAFF_TOKEN`` is still configured
(docs/staff-sign-in.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from runtime.auth import Principal, authenticate, may_subscribe
from runtime.events import channels

log = logging.getLogger("runtime.events.authorizer")

_secret_cache: dict[str, str] = {}


def _secret(env_value: str, env_arn: str) -> str | None:
    arn = os.environ.get(env_arn)
    if not arn:
        return os.environ.get(env_value) or None
    if arn not in _secret_cache:
        import boto3  # only when Secrets Manager is used: keeps cold starts of the env-var setup fast

        value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        _secret_cache[arn] = value.strip()
    return _secret_cache[arn]


def decide(operation: str, channel: str | None, principal: Principal | None) -> bool:
    """The one decision: may this principal perform this operation on this channel?"""
    if principal is None:
        return False
    if operation == "EVENT_CONNECT":
        return True
    if operation == "EVENT_SUBSCRIBE":
        try:
            return may_subscribe(principal, channels.normalize(channel, allow_wildcard=True))
        except channels.ChannelError:
            return False
    return False  # EVENT_PUBLISH and anything unknown


def _context(principal: Principal | None) -> dict[str, str]:
    if principal is None:
        return {}
    return {"kind": principal.kind, **({"sessionId": principal.session_id} if principal.session_id else {})}


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    request = event.get("requestContext") or {}
    operation = str(request.get("operation") or "")
    channel = request.get("channel")
    try:
        cognito = os.environ.get("STAFF_AUTH", "token").strip().lower() == "cognito"
        principal = authenticate(
            event.get("authorizationToken"),
            staff_token=None if cognito else _secret("STAFF_TOKEN", "STAFF_TOKEN_SECRET_ARN"),
            session_secret=_secret("SESSION_SECRET", "SESSION_SECRET_ARN"),
            now=time.time(),
        )
    except Exception:  # a secret that cannot be read: refuse, never crash the authorizer
        log.exception("could not load authorizer secrets")
        principal = None
    allowed = decide(operation, channel if isinstance(channel, str) else None, principal)
    log.info("authorizer %s %s -> %s", operation, channel, "allow" if allowed else "deny")
    return {"isAuthorized": allowed, "ttlOverride": 0, "handlerContext": _context(principal) if allowed else {}}
