"""Each resource's create call validated against botocore's model of that AWS API, plus documented rules.

Mocks accept any input; the provider turns the inputs into one API request and the service answers
ValidationException for a wrong enum, a missing member or a value out of range. botocore ships the
services' own models, so a request that fails here fails on ``pulumi up``.
"""

from __future__ import annotations

import json
from typing import Any

import aws_api_shapes as shapes
import aws_rules
import pytest
from pulumi_harness import Recorded, Run, cached_run

ECS_TASK = "aws:ecs/taskDefinition:TaskDefinition"


def test_create_calls_match_the_service_models(deployed: Run) -> None:
    assert shapes.api_shapes(deployed) == []


def test_documented_rules_hold(deployed: Run) -> None:
    assert shapes.documented_rules(deployed) == []


def test_ecs_port_mappings_load_balancers_and_sizes(ecs_run: Run) -> None:
    assert aws_rules.ecs_rules(ecs_run) == []


def test_every_listed_call_is_exercised() -> None:
    """The operations named by the issue exist in the installed botocore and each stack reaches them."""
    wanted = {("ecs", "RegisterTaskDefinition"), ("ecs", "CreateService"), ("elbv2", "CreateLoadBalancer"),
              ("elbv2", "CreateTargetGroup"), ("elbv2", "CreateListener"), ("wafv2", "CreateWebACL"),
              ("appsync", "CreateApi"), ("appsync", "CreateChannelNamespace"), ("dynamodb", "CreateTable"),
              ("lambda", "CreateEventSourceMapping"), ("autoscaling", "CreateAutoScalingGroup"),
              ("cloudfront", "CreateDistribution"), ("cloudfront", "CreateOriginAccessControl"),
              ("cloudfront", "CreateFunction"), ("cognito-idp", "CreateUserPool"),
              ("cognito-idp", "SetUserPoolMfaConfig"), ("cognito-idp", "CreateUserPoolClient"),
              ("cognito-idp", "CreateGroup"), ("s3", "PutBucketPolicy"), ("s3", "PutPublicAccessBlock"),
              ("elbv2", "CreateRule")}
    reached = set()
    for stack, compute in (("dev", "ecs"), ("dev", "ec2")):
        run = cached_run(stack, compute=compute)
        for r in run.resources:
            for service, op, _ in shapes.CALLS.get(r.typ, []):
                if shapes.request_for(r, service, op) is not None:
                    shapes.operation(service, op)  # raises if this botocore lacks the operation
                    reached.add((service, op))
    assert wanted <= reached


def _errors(run: Run, typ: str, name: str | None = None) -> list[str]:
    return [e for e in shapes.api_shapes(run) if name is None or e.startswith(f"{name}:")]


def _first(run: Run, typ: str) -> Recorded:
    return run.of_type(typ)[0]


@pytest.mark.parametrize(("typ", "edit", "expected"), [
    ("aws:ecs/service:Service", lambda i: i["networkConfiguration"].update(assignPublicIp="yes"),
     "'yes' is not one of ['ENABLED', 'DISABLED']"),
    ("aws:ecs/service:Service", lambda i: i.update(launchType="fargate"), "'fargate' is not one of"),
    ("aws:lb/targetGroup:TargetGroup", lambda i: i.update(protocol="UDP_TCP"), "'UDP_TCP' is not one of"),
    ("aws:lb/targetGroup:TargetGroup", lambda i: i.update(port=70000.0), "above the maximum 65535"),
    ("aws:lb/listener:Listener", lambda i: i.pop("loadBalancerArn"), "Missing required parameter"),
    ("aws:lb/loadBalancer:LoadBalancer", lambda i: i.update(loadBalancerType="classic"), "'classic' is not one of"),
    ("aws:wafv2/webAcl:WebAcl", lambda i: i["rules"][0].pop("visibilityConfig"), "VisibilityConfig"),
    ("aws:wafv2/webAcl:WebAcl", lambda i: i.update(scope="GLOBAL"), "'GLOBAL' is not one of"),
    ("aws:dynamodb/table:Table", lambda i: i.update(billingMode="ON_DEMAND"), "'ON_DEMAND' is not one of"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", lambda i: i.update(maximumRetryAttempts=10001.0),
     "above the maximum"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", lambda i: i.update(startingPosition="OLDEST"),
     "'OLDEST' is not one of"),
    ("aws:appsync/api:Api", lambda i: i["eventConfig"]["authProviders"][0].update(authType="IAM"),
     "'IAM' is not one of"),
    ("aws:appsync/channelNamespace:ChannelNamespace", lambda i: i.update(colour="red"), "no such member"),
    ("aws:cloudfront/distribution:Distribution", lambda i: i.update(priceClass="PriceClass_50"),
     "'PriceClass_50' is not one of"),
    ("aws:cloudfront/distribution:Distribution", lambda i: i["viewerCertificate"].update(
        minimumProtocolVersion="TLSv1.4"), "'TLSv1.4' is not one of"),
    ("aws:cloudfront/distribution:Distribution", lambda i: i["origins"][1]["customOriginConfig"].update(
        originSslProtocols=["TLSv1.3"]), "'TLSv1.3' is not one of"),
    ("aws:cloudfront/distribution:Distribution", lambda i: i["defaultCacheBehavior"].pop("targetOriginId"),
     "Missing required parameter"),
    ("aws:cloudfront/originAccessControl:OriginAccessControl", lambda i: i.update(signingProtocol="sigv2"),
     "'sigv2' is not one of"),
    ("aws:cloudfront/function:Function", lambda i: i.update(runtime="node20"), "'node20' is not one of"),
    ("aws:cognito/userPool:UserPool", lambda i: i["passwordPolicy"].update(minimumLength=100.0), "above the maximum"),
    ("aws:cognito/userPool:UserPool", lambda i: i.update(userPoolTier="FREE"), "'FREE' is not one of"),
    ("aws:cognito/userPoolClient:UserPoolClient", lambda i: i.update(preventUserExistenceErrors="ON"),
     "'ON' is not one of"),
    ("aws:cognito/userPoolClient:UserPoolClient", lambda i: i["tokenValidityUnits"].update(accessToken="weeks"),
     "'weeks' is not one of"),
    ("aws:cognito/userGroup:UserGroup", lambda i: i.pop("userPoolId"), "Missing required parameter"),
    ("aws:s3/bucketPolicy:BucketPolicy", lambda i: i.pop("policy"), "Missing required parameter"),
    ("aws:lb/listenerRule:ListenerRule", lambda i: i.update(priority=70000.0), "above the maximum 50000"),
])
def test_broken_requests_are_caught(typ: str, edit: Any, expected: str) -> None:
    run = cached_run("dev", compute="ecs").mutated(lambda r: edit(_first(r, typ).inputs))
    found = _errors(run, typ, _first(run, typ).name)
    assert any(expected in e for e in found), found


def test_broken_container_definition_is_caught() -> None:
    def edit(r: Run) -> None:
        task = _first(r, ECS_TASK)
        containers = json.loads(task.inputs["containerDefinitions"])
        containers[0]["portMappings"][0]["protocol"] = "UDP"
        task.inputs["containerDefinitions"] = json.dumps(containers)

    found = _errors(cached_run("dev", compute="ecs").mutated(edit), ECS_TASK)
    assert any("'UDP' is not one of ['tcp', 'udp']" in e for e in found), found


def test_broken_asg_and_instance_refresh_are_caught() -> None:
    def edit(r: Run) -> None:
        group = _first(r, "aws:autoscaling/group:Group")
        group.inputs["healthCheckType"] = "X" * 40
        group.inputs["instanceRefresh"]["strategy"] = "Replace"

    found = _errors(cached_run("dev", compute="ec2").mutated(edit), "aws:autoscaling/group:Group")
    assert any("CreateAutoScalingGroup" in e and "at most 32" in e for e in found), found
    assert any("StartInstanceRefresh" in e and "'Replace' is not one of" in e for e in found), found


def test_unused_attribute_definition_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(lambda r: _first(r, "aws:dynamodb/table:Table").inputs[
        "attributes"].append({"name": "unused", "type": "S"}))
    assert any("must be exactly the key attributes" in e for e in shapes.documented_rules(run))


def _edit_turn_task(r: Run, change: Any) -> None:
    task = next(t for t in r.of_type(ECS_TASK) if "turn" in t.name)
    containers = json.loads(task.inputs["containerDefinitions"])
    change(containers)
    task.inputs["containerDefinitions"] = json.dumps(containers)


def test_one_container_port_in_two_mappings_is_caught() -> None:
    def change(containers: list[dict]) -> None:
        mapping = containers[0]["portMappings"][0]
        other = "tcp" if mapping.get("protocol", "tcp") == "udp" else "udp"
        containers[0]["portMappings"].append({**mapping, "protocol": other})

    found = aws_rules.ecs_rules(cached_run("dev", compute="ecs").mutated(lambda r: _edit_turn_task(r, change)))
    assert any("ECS maps a container port once" in v for v in found), found
    assert any("matches 2 port mappings" in v for v in found), found


def test_load_balancer_port_without_a_mapping_is_caught() -> None:
    def edit(r: Run) -> None:
        r.one("aws:ecs/service:Service", "ecs-runtime").inputs["loadBalancers"][0]["containerPort"] = 9000

    found = aws_rules.ecs_rules(cached_run("dev", compute="ecs").mutated(edit))
    assert any("containerPort 9000 matches 0 port mappings" in v for v in found), found


@pytest.mark.parametrize(("cpu", "memory", "valid"), [
    ("256", "512", True), ("256", "4096", False), ("1024", "1024", False), ("4096", "30720", True),
    ("8192", "20480", True), ("8192", "18432", False), ("16384", "122880", True), ("384", "1024", False)])
def test_fargate_size_table(cpu: str, memory: str, valid: bool) -> None:
    def edit(r: Run) -> None:
        task = _first(r, ECS_TASK)
        task.inputs["cpu"], task.inputs["memory"] = cpu, memory

    found = [v for v in aws_rules.ecs_rules(cached_run("dev", compute="ecs").mutated(edit)) if "Fargate" in v]
    assert (found == []) is valid, found
