"""Calls in progress across all workers, and ECS task scale-in protection while there are any.

Media never passes the ALB, so its deregistration delay cannot drain a call: a task that ECS scales in or
replaces during a deployment would cut every call it carries. The ECS agent offers an endpoint for exactly
this (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html):
``PUT $ECS_AGENT_URI/task-protection/v1/state`` with ``{"ProtectionEnabled": true, "ExpiresInMinutes": N}``
keeps the task out of scale-in and deployments until protection is cleared or expires.

Why one watcher in the ``serve`` parent process instead of each worker calling the agent: protection is per
task, but calls live in separate worker processes (one per vCPU). If workers set protection themselves, one
worker's "off" would race another worker's "on" and could leave a busy task unprotected. The parent instead
reads the task-wide count (the ``voice_sessions_active`` gauge, summed over live workers exactly as
``/metrics`` reports it) and is the only writer, so the agent always sees the last decision on one count.
The cost is latency: a call is protected at most ``TASK_PROTECTION_POLL_SECONDS`` after it starts.

The same count is what the EC2 hosts' drain watcher reads from ``GET /metrics`` (``voice_sessions_active``),
so both backends use one definition of "calls in progress". Without ``ECS_AGENT_URI`` (standalone, EC2)
nothing is started.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import multiprocess as _mp

log = logging.getLogger("runtime.task_protection")

CALLS_METRIC = "voice_sessions_active"  # runtime.metrics.SESSIONS_ACTIVE
PROTECTION_PATH = "/task-protection/v1/state"
REQUEST_TIMEOUT_S = 2.0  # the agent is local; a slow answer must not stall the watcher


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_workers(directory: str) -> list[int]:
    """Drop live-gauge files of worker processes that are gone (a crashed worker's calls are over).

    prometheus_client leaves that to the process supervisor (``mark_process_dead``); uvicorn does not call it,
    so without this a crashed worker's last value would count forever, in ``/metrics`` and here.
    """
    dead = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid_part = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".db")
        if pid_part.isdigit() and not _pid_alive(int(pid_part)):
            dead.add(int(pid_part))
    for pid in dead:
        _mp.mark_process_dead(pid, directory)
    return sorted(dead)


def calls_in_progress() -> int:
    """Voice sessions in progress in this task: all live workers in multiprocess mode, else this process."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        prune_dead_workers(directory)
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    total = 0.0
    for family in registry.collect():
        if family.name == CALLS_METRIC:
            total += sum(s.value for s in family.samples if s.name == CALLS_METRIC)
    return max(0, round(total))


class AgentClient:
    """The ECS agent's task-protection endpoint; every call bounded by ``timeout``."""

    def __init__(self, agent_uri: str, *, timeout: float = REQUEST_TIMEOUT_S) -> None:
        if not agent_uri.startswith(("http://", "https://")):
            raise ValueError(f"ECS_AGENT_URI must be an http(s) URL, got {agent_uri!r}")
        self.url = agent_uri.rstrip("/") + PROTECTION_PATH
        self.timeout = timeout

    def set(self, enabled: bool, expires_minutes: int) -> bool:
        """True when the agent confirmed the new state; failures are logged and reported, never raised."""
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = expires_minutes
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - scheme checked
                answer = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("task protection update failed", extra={"enabled": enabled, "error": str(exc)})
            return False
        # The agent answers 200 with {"protection": {...}} or with {"failure": {...}} / {"error": {...}}.
        if "protection" not in answer:
            log.warning("task protection refused", extra={"enabled": enabled, "answer": answer})
            return False
        return True


class ProtectionWatcher:
    """Keeps the task protected while it has calls and unprotected when idle; the only writer."""

    def __init__(self, client: AgentClient, *, expires_minutes: int, poll_seconds: float,
                 count: Callable[[], int] = calls_in_progress, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.expires_minutes = expires_minutes
        self.poll_seconds = poll_seconds
        self.count = count
        self.clock = clock
        self.protected = False
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """One decision; renew at half the expiry so a long call never outlives its protection."""
        busy = self.count() > 0
        now = self.clock()
        if busy and (not self.protected or now - self._renewed_at >= self.expires_minutes * 30):
            if self.client.set(True, self.expires_minutes):
                self.protected, self._renewed_at = True, now
        elif not busy and self.protected and self.client.set(False, self.expires_minutes):
            self.protected = False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a metrics read must never kill the watcher
                log.exception("task protection check failed")
            self._stop.wait(self.poll_seconds)

    def start(self) -> ProtectionWatcher:
        self._thread = threading.Thread(target=self._run, name="task-protection", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def start(agent_uri: str | None, *, expires_minutes: int, poll_seconds: float) -> ProtectionWatcher | None:
    """Start the watcher when running as an ECS task (the agent injects ``ECS_AGENT_URI``), else nothing."""
    if not agent_uri:
        return None
    log.info("ECS task scale-in protection follows calls in progress",
             extra={"expires_minutes": expires_minutes, "poll_seconds": poll_seconds})
    return ProtectionWatcher(AgentClient(agent_uri), expires_minutes=expires_minutes,
                             poll_seconds=poll_seconds).start()
