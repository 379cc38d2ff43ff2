"""Security and shape invariants, checked in all four stack x compute combinations.

Each invariant is also shown to fire: the same check run on a recording mutated to break it must
report a violation, so none of these can pass vacuously.
"""

from __future__ import annotations

import json

import platform_invariants as invariants
import pytest
from pulumi_harness import Run, cached_run


@pytest.mark.parametrize("check", sorted(invariants.ALL))
def test_invariant_holds(deployed: Run, check: str) -> None:
    assert invariants.ALL[check](deployed) == []


def _edit_policy(run: Run, sid: str, **changes: object) -> None:
    for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
        doc = json.loads(policy.inputs["policy"])
        for stmt in doc["Statement"]:
            if stmt.get("Sid") == sid:
                stmt.update(changes)
        policy.inputs["policy"] = json.dumps(doc)


def _set(resources: list, path: list[str], value: object) -> None:
    for r in resources:
        target = r.inputs
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value


def test_imdsv1_is_caught() -> None:
    run = cached_run("dev", compute="ec2").mutated(lambda r: _set(
        r.of_type("aws:ec2/launchTemplate:LaunchTemplate"), ["metadataOptions", "httpTokens"], "optional"))
    assert invariants.imdsv2(run) == ["launch template ec2-hosts allows IMDSv1"]


def test_unencrypted_table_and_volume_are_caught() -> None:
    def edit(r: Run) -> None:
        r.one("aws:dynamodb/table:Table", "data-sessions").inputs["serverSideEncryption"] = {"enabled": False}
        r.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] = "false"

    found = invariants.encryption(cached_run("dev", compute="ec2").mutated(edit))
    assert "table data-sessions without SSE" in found
    assert "launch template ec2-hosts volume /dev/xvda unencrypted" in found


def test_wildcard_action_and_resource_are_caught() -> None:
    run = cached_run("prod", compute="ecs").mutated(
        lambda r: _edit_policy(r, "Tables", Action=["dynamodb:*"], Resource=["*"]))
    found = invariants.no_wildcard_iam(run)
    assert any("wildcard action dynamodb:*" in v for v in found)
    assert any("Resource * for ['dynamodb:*']" in v for v in found)


def test_bedrock_on_every_model_is_caught() -> None:
    run = cached_run("prod", compute="ecs").mutated(
        lambda r: _edit_policy(r, "NovaSonic", Resource=["arn:aws:bedrock:us-east-1::foundation-model/*"]))
    assert any("expected" in v for v in invariants.bedrock_scoped(run))


def test_second_backend_is_caught() -> None:
    ecs = cached_run("prod", compute="ecs")
    run = ecs.mutated(lambda r: r.resources.append(cached_run("dev", compute="ec2").one(
        "aws:autoscaling/group:Group")))
    assert invariants.one_compute_backend(run) == ["ecs: 1 x aws:autoscaling/group:Group"]


def test_single_az_and_second_nat_are_caught() -> None:
    def edit(r: Run) -> None:
        for s in r.of_type("aws:ec2/subnet:Subnet"):
            s.inputs["availabilityZone"] = "us-east-1a"
        r.resources.append(r.one("aws:ec2/natGateway:NatGateway"))

    run = cached_run("dev", compute="ecs").mutated(edit)
    assert len(invariants.two_azs(run)) == 2
    assert invariants.one_nat(run) == ["2 NAT gateways, expected exactly one shared"]


def test_world_open_udp_range_is_caught() -> None:
    def edit(r: Run) -> None:
        rule = r.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "security-in-app-media-from-turn")
        rule.inputs.pop("referencedSecurityGroupId")
        rule.inputs["cidrIpv4"] = "0.0.0.0/0"

    found = invariants.no_world_open_ranges(cached_run("prod", compute="ecs").mutated(edit))
    assert any("non-load-balancer group" in v for v in found)
    assert any("is a range" in v for v in found)
    assert any("other than the TURN relays" in v for v in found)
