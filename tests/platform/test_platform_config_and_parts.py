"""Stack configuration handling, the Lambda bundle, the table schema contract and the image switch."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pulumi
import pytest
from pulumi_harness import ROOT, Run, cached_run, run_program


def _error_of(stack: str, overrides: dict[str, str | None], **kwargs: object) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the message is what matters to the operator
        run_program(stack, overrides, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"compute": "k8s"}, "config compute must be one of ecs, ec2, got 'k8s'"),
    ({"domainName": "app.other.org"}, "not inside hostedZoneName"),
    ({"minCapacity": "3", "maxCapacity": "2"}, "need minCapacity <= desiredCapacity <= maxCapacity"),
    ({"vpcCidr": "10.0.0.0/8"}, "vpcCidr must be an IPv4 block between /16 and /20"),
    ({"domainName": None}, "domainName"),
])
def test_bad_config_stops_with_a_named_key(overrides: dict[str, str | None], message: str) -> None:
    assert message in _error_of("dev", overrides)


def test_secrets_are_required() -> None:
    assert "turnSecret" in _error_of("dev", {}, secrets=False)


def test_given_image_uri_skips_the_build() -> None:
    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ci/runtime@sha256:" + "cd" * 32
    run = cached_run("prod", compute="ecs", imageUri=uri)
    assert [i.name for i in run.of_type("docker-build:index:Image")] == ["images-coturn-image"]  # coturn mirror
    assert run.outputs["imageRef"] == uri
    import json

    (container,) = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition", "ecs-runtime-task")
                              .inputs["containerDefinitions"])
    assert container["image"] == uri


def test_image_is_built_from_the_dockerfile(deployed: Run) -> None:
    image = deployed.one("docker-build:index:Image", "images-runtime-image")
    repo = deployed.one("aws:ecr/repository:Repository", "images-runtime")
    assert image.inputs["dockerfile"]["location"] == str(ROOT / "Dockerfile")
    assert image.inputs["context"]["location"] == str(ROOT)
    assert image.inputs["push"] is True
    assert image.inputs["registries"][0]["address"] == repo.state["repositoryUrl"]
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}


def test_tables_match_the_dynamodb_store() -> None:
    """The deployed key schema is the one runtime/stores/dynamodb.py creates under moto and queries."""
    from runtime.stores import dynamodb

    run = cached_run("prod", compute="ecs")
    for table in run.of_type("aws:dynamodb/table:Table"):
        spec = dynamodb.table_spec(table.inputs["name"])
        keys = {k["KeyType"]: k["AttributeName"] for k in spec["KeySchema"]}
        assert (table.inputs["hashKey"], table.inputs.get("rangeKey")) == (keys["HASH"], keys.get("RANGE"))
        assert sorted((a["name"], a["type"]) for a in table.inputs["attributes"]) == sorted(
            (a["AttributeName"], a["AttributeType"]) for a in spec["AttributeDefinitions"])
        assert [g["name"] for g in table.inputs.get("globalSecondaryIndexes", [])] == [
            g["IndexName"] for g in spec.get("GlobalSecondaryIndexes", [])]
        assert table.inputs["streamViewType"] == spec["StreamSpecification"]["StreamViewType"]
        assert table.inputs["ttl"] == {"attributeName": dynamodb.TTL_ATTR, "enabled": True}
        assert table.inputs["billingMode"] == "PAY_PER_REQUEST"
        assert table.inputs["deletionProtectionEnabled"] is True  # prod


def test_lambda_bundle_imports_both_handlers(tmp_path: Path) -> None:
    """Unzip the archive the functions get and import the handlers with only stdlib + boto3 around.

    ``-S -I`` keeps the venv's site-packages (starlette, pydantic, ...) out, like the Lambda runtime;
    boto3/botocore are then added from their install location only.
    """
    from concierge_platform.lambda_code import AUTHORIZER_HANDLER, PUBLISHER_HANDLER, lambda_archive

    archive = lambda_archive()
    assert isinstance(archive, pulumi.AssetArchive)
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for rel, asset in archive.assets.items():
            zf.write(asset.path, rel)
    names = zipfile.ZipFile(bundle).namelist()
    assert not any(n.startswith("runtime/api") or n.startswith("runtime/speech") for n in names)
    import boto3

    # The Lambda runtime provides boto3 (and its dependencies); the venv's site-packages stands in for it,
    # and the banned-module check below catches any handler that reaches for more than that.
    aws_libs = [str(Path(boto3.__file__).parent.parent)]
    code = (
        "import importlib, sys\n"
        f"sys.path[:0] = [{str(bundle)!r}, *{aws_libs!r}]\n"
        f"for handler in ({AUTHORIZER_HANDLER!r}, {PUBLISHER_HANDLER!r}):\n"
        "    module, func = handler.rsplit('.', 1)\n"
        "    assert callable(getattr(importlib.import_module(module), func)), handler\n"
        "for banned in ('starlette', 'pydantic', 'numpy', 'aiortc'):\n"
        "    assert banned not in sys.modules, banned\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
