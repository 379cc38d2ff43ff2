"""The deployed stack rehearsed on this machine (tools/rehearsal.py, what ``bin/rehearse`` runs).

Two runs, each a separate process (it creates network namespaces and sets the Lambda's environment):

- prod/ecs: container credentials on 169.254.170.2, a guest books by voice through coturn, staff get the
  event from the stream-publisher Lambda over the IAM-only AppSync stand-in, the turns are in DynamoDB,
  and ``bin/smoke`` passes against the edge;
- prod/ec2: the EC2 hosts' environment, credentials from IMDSv2 on 169.254.169.254, the voice booking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools import rehearsal

pytestmark = [pytest.mark.netns, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def rehearse(tmp_path: Path, *args: str, timeout: float = 150) -> tuple[dict[str, Any], str]:
    reason = rehearsal.unavailable_reason()
    if reason is not None:
        pytest.skip(f"the rehearsal {reason}")
    report = tmp_path / "report.json"
    # The suite's fake AWS keys (tests/conftest.py) must not reach the rehearsal: it proves their absence.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "tools.rehearsal", "--report", str(report), *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the rehearsal stops its children and deletes its namespaces
        output, _ = proc.communicate(timeout=30)
        pytest.fail(f"the rehearsal overran {timeout:.0f} s:\n{output[-4000:]}")
    assert report.exists(), output[-4000:]
    summary = json.loads(report.read_text())
    assert proc.returncode == (0 if summary["ok"] else 1), output[-4000:]
    return summary, output


def checks(summary: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["ok"] for c in summary["checks"]}


@pytest.mark.timeout(180)
def test_ecs_task_with_container_credentials_books_by_voice_and_passes_smoke(tmp_path: Path) -> None:
    summary, output = rehearse(tmp_path, "--compute", "ecs")
    print(output)
    assert summary["ok"], [c for c in summary["checks"] if not c["ok"]]
    passed = checks(summary)
    for name in ("no AWS keys or profile files in the runtime's environment",
                 "guest call relayed through coturn only", "guest booked a table by voice",
                 "staff received booking.created from the stream publisher over AppSync",
                 "the turns are in the DynamoDB conversations table",
                 "the runtime signed Bedrock streams with served credentials only",
                 "the Lambda published with SigV4 from its role (no API key)",
                 "bin/smoke passes against the edge"):
        assert passed.get(name), name
    assert summary["credentials"] == "container"
    assert set(summary["overrides"]) == set(rehearsal.OVERRIDES)
    assert summary["wall_seconds"] < 90


@pytest.mark.timeout(150)
def test_ec2_host_with_imdsv2_credentials_books_by_voice(tmp_path: Path) -> None:
    summary, output = rehearse(tmp_path, "--compute", "ec2", "--no-smoke")
    print(output)
    assert summary["ok"], [c for c in summary["checks"] if not c["ok"]]
    assert summary["credentials"] == "imds"
    assert checks(summary)["the runtime signed Bedrock streams with served credentials only"]
    assert summary["wall_seconds"] < 75


def test_the_rehearsal_reads_the_deployment_from_the_program() -> None:
    deployment = rehearsal.read_deployment("prod", "ecs")
    env = deployment.runtime_env
    assert (env["STORE"], env["SPEECH_ENGINE"]) == ("dynamodb", "nova-sonic")
    # Staff sign in with Cognito on the default stacks: no shared staff token exists to inject.
    assert set(deployment.runtime_secrets) == {"SESSION_SECRET", "TURN_SECRET"}
    assert env["STAFF_AUTH"] == "cognito"
    assert sorted(t["TableName"] for t in deployment.tables) == sorted(
        env[k] for k in ("BOOKING_TABLE", "CHAT_HISTORY_TABLE", "SESSION_TABLE"))
    assert all(t["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES" for t in deployment.tables)
    assert set(deployment.turn_confs) == {"udp", "tcp"}
    assert all("use-auth-secret" in conf for conf in deployment.turn_confs.values())
    assert deployment.publish_auth == ["AWS_IAM"]
    assert deployment.subscribe_modes == {"conversations": ["AMAZON_COGNITO_USER_POOLS", "AWS_LAMBDA"],
                                          "restaurant-booking": ["AMAZON_COGNITO_USER_POOLS"]}
    assert deployment.cognito_config is not None
    assert deployment.cognito_config["userPoolId"] == env["COGNITO_USER_POOL_ID"]
    assert deployment.on_subscribe_code is not None
    assert 'const STAFF_GROUP = "staff"' in deployment.on_subscribe_code
    assert deployment.staff_mfa == "ON"  # prod requires MFA: the rehearsal's staff member sets up TOTP
    assert deployment.authorizer_env["STAFF_AUTH"] == "cognito"
    # Nothing the rehearsal overrides is a secret, and every override names a variable the task really has
    # (or one it must have to point at a stand-in).
    assert not set(rehearsal.OVERRIDES) & set(deployment.runtime_secrets)
    assert {"APPSYNC_ENDPOINT", "APPSYNC_REALTIME_ENDPOINT", "TURN_URLS", "COGNITO_USER_POOL_ID",
            "COGNITO_CLIENT_ID", "COGNITO_REGION"} <= set(env) & set(rehearsal.OVERRIDES)


def test_the_image_environment_and_command_come_from_the_dockerfile(tmp_path: Path) -> None:
    env, cmd = rehearsal.image_environment_and_command(tmp_path)
    assert cmd[1:] == ["-m", "runtime", "serve", "--host", "0.0.0.0"]
    assert env["DATA_DIR"] == f"{tmp_path}/var"
    assert env["PORT"] == "8000"
