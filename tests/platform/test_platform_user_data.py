"""The EC2 hosts' user data, executed for real in a private mount namespace with stand-in tools.

``dnf``, ``systemctl``, ``aws`` and ``docker`` are stubs that log their arguments (``aws`` answers like
Secrets Manager and ECR would); /etc, /usr/local/bin and /run are private tmpfs mounts, so nothing on the
shared machine changes. Then the installed helper scripts run too: the secrets land in root-only env
files, and the exact docker commands (with the coturn start command surviving three layers of quoting)
are what systemd would start.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import platform_invariants as invariants
import pytest
from concierge_platform.coturn import CONTAINER_COMMAND
from pulumi_harness import cached_run

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                reason="needs util-linux unshare and root for private mounts")

STUB = """#!/bin/bash
name=$(basename "$0")
line=$name; for a in "$@"; do line+=$'\\x1f'"$a"; done
printf '%s\\n' "$line" >> "$STUB_LOG"  # one write: the pipeline's aws and docker stubs log concurrently
if [ "$name" = aws ] && [ "$1" = secretsmanager ]; then
  for a in "$@"; do case "$prev" in --secret-id) printf 'value-of-%s\\n' "${a##*:}";; esac; prev=$a; done
elif [ "$name" = aws ] && [ "$1" = ecr ]; then
  echo ecr-password
elif [ "$name" = docker ] && [ "$1" = login ]; then
  cat > "$STUB_LOG.login"
fi
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    run = cached_run("dev", compute="ec2")
    work = tmp_path_factory.mktemp("host")
    stubs = work / "stubs"
    stubs.mkdir()
    for tool in ("dnf", "systemctl", "aws", "docker"):
        (stubs / tool).write_text(STUB)
        (stubs / tool).chmod(0o755)
    (work / "user-data.sh").write_text(invariants.user_data(run))
    out = work / "out"
    script = (
        "set -e; mount -t tmpfs tmpfs /etc; mkdir -p /etc/systemd/system; "
        "mount -t tmpfs tmpfs /usr/local/bin; mount -t tmpfs tmpfs /run; "
        f"bash {work}/user-data.sh; /usr/local/bin/concierge-prepare; "
        "/usr/local/bin/concierge-runtime-run; /usr/local/bin/coturn-udp-run; /usr/local/bin/coturn-tcp-run; "
        f"mkdir -p {out}; cp -a /etc/concierge /etc/systemd/system /run/concierge /usr/local/bin {out}/"
    )
    env = {"PATH": f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin", "STUB_LOG": str(work / "calls.log")}
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [line.split("\x1f") for line in (work / "calls.log").read_text().splitlines()]
    return {"run": run, "out": out, "calls": calls, "login": (work / "calls.log.login").read_text()}


def _secret_suffix(run: object, env: str) -> str:
    key = env.lower().replace("_", "-")
    secret = next(s for s in run.of_type("aws:secretsmanager/secret:Secret")  # type: ignore[attr-defined]
                  if s.name == f"secrets-{key}")
    return secret.arn.rsplit(":", 1)[1]


def test_installs_docker_and_enables_both_units(host: dict) -> None:
    calls = host["calls"]
    assert ["dnf", "install", "-y", "docker", "iptables-nft"] in calls
    assert ["systemctl", "enable", "--now", "concierge-runtime.service", "coturn-udp.service", "coturn-tcp.service",
            "concierge-drain.service"] in calls
    units = host["out"] / "system"
    for unit in ("concierge-runtime.service", "coturn-udp.service", "coturn-tcp.service"):
        text = (units / unit).read_text()
        assert "ExecStartPre=/usr/local/bin/concierge-prepare" in text
        assert "Restart=always" in text


def test_secrets_are_fetched_into_root_only_files(host: dict) -> None:
    run = host["run"]
    secrets_env = host["out"] / "concierge" / "secrets.env"
    lines = secrets_env.read_text().splitlines()
    assert sorted(lines) == sorted(f"{env}=value-of-{_secret_suffix(run, env)}"
                                   for env in ("TURN_SECRET", "SESSION_SECRET"))  # no STAFF_TOKEN with Cognito
    assert stat.S_IMODE(secrets_env.stat().st_mode) == 0o600
    turn_env = host["out"] / "concierge" / "turn.env"
    assert turn_env.read_text() == f"TURN_SECRET=value-of-{_secret_suffix(run, 'TURN_SECRET')}\n"
    assert stat.S_IMODE(turn_env.stat().st_mode) == 0o600


def test_ecr_login_then_pull(host: dict) -> None:
    image = host["run"].outputs["imageRef"]
    calls = host["calls"]
    login = next(c for c in calls if c[:2] == ["docker", "login"])
    assert login[-1] == image.split("/")[0]
    assert host["login"].strip() == "ecr-password"
    assert ["docker", "pull", image] in calls
    assert calls.index(login) < calls.index(["docker", "pull", image])


def _docker_run(host: dict, name: str) -> list[str]:
    return next(c for c in host["calls"] if c[:2] == ["docker", "run"] and c[c.index("--name") + 1] == name)


def test_runtime_container_command(host: dict) -> None:
    argv = _docker_run(host, "concierge-runtime")
    assert argv[-1] == host["run"].outputs["imageRef"]
    assert "--network" in argv
    assert argv[argv.index("--network") + 1] == "host"
    env_files = [argv[i + 1] for i, a in enumerate(argv) if a == "--env-file"]
    assert env_files == ["/etc/concierge/runtime.env", "/run/concierge/secrets.env"]
    runtime_env = dict(line.split("=", 1) for line in
                       (host["out"] / "concierge" / "runtime.env").read_text().splitlines())
    assert runtime_env["STORE"] == "dynamodb"
    assert runtime_env["APPSYNC_ENDPOINT"] == host["run"].outputs["eventsHttpEndpoint"]
    opts = [argv[i + 1] for i, a in enumerate(argv) if a == "--log-opt"]
    assert f"awslogs-stream={os.uname().nodename}-runtime" in opts


def test_coturn_container_gets_the_exact_start_command(host: dict) -> None:
    argv = _docker_run(host, "coturn-udp")
    assert argv[-3:] == [host["run"].outputs["turnImageRef"], "-c", CONTAINER_COMMAND]  # the ECR mirror, by digest
    assert argv[argv.index("--entrypoint") + 1] == "sh"
    coturn_env = (host["out"] / "concierge" / "coturn-udp.env").read_text()
    assert coturn_env.startswith("TURNSERVER_CONF_B64=")
