"""Channel paths of the events API: validation, normalisation and wildcard matching.

Shared by the embedded gateway, the cloud stream publisher and the Lambda authorizer, so it is
standard library only. The rules copy AppSync Events
(https://docs.aws.amazon.com/appsync/latest/eventapi/channel-namespaces.html): up to five
segments of ``[A-Za-z0-9-]`` (1-50 characters, no leading/trailing dash), the first segment names a
namespace that must exist, an optional trailing ``/*`` wildcard only when subscribing, and a leading
slash that callers may omit (Amplify sends ``default/x``). A wildcard ``/ns/*`` matches every channel
below ``/ns`` but never ``/ns`` itself.
"""

from __future__ import annotations

import re

#: The namespaces this project defines (DESIGN §5); anything else is refused like an unknown namespace.
NAMESPACES: frozenset[str] = frozenset({"conversations", "restaurant-booking"})
MAX_SEGMENTS = 5
_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")


class ChannelError(ValueError):
    """A channel the API does not accept; ``str(exc)`` is the message sent to the client."""


def normalize(channel: object, *, allow_wildcard: bool) -> str:
    """Return the canonical ``/ns/seg[/...][/*]`` form of ``channel`` or raise ChannelError.

    Accepts a missing leading slash and one trailing slash, as AppSync does.
    """
    if not isinstance(channel, str) or not channel or len(channel) > 260:
        raise ChannelError("Invalid Channel Format")
    path = channel[1:] if channel.startswith("/") else channel
    if path.endswith("/"):
        path = path[:-1]
    segments = path.split("/")
    wildcard = segments[-1] == "*"
    if wildcard:
        if not allow_wildcard:
            raise ChannelError("Wildcards are only allowed when subscribing")
        segments = segments[:-1]
    if not segments or len(segments) > MAX_SEGMENTS or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ChannelError("Invalid Channel Format")
    if segments[0] not in NAMESPACES:
        raise ChannelError(f"Unknown channel namespace '{segments[0]}'")
    return "/" + "/".join(segments) + ("/*" if wildcard else "")


def namespace_of(channel: str) -> str:
    """First segment of a normalised channel."""
    return channel.split("/", 2)[1]


def is_wildcard(channel: str) -> bool:
    return channel.endswith("/*")


def matches(pattern: str, channel: str) -> bool:
    """Whether a normalised subscription ``pattern`` receives events published on ``channel``."""
    if is_wildcard(pattern):
        return channel.startswith(pattern[:-1])  # "/ns/*" -> prefix "/ns/": excludes "/ns" itself
    return pattern == channel


def wildcard_patterns_for(channel: str) -> list[str]:
    """Every wildcard pattern that matches ``channel``: ``/a/b/c`` -> ``/a/*``, ``/a/b/*``.

    Lets the gateway index subscriptions by exact key instead of testing every pattern on each publish.
    """
    segments = channel[1:].split("/")
    return ["/" + "/".join(segments[:i]) + "/*" for i in range(1, len(segments))]
