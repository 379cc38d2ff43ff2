"""The local credential endpoints enforce what the real ones enforce; each rule fails a lenient endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.credentials import ContainerProvider

from emulators.credentials import ContainerCredentialsEndpoint, InstanceMetadataEndpoint, SharedCredentialBook
from emulators.identity import CredentialBook
from tests.conftest import ROOT


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _token(imds: InstanceMetadataEndpoint, ttl: str = "60", **headers: str) -> urllib.request.Request:
    return urllib.request.Request(imds.url + "latest/api/token", method="PUT",
                                  headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl, **headers})


def test_imdsv2_requires_a_live_session_token() -> None:
    with InstanceMetadataEndpoint(role_name="web") as imds:
        creds = imds.url + "latest/meta-data/iam/security-credentials/web"
        assert _status(urllib.request.Request(creds)) == 401  # IMDSv1 style: refused
        assert _status(urllib.request.Request(creds, headers={"X-aws-ec2-metadata-token": "made-up"})) == 401
        assert _status(_token(imds, ttl="0")) == 400
        assert _status(_token(imds, ttl="21601")) == 400
        assert _status(urllib.request.Request(imds.url + "latest/api/token", method="PUT")) == 400
        assert _status(_token(imds, **{"X-Forwarded-For": "10.0.0.9"})) == 403
        with urllib.request.urlopen(_token(imds, ttl="1"), timeout=5) as response:
            token = response.read().decode()
        with urllib.request.urlopen(urllib.request.Request(creds, headers={"X-aws-ec2-metadata-token": token}),
                                    timeout=5) as response:
            document = json.loads(response.read())
        assert document["Code"] == "Success"
        assert document["AccessKeyId"].startswith("ASIA")
        time.sleep(1.1)
        assert _status(urllib.request.Request(creds, headers={"X-aws-ec2-metadata-token": token})) == 401  # expired
        assert imds.fetches == 1


def test_container_endpoint_requires_the_exact_authorization_token_and_path() -> None:
    with ContainerCredentialsEndpoint(authorization_token="secret-token") as ecs:
        assert _status(urllib.request.Request(ecs.url)) == 401
        assert _status(urllib.request.Request(ecs.url, headers={"Authorization": "secret-token-x"})) == 401
        wrong_path = ecs.url.rsplit("/", 1)[0] + "/other"
        assert _status(urllib.request.Request(wrong_path, headers={"Authorization": "secret-token"})) == 404
        assert _status(urllib.request.Request(ecs.url, headers={"Authorization": "secret-token"})) == 200
        assert ecs.fetches == 1
        assert ecs.refused == 3


def test_credentials_rotate_before_they_expire_and_land_in_the_book() -> None:
    book = CredentialBook()
    with ContainerCredentialsEndpoint(book, lifetime_seconds=2.0, rotate_before_seconds=1.0) as ecs:
        provider = ContainerProvider(environ=ecs.environment())
        first = provider.load().get_frozen_credentials()
        again = provider.load().get_frozen_credentials()
        time.sleep(1.1)
        later = provider.load().get_frozen_credentials()
    assert first.access_key == again.access_key
    assert later.access_key != first.access_key
    for frozen in (first, later):
        issued = book.lookup(frozen.access_key)
        assert issued is not None
        assert (issued.secret_access_key, issued.session_token) == (frozen.secret_key, frozen.token)


def test_go_down_refuses_hangs_or_fails_and_go_up_restores_the_same_port() -> None:
    with ContainerCredentialsEndpoint() as ecs:
        url = ecs.url
        ecs.go_down("refuse")
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
        ecs.go_up()
        assert ecs.url == url
        assert _status(urllib.request.Request(url)) == 200
        ecs.go_down("error")
        assert _status(urllib.request.Request(url)) == 500
        ecs.go_down("hang")
        with pytest.raises(TimeoutError):
            urllib.request.urlopen(url, timeout=0.5)
        ecs.go_up()
        assert _status(urllib.request.Request(url)) == 200


def test_command_line_endpoint_shares_its_book_with_another_process(tmp_path: Path) -> None:
    book_file = tmp_path / "issued.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.credentials", "ecs", "--lifetime", "60", "--book-file", str(book_file)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        ready = process.stdout.readline().split()
        assert ready[:2] == ["READY", "ecs"]
        env = {}
        for line in iter(process.stdout.readline, "END\n"):
            name, value = line.removeprefix("ENV ").strip().split("=", 1)
            env[name] = value
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == ready[2]
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == ready[3]
        frozen = ContainerProvider(environ=env).load().get_frozen_credentials()
        issued = SharedCredentialBook(book_file).lookup(frozen.access_key)
        assert issued is not None
        assert issued.session_token == frozen.token
        process.stdin.write("stats\n")
        process.stdin.flush()
        assert process.stdout.readline().startswith("STATS fetches=")
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=10)
    assert process.returncode == 0
