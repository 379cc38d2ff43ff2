"""What `pulumi up` creates, per stack and compute flag (DESIGN §6), and what the stack exports."""

from __future__ import annotations

import pytest
from pulumi_harness import Run

COMMON = {
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/subnet:Subnet": 4,
    "aws:ec2/natGateway:NatGateway": 1,
    "aws:ec2/internetGateway:InternetGateway": 1,
    "aws:ec2/securityGroup:SecurityGroup": 4,
    "aws:lb/loadBalancer:LoadBalancer": 2,
    "aws:lb/listener:Listener": 5,  # HTTP, HTTPS, TURN UDP 3478, TURN TCP 3479, TURNS 443
    "aws:lb/targetGroup:TargetGroup": 3,
    "aws:acm/certificate:Certificate": 2,
    "aws:acm/certificateValidation:CertificateValidation": 2,
    "aws:route53/record:Record": 4,  # 2 validation CNAMEs + app and TURN aliases
    "aws:wafv2/webAcl:WebAcl": 1,
    "aws:wafv2/webAclAssociation:WebAclAssociation": 1,
    "aws:dynamodb/table:Table": 3,
    "aws:appsync/api:Api": 1,
    "aws:appsync/channelNamespace:ChannelNamespace": 2,
    "aws:lambda/function:Function": 2,
    "aws:lambda/eventSourceMapping:EventSourceMapping": 3,
    "aws:sqs/queue:Queue": 1,
    "aws:secretsmanager/secret:Secret": 3,
    "aws:ecr/repository:Repository": 2,  # runtime + coturn mirror
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": 2,
    "docker-build:index:Image": 2,
    "aws:cloudwatch/dashboard:Dashboard": 1,
}
BACKEND = {
    "ecs": {"aws:ecs/cluster:Cluster": 1, "aws:ecs/service:Service": 2, "aws:ecs/taskDefinition:TaskDefinition": 2,
            "aws:appautoscaling/target:Target": 1, "aws:appautoscaling/policy:Policy": 1,
            "aws:autoscaling/group:Group": 0, "aws:ec2/launchTemplate:LaunchTemplate": 0},
    "ec2": {"aws:autoscaling/group:Group": 1, "aws:ec2/launchTemplate:LaunchTemplate": 1,
            "aws:autoscaling/policy:Policy": 1, "aws:iam/instanceProfile:InstanceProfile": 1,
            "aws:ecs/cluster:Cluster": 0, "aws:ecs/service:Service": 0, "aws:appautoscaling/target:Target": 0},
}


def test_resource_inventory(deployed: Run) -> None:
    expected = {**COMMON, **BACKEND[deployed.config["nova-concierge:compute"]]}
    counts = {typ: len(deployed.of_type(typ)) for typ in expected}
    assert counts == expected


def test_one_component_per_concern(deployed: Run) -> None:
    components = sorted(r.typ.split(":")[-1] for r in deployed.resources if r.typ.startswith("concierge:"))
    backend = "EcsCompute" if deployed.config["nova-concierge:compute"] == "ecs" else "Ec2Compute"
    assert components == sorted(["AppSecrets", "Data", "Edge", "Events", "Images", "LogArchive", "Network",
                                 "Observability", "SecurityGroups", backend])


def test_stack_outputs(deployed: Run) -> None:
    out = deployed.outputs
    domain = deployed.config["nova-concierge:domainName"]
    assert out["url"] == f"https://{domain}"
    assert out["compute"] == deployed.config["nova-concierge:compute"]
    assert out["eventsHttpEndpoint"] == "https://mockprefix.appsync-api.us-east-1.amazonaws.com/event"
    assert out["eventsRealtimeEndpoint"] == "wss://mockprefix.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
    assert out["turnUrls"] == [f"turn:turn.{domain}:3478?transport=udp", f"turn:turn.{domain}:3479?transport=tcp",
                               f"turns:turn.{domain}:443?transport=tcp"]
    assert out["imageRef"].endswith("@sha256:" + "ab" * 32)


def test_alarms_and_log_retention(deployed: Run) -> None:
    alarms = {a.inputs["name"].removeprefix(f"concierge-{deployed.stack}-")
              for a in deployed.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert alarms == {"lambda-errors-0", "lambda-errors-1", "alb-5xx", "target-latency", "unhealthy-targets",
                      "turn-unhealthy-udp", "turn-unhealthy-tcp", "publisher-dlq", "stream-iterator-age"}
    retention = int(deployed.config["nova-concierge:logRetentionDays"])
    groups = deployed.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(groups) == 5  # runtime, coturn, two Lambdas, WAF
    assert {g.inputs["retentionInDays"] for g in groups} == {retention}


@pytest.mark.parametrize(("stack", "compute", "capacity"), [("dev", "ec2", (1, 2, 1)), ("prod", "ecs", (2, 10, 2))])
def test_stack_files_drive_sizes(stack: str, compute: str, capacity: tuple[int, int, int]) -> None:
    from pulumi_harness import cached_run

    run = cached_run(stack, compute=compute)
    if compute == "ecs":
        target = run.one("aws:appautoscaling/target:Target")
        service = run.one("aws:ecs/service:Service", "ecs-runtime")
        got = (target.inputs["minCapacity"], target.inputs["maxCapacity"], service.inputs["desiredCount"])
    else:
        group = run.one("aws:autoscaling/group:Group")
        got = (group.inputs["minSize"], group.inputs["maxSize"], group.inputs["desiredCapacity"])
    assert got == capacity


def _snake_keys(value: object, path: str, found: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "_" in key and not key.isupper():
                found.append(f"{path}.{key}")
            _snake_keys(item, f"{path}.{key}", found)
    elif isinstance(value, list):
        for item in value:
            _snake_keys(item, path, found)


def test_nested_argument_keys_are_all_known(deployed: Run) -> None:
    """The SDK camelCases the keys it knows and passes unknown ones through untouched; mocks do not
    validate against the provider schema, so a snake_case key left in the inputs is a typo that would
    only fail (or be silently ignored) at deploy time."""
    found: list[str] = []
    for r in deployed.resources:
        _snake_keys(r.inputs, f"{r.typ}:{r.name}", found)
    assert found == []
