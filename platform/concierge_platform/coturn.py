"""coturn configuration for the asymmetric-ICE TURN pattern (browsers relay-only, the runtime on a private IP).

Browsers reach coturn through the NLB; coturn relays on the private address the packet arrived on
(no ``relay-ip``/``external-ip``: coturn then uses the client socket's local address, i.e. the task or
instance private IP) and may only relay to the application subnets. A TURN server that can reach
private addresses is an SSRF pivot (instance metadata, databases), so every other address is denied.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable

from .security import RELAY_MAX_PORT, RELAY_MIN_PORT, TURN_PORT, TURN_TCP_PORT

Transport = str  # "udp" or "tcp"
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp")
LISTEN_PORTS: dict[Transport, int] = {"udp": TURN_PORT, "tcp": TURN_TCP_PORT}
# The two processes share one network namespace (an ECS task, or an EC2 host's network): each relays from its
# own half of the relay range so their allocations never collide.
_RELAY_SPLIT = (RELAY_MIN_PORT + RELAY_MAX_PORT + 1) // 2
RELAY_RANGES: dict[Transport, tuple[int, int]] = {"udp": (RELAY_MIN_PORT, _RELAY_SPLIT - 1),
                                                  "tcp": (_RELAY_SPLIT, RELAY_MAX_PORT)}

# Everything coturn must never relay to; the application subnets are re-allowed on top of this
# ("allowed-peer-ip" wins over "denied-peer-ip" when both match).
DENIED_PEER_RANGES: tuple[str, ...] = (
    "0.0.0.0/0",  # relay only into the VPC's application subnets, never to the Internet
    "::/0",
)
# Spelled out as well so the intent survives someone narrowing the blanket deny above.
DENIED_SPECIAL_RANGES: tuple[str, ...] = (
    "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "fc00::/7", "fe80::/10",
)


def ip_range(cidr: str) -> str:
    """coturn takes ``first-last`` ranges, not CIDR, in *-peer-ip options."""
    net = ipaddress.ip_network(cidr)
    return f"{net[0]}-{net[-1]}"


def render_turnserver_conf(realm: str, allowed_peer_cidrs: Iterable[str], *, listening_port: int = TURN_PORT,
                           min_port: int = RELAY_MIN_PORT, max_port: int = RELAY_MAX_PORT,
                           listening_ip: str | None = None,
                           transports: tuple[Transport, ...] = TRANSPORTS) -> str:
    """turnserver.conf without the secret (the container appends ``static-auth-secret`` at start).

    ``transports`` picks the client protocols this process listens on; the deployment runs one process per
    protocol (see :func:`deployed_confs`) because a container port carries exactly one protocol.
    """
    allowed = [ip_range(c) for c in allowed_peer_cidrs]
    if not allowed:
        raise ValueError("coturn needs at least one allowed peer subnet (the application subnets)")
    unknown = set(transports) - set(TRANSPORTS)
    if not transports or unknown:
        raise ValueError(f"transports must be a non-empty subset of {TRANSPORTS}, got {transports}")
    lines = [
        f"listening-port={listening_port}",
        *(["no-udp"] if "udp" not in transports else []),
        *(["no-tcp"] if "tcp" not in transports else []),
        *([f"listening-ip={listening_ip}"] if listening_ip else []),
        f"min-port={min_port}",
        f"max-port={max_port}",
        f"realm={realm}",
        "use-auth-secret",  # time-limited REST credentials minted by the runtime's /api/config
        "fingerprint",
        "no-tls",  # the NLB terminates TLS on 443 and forwards plain TCP to 3479
        "no-dtls",
        "no-tcp-relay",  # aiortc only pairs UDP candidates; a TCP relay would be an open proxy
        "no-multicast-peers",
        "no-cli",
        "no-software-attribute",
        "stale-nonce=600",
        "max-allocate-lifetime=3600",
        "user-quota=12",
        "total-quota=1200",
        "log-file=stdout",
        "simple-log",
        *[f"denied-peer-ip={ip_range(c)}" for c in (*DENIED_PEER_RANGES, *DENIED_SPECIAL_RANGES)],
        *[f"allowed-peer-ip={r}" for r in allowed],
    ]
    return "\n".join(lines) + "\n"


# The container gets the rendered file base64-encoded in TURNSERVER_CONF_B64 (a multi-line value fits neither
# a Docker env-file nor an ECS environment entry cleanly) and the secret in TURN_SECRET (from Secrets
# Manager); the secret goes into the file, not onto the command line, so `ps` never shows it.
CONTAINER_COMMAND = (
    'umask 077 && printf "%s" "$TURNSERVER_CONF_B64" | base64 -d > /tmp/turnserver.conf'
    ' && printf "static-auth-secret=%s\\n" "$TURN_SECRET" >> /tmp/turnserver.conf'
    " && exec turnserver -c /tmp/turnserver.conf"
)


def conf_b64(conf: str) -> str:
    return base64.b64encode(conf.encode()).decode()


def deployed_confs(realm: str, allowed_peer_cidrs: Iterable[str]) -> dict[Transport, str]:
    """The two configurations both backends run: UDP on 3478 and TCP on 3479, disjoint relay ranges."""
    cidrs = list(allowed_peer_cidrs)
    return {t: render_turnserver_conf(realm, cidrs, listening_port=LISTEN_PORTS[t], min_port=RELAY_RANGES[t][0],
                                      max_port=RELAY_RANGES[t][1], transports=(t,))
            for t in TRANSPORTS}
