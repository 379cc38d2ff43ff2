"""Local credential endpoints as a deployed task or host sees them: the ECS container endpoint and IMDSv2.

Both hand out short-lived temporary credentials issued into a ``CredentialBook`` (``emulators.identity``),
which the local services (the Nova Sonic emulator) check signatures against, so a test proves that the
runtime signs with exactly what the platform served it. Behaviour follows the AWS documentation:

- ECS container credentials (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html,
  https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html): ``GET`` on the
  credentials path answers ``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}``; with an
  authorization token configured (``AWS_CONTAINER_AUTHORIZATION_TOKEN``, as EKS Pod Identity and ECS
  Anywhere use) the ``Authorization`` header must carry it exactly, else 401.
- IMDSv2 only (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html,
  ``HttpTokens=required``): ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600)
  returns a session token; every ``GET`` must present a live one in ``X-aws-ec2-metadata-token`` or gets 401;
  a ``PUT`` carrying ``X-Forwarded-For`` is refused (403), as IMDS does.
- Rotation: the served credentials are replaced once fewer than ``rotate_before_seconds`` of their
  ``lifetime_seconds`` remain (IMDS makes new ones available at least 5 minutes before expiry; a test
  shortens everything).

``go_down("refuse" | "hang" | "error")`` simulates an outage: the port stops listening (connection
refused), requests are held unanswered, or answered 500; ``go_up()`` restores service on the same port.
``fetches`` counts credential documents served.

The servers are stdlib ``http.server`` (HTTP/1.1) in a thread: like the real endpoints they are plain
HTTP/1.1, and a thread keeps them independent of the event loop of the process under test (botocore
fetches from a worker thread anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from emulators.identity import CredentialBook, IssuedCredentials

DownMode = Literal["refuse", "hang", "error"]
_HANG_LIMIT_SECONDS = 60.0  # a held request is released at the latest then (or when the server stops)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SharedCredentialBook(CredentialBook):
    """A ``CredentialBook`` that another process fills: issued credentials are JSON lines in ``path``.

    For running an endpoint (``python -m emulators.credentials --book-file``) and a verifying service in
    different processes; ``lookup`` re-reads the file when a key is not known yet.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    def lookup(self, access_key_id: str) -> IssuedCredentials | None:
        found = super().lookup(access_key_id)
        if found is None and self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self.add(IssuedCredentials(**json.loads(line)))
            found = super().lookup(access_key_id)
        return found


class _Endpoint:
    """Shared machinery: the thread-served HTTP server, rotation, the outage switch, counters."""

    kind = "endpoint"

    def __init__(self, book: CredentialBook | None = None, *, lifetime_seconds: float = 3600.0,
                 rotate_before_seconds: float | None = None, host: str = "127.0.0.1", port: int = 0,
                 role_name: str = "concierge-task-role", book_file: str | Path | None = None) -> None:
        self.book = book if book is not None else CredentialBook()
        self.lifetime_seconds = lifetime_seconds
        self.rotate_before_seconds = lifetime_seconds / 2 if rotate_before_seconds is None else rotate_before_seconds
        self.host = host
        self.port = port
        self.role_name = role_name
        self.book_file = Path(book_file) if book_file else None
        self.fetches = 0  # credential documents served
        self.refused = 0  # requests answered 4xx (bad token, missing header...)
        self.requests = 0  # every HTTP request received, answered or not
        self.served_keys: list[str] = []  # every distinct access key handed out, in order
        self.down: DownMode | None = None
        self._current: IssuedCredentials | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> _Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                endpoint._dispatch(self, "GET")

            def do_PUT(self) -> None:
                endpoint._dispatch(self, "PUT")

            def do_POST(self) -> None:
                endpoint._dispatch(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._release.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.kind}-credentials", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> _Endpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def go_down(self, mode: DownMode = "refuse") -> None:
        """Outage: ``refuse`` closes the port, ``hang`` holds requests unanswered, ``error`` answers 500."""
        self.down = mode
        if mode == "refuse" and self._server is not None:
            self.stop()

    def go_up(self) -> None:
        mode, self.down = self.down, None
        self._release.set()
        if mode == "refuse" or self._server is None:
            self.start()
        else:
            self._release.clear()

    # --- credentials -----------------------------------------------------------------------------------

    def current(self) -> IssuedCredentials:
        """The credentials being served now, rotated when fewer than ``rotate_before_seconds`` remain."""
        with self._lock:
            now = time.time()
            cur = self._current
            if cur is None or cur.expires_at is None or cur.expires_at - now <= self.rotate_before_seconds:
                cur = self.book.issue(lifetime_seconds=self.lifetime_seconds)
                self._current = cur
                self.served_keys.append(cur.access_key_id)
                if self.book_file is not None:
                    with self.book_file.open("a") as out:
                        out.write(json.dumps({"access_key_id": cur.access_key_id,
                                              "secret_access_key": cur.secret_access_key,
                                              "session_token": cur.session_token,
                                              "expires_at": cur.expires_at}) + "\n")
            return cur

    def _document(self) -> dict[str, Any]:
        cur = self.current()
        assert cur.expires_at is not None
        self.fetches += 1
        return {"AccessKeyId": cur.access_key_id, "SecretAccessKey": cur.secret_access_key,
                "Token": cur.session_token, "Expiration": _iso(cur.expires_at)}

    # --- HTTP --------------------------------------------------------------------------------------------

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests += 1
        if self.down == "hang":
            self._release.wait(_HANG_LIMIT_SECONDS)
            request.close_connection = True
            return
        if self.down == "error":
            self._reply(request, 500, {"message": "internal error"})
            return
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            request.rfile.read(length)
        self.handle(request, method)

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def _reply(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any] | str,
               content_type: str | None = None) -> None:
        if 400 <= status < 500:
            self.refused += 1
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        request.send_response(status)
        request.send_header("Content-Type", content_type or ("application/json" if isinstance(body, dict)
                                                             else "text/plain"))
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


class ContainerCredentialsEndpoint(_Endpoint):
    """The ECS / EKS Pod Identity container credentials endpoint.

    Point a process at it with ``environment()``: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (botocore accepts
    plain HTTP only on loopback or the ECS/EKS link-local addresses) and, when configured,
    ``AWS_CONTAINER_AUTHORIZATION_TOKEN``. ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` always means
    ``http://169.254.170.2<path>``, which cannot be served on loopback; the path is the same.
    """

    kind = "ecs"

    def __init__(self, book: CredentialBook | None = None, *, authorization_token: str | None = None,
                 path: str | None = None, **options: Any) -> None:
        super().__init__(book, **options)
        self.authorization_token = authorization_token
        self.path = path or f"/v2/credentials/{uuid.uuid4()}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def environment(self) -> dict[str, str]:
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url}
        if self.authorization_token is not None:
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self.authorization_token
        return env

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        if method != "GET":
            self._reply(request, 405, {"message": "method not allowed"})
            return
        if self.authorization_token is not None:
            presented = request.headers.get("Authorization")
            if presented is None:
                self._reply(request, 401, {"message": "missing Authorization header"})
                return
            if not secrets.compare_digest(presented, self.authorization_token):
                self._reply(request, 401, {"message": "invalid Authorization token"})
                return
        if request.path != self.path:
            self._reply(request, 404, {"message": f"no credentials at {request.path}"})
            return
        document = self._document()
        document["RoleArn"] = f"arn:aws:iam::123456789012:role/{self.role_name}"
        self._reply(request, 200, document)


class InstanceMetadataEndpoint(_Endpoint):
    """EC2 IMDSv2 (tokens required): only the token and instance-profile credential paths.

    Point botocore at it with ``environment()``: ``AWS_EC2_METADATA_SERVICE_ENDPOINT``.
    """

    kind = "imds"
    MAX_TTL = 21600

    def __init__(self, book: CredentialBook | None = None, **options: Any) -> None:
        super().__init__(book, **options)
        self._tokens: dict[str, float] = {}
        self.token_requests = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def environment(self) -> dict[str, str]:
        return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url, "AWS_EC2_METADATA_DISABLED": "false"}

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path
        if path == "/latest/api/token":
            if method != "PUT":
                self._reply(request, 405, "")
                return
            if request.headers.get("X-Forwarded-For") is not None:
                self._reply(request, 403, "Forbidden")
                return
            raw = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            try:
                ttl = int(raw) if raw is not None else 0
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= self.MAX_TTL:
                self._reply(request, 400, "Bad Request")
                return
            token = secrets.token_urlsafe(40)
            self._tokens[token] = time.monotonic() + ttl
            self.token_requests += 1
            self._reply(request, 200, token)
            return
        if method != "GET":
            self._reply(request, 405, "")
            return
        presented = request.headers.get("X-aws-ec2-metadata-token")
        expires = self._tokens.get(presented or "")
        if expires is None or time.monotonic() >= expires:
            self._reply(request, 401, "Unauthorized")  # IMDSv2 only: no token, no metadata
            return
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            self._reply(request, 200, self.role_name)
        elif path == base + self.role_name:
            document = self._document()
            document.update({"Code": "Success", "LastUpdated": _iso(time.time()), "Type": "AWS-HMAC"})
            self._reply(request, 200, document)
        else:
            self._reply(request, 404, "Not Found")


@contextmanager
def serving(endpoint: _Endpoint) -> Iterator[_Endpoint]:
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port nobody listens on (for "endpoint unreachable" runs)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- command line ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """``python -m emulators.credentials ecs|imds [options]``: serve until stdin closes or SIGTERM.

    Prints ``READY ecs <full-uri> <token>`` or ``READY imds <endpoint>``, then the environment to give the
    process under test as ``ENV NAME=VALUE`` lines and ``END``. Commands on stdin, one a line: ``down
    refuse|hang|error``, ``up``, ``stats`` (prints ``STATS fetches=<n> keys=<n> refused=<n>``).
    ``--book-file`` appends every credential issued as a JSON line for a ``SharedCredentialBook`` in
    another process (the Nova Sonic emulator).
    """
    import signal

    parser = argparse.ArgumentParser(prog="python -m emulators.credentials")
    parser.add_argument("kind", choices=["ecs", "imds"])
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds each credential is valid")
    parser.add_argument("--rotate-before", type=float, default=None,
                        help="issue new credentials when fewer seconds remain (default: half the lifetime)")
    parser.add_argument("--token", default=None, help="ecs: required Authorization token (default: random)")
    parser.add_argument("--no-token", action="store_true", help="ecs: require no Authorization header")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--book-file", default=None)
    args = parser.parse_args(argv)

    options: dict[str, Any] = {"lifetime_seconds": args.lifetime, "rotate_before_seconds": args.rotate_before,
                               "port": args.port, "book_file": args.book_file}
    endpoint: ContainerCredentialsEndpoint | InstanceMetadataEndpoint
    if args.kind == "ecs":
        token = None if args.no_token else (args.token or secrets.token_urlsafe(24))
        endpoint = ContainerCredentialsEndpoint(authorization_token=token, **options)
    else:
        endpoint = InstanceMetadataEndpoint(**options)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    endpoint.start()
    if isinstance(endpoint, ContainerCredentialsEndpoint):
        print(f"READY ecs {endpoint.url} {endpoint.authorization_token or '-'}", flush=True)
    else:
        print(f"READY imds {endpoint.url}", flush=True)
    for name, value in endpoint.environment().items():
        print(f"ENV {name}={value}", flush=True)
    print("END", flush=True)

    def commands() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["down"]:
                endpoint.go_down(words[1] if len(words) > 1 else "refuse")  # type: ignore[arg-type]
            elif words[:1] == ["up"]:
                endpoint.go_up()
            elif words[:1] == ["stats"]:
                print(f"STATS fetches={endpoint.fetches} keys={len(endpoint.served_keys)} "
                      f"refused={endpoint.refused}", flush=True)
        stop.set()

    threading.Thread(target=commands, daemon=True).start()
    try:
        stop.wait()
    finally:
        endpoint.stop()
    os._exit(0)  # the stdin reader thread may still be blocked in a read


if __name__ == "__main__":
    main()
