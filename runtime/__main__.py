"""``python -m runtime serve [--host H] [--port P] [--workers N]`` - what the container runs.

Each worker is a separate process with its own event loop. A voice session lives wholly in the
worker that answered its ``POST /api/webrtc/offer``: signaling is a single non-trickle request (the
answer carries every candidate), so no later request has to find the same process again. The parent
makes sure all workers share ``SESSION_SECRET`` so guest tokens verify in any of them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile

import uvicorn

from runtime import task_protection
from runtime.log import configure_logging
from runtime.settings import load_settings


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "workers": args.workers}.items()
                 if v is not None}
    try:
        settings = load_settings(**overrides)
    except Exception as exc:  # pydantic ValidationError: show the operator what is wrong, no trace
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    os.environ["RUNTIME_JSON_LOGS"] = "1"
    os.environ.setdefault("SPEECH_WARM_UP", "1")  # /readyz turns green once the engine's models are loaded
    if settings.session_secret is None:
        os.environ["SESSION_SECRET"] = secrets.token_urlsafe(32)
    if settings.staff_token is None:
        token = secrets.token_urlsafe(24)
        os.environ["STAFF_TOKEN"] = token
        print(f"STAFF_TOKEN was not set; generated one for this run: {token}", file=sys.stderr)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="concierge-metrics-")
    for key, value in overrides.items():
        os.environ[key.upper()] = str(value)  # workers re-read settings from the environment
    # In this (parent) process: the one writer of the task's protection, reading every worker's calls.
    task_protection.start(settings.ecs_agent_uri, expires_minutes=settings.task_protection_minutes,
                          poll_seconds=settings.task_protection_poll_seconds)
    uvicorn.run(
        "runtime.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        # uvicorn's proxy_headers would set the client to the LEFTMOST X-Forwarded-For entry, which the client
        # writes itself; the app reads X-Forwarded-For (runtime.ratelimit.client_address, trusted hops from
        # the right) and X-Forwarded-Proto/Host (runtime.origin) itself when TRUST_PROXY_HEADERS is set.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        # Above the ALB idle timeout: the ALB must be the side that closes an idle connection.
        timeout_keep_alive=settings.keep_alive_seconds,
        # uvicorn's h11 protocol plus request-head and request-body read timeouts (slow clients), which
        # uvicorn does not have (runtime/http_timeouts.py); HEADER_/BODY_READ_TIMEOUT_SECONDS.
        http="runtime.http_timeouts:TimedH11Protocol",
        ws_max_size=1_400_000,  # room for an AppSync socket publish (5 x 240 KB); /ws/audio caps its own frames
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the runtime (and the built web app) over HTTP")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (default: number of CPUs)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
