"""Private network namespaces for tests and benches that need a real, non-loopback address.

Why: WebRTC cannot run over 127.0.0.1 here (aioice never gathers loopback candidates), and tests
may send traffic only to loopback or to hosts in namespaces they create themselves - never to this
machine's own interfaces. ``network_namespace()`` gives the calling thread a fresh namespace with
``lo`` and one private address on a veth pair whose both ends stay inside it, so nothing can leave.

The switch is per thread (``os.setns``): threads and processes started while inside inherit the
namespace, which is how a uvicorn thread, a runtime subprocess or Chromium end up in it. Everything
that must share the namespace has to be started after entering it.

Needs root and iproute2; ``unavailable_reason()`` says why not before anything is attempted, and
the context managers raise ``OSError``/``subprocess.CalledProcessError`` (see ``failure_detail``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

IP_TIMEOUT = 10


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raises CalledProcessError (with ``ip``'s stderr) when it fails."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=IP_TIMEOUT)


def delete(name: str) -> None:
    """Remove a named namespace if it exists (its links go with it)."""
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=IP_TIMEOUT)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be created here, or None when they probably can."""
    if os.geteuid() != 0:
        return "needs root to create a private network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`) to create a private network namespace"
    return None


def failure_detail(exc: BaseException) -> str:
    """A one-line reason from what ``network_namespace()``/``entered()`` raised."""
    if isinstance(exc, subprocess.CalledProcessError):
        return (exc.stderr or "").strip() or f"`{' '.join(map(str, exc.cmd))}` exited {exc.returncode}"
    return str(exc)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Move the calling thread into the existing namespace ``name``; restore its own on exit."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            os.setns(target, os.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            os.setns(original, os.CLONE_NEWNET)
    finally:
        os.close(original)


@contextlib.contextmanager
def network_namespace(prefix: str, address: str, *,
                      default_route: bool = True) -> Iterator[str]:
    """Create ``<prefix><pid>`` with ``lo`` and ``address`` (CIDR) on a veth end, and enter it.

    Yields the namespace's name; the namespace is deleted on exit. Distinct ``prefix`` values let
    several users in one process (or several processes) hold namespaces at once. ``default_route``
    points the default route at the dead-end veth (Chromium picks its "default" local address by
    routing towards a public IP); without it, any attempt to reach beyond the namespace fails at once
    with "network unreachable" instead of silently going nowhere.
    """
    name = f"{prefix}{os.getpid()}"
    delete(name)  # stale, from a run that was killed
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        # A veth pair with both ends inside the namespace (the kernel here has no dummy links): one
        # end carries the address, the other is a dead end that nothing listens on.
        ip("-n", name, "link", "add", "nc0", "type", "veth", "peer", "name", "nc1")
        ip("-n", name, "addr", "add", address, "dev", "nc0")
        ip("-n", name, "link", "set", "nc0", "up")
        ip("-n", name, "link", "set", "nc1", "up")
        if default_route:
            ip("-n", name, "route", "add", "default", "dev", "nc0")
        with entered(name):
            yield name
    finally:
        delete(name)


def address_of(cidr: str) -> str:
    """``10.0.0.1/24`` -> ``10.0.0.1``."""
    return cidr.partition("/")[0]
