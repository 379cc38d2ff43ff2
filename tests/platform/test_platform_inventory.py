"""What `pulumi up` creates, per stack and compute flag (DESIGN §6), and what the stack exports."""

from __future__ import annotations

import pytest
from pulumi_harness import Run, cdn_on, cognito_on

COMMON = {
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/subnet:Subnet": 4,
    "aws:ec2/natGateway:NatGateway": 1,
    "aws:ec2/internetGateway:InternetGateway": 1,
    "aws:ec2/securityGroup:SecurityGroup": 4,
    "aws:lb/loadBalancer:LoadBalancer": 2,
    "aws:lb/targetGroup:TargetGroup": 3,
    "aws:wafv2/webAcl:WebAcl": 1,  # on the ALB, or with the CDN on CloudFront
    "aws:dynamodb/table:Table": 3,
    "aws:appsync/api:Api": 1,
    "aws:appsync/channelNamespace:ChannelNamespace": 2,
    "aws:lambda/function:Function": 2,
    "aws:lambda/eventSourceMapping:EventSourceMapping": 3,
    "aws:sqs/queue:Queue": 1,
    "aws:ecr/repository:Repository": 2,  # runtime + coturn mirror
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": 2,
    "docker-build:index:Image": 2,
    "aws:cloudwatch/dashboard:Dashboard": 1,
}
# The ALB serves the site (cdn false) / CloudFront does and the ALB is its locked origin (cdn true).
EDGE = {
    False: {"aws:lb/listener:Listener": 5,  # HTTP, HTTPS, TURN UDP 3478, TURN TCP 3479, TURNS 443
            "aws:lb/listenerRule:ListenerRule": 0,
            "aws:acm/certificate:Certificate": 2,
            "aws:acm/certificateValidation:CertificateValidation": 2,
            "aws:route53/record:Record": 4,  # 2 validation CNAMEs + app and TURN aliases
            "aws:wafv2/webAclAssociation:WebAclAssociation": 1,
            "aws:cloudfront/distribution:Distribution": 0, "aws:s3/bucket:Bucket": 1,
            "aws:s3/bucketObjectv2:BucketObjectv2": 0, "pulumi:providers:aws": 0},
    True: {"aws:lb/listener:Listener": 4,  # no HTTP listener: CloudFront talks HTTPS only
           "aws:lb/listenerRule:ListenerRule": 1,  # forward only with the origin header
           "aws:acm/certificate:Certificate": 3,  # origin.<domain> (regional), TURN, the site in us-east-1
           "aws:acm/certificateValidation:CertificateValidation": 3,
           "aws:route53/record:Record": 7,  # 3 validation CNAMEs, origin and TURN aliases, site A + AAAA
           "aws:wafv2/webAclAssociation:WebAclAssociation": 0,  # a distribution names its ACL itself
           "aws:cloudfront/distribution:Distribution": 1,
           "aws:cloudfront/originAccessControl:OriginAccessControl": 1,
           "aws:cloudfront/function:Function": 1,
           "aws:s3/bucket:Bucket": 2,  # logs + web
           "aws:s3/bucketPolicy:BucketPolicy": 2,
           "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 2,
           "aws:s3/bucketObjectv2:BucketObjectv2": 7,  # every file of the fixture build
           "pulumi:providers:aws": 1},  # us-east-1
}
STAFF = {
    False: {"aws:secretsmanager/secret:Secret": 3, "aws:cognito/userPool:UserPool": 0},
    True: {"aws:secretsmanager/secret:Secret": 2,  # no staff token
           "aws:cognito/userPool:UserPool": 1, "aws:cognito/userPoolClient:UserPoolClient": 1,
           "aws:cognito/userGroup:UserGroup": 1},
}
BACKEND = {
    "ecs": {"aws:ecs/cluster:Cluster": 1, "aws:ecs/service:Service": 2, "aws:ecs/taskDefinition:TaskDefinition": 2,
            "aws:appautoscaling/target:Target": 1, "aws:appautoscaling/policy:Policy": 1,
            "aws:autoscaling/group:Group": 0, "aws:ec2/launchTemplate:LaunchTemplate": 0},
    "ec2": {"aws:autoscaling/group:Group": 1, "aws:ec2/launchTemplate:LaunchTemplate": 1,
            "aws:autoscaling/policy:Policy": 1, "aws:iam/instanceProfile:InstanceProfile": 1,
            "aws:ecs/cluster:Cluster": 0, "aws:ecs/service:Service": 0, "aws:appautoscaling/target:Target": 0},
}


def test_resource_inventory(layout: Run) -> None:
    expected = {**COMMON, **BACKEND[layout.config["nova-concierge:compute"]], **EDGE[cdn_on(layout)],
                **STAFF[cognito_on(layout)]}
    counts = {typ: len(layout.of_type(typ)) for typ in expected}
    assert counts == expected


def test_one_component_per_concern(layout: Run) -> None:
    components = sorted(r.typ.split(":")[-1] for r in layout.resources if r.typ.startswith("concierge:"))
    backend = "EcsCompute" if layout.config["nova-concierge:compute"] == "ecs" else "Ec2Compute"
    optional = [*(["Cdn"] if cdn_on(layout) else []), *(["StaffPool"] if cognito_on(layout) else [])]
    assert components == sorted(["AppSecrets", "Data", "Edge", "Events", "Images", "LogArchive", "Network",
                                 "Observability", "SecurityGroups", backend, *optional])


def test_stack_outputs(layout: Run) -> None:
    out = layout.outputs
    domain = layout.config["nova-concierge:domainName"]
    assert out["url"] == f"https://{domain}"
    assert out["compute"] == layout.config["nova-concierge:compute"]
    assert out["eventsHttpEndpoint"] == "https://mockprefix.appsync-api.us-east-1.amazonaws.com/event"
    assert out["eventsRealtimeEndpoint"] == "wss://mockprefix.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
    assert out["turnUrls"] == [f"turn:turn.{domain}:3478?transport=udp", f"turn:turn.{domain}:3479?transport=tcp",
                               f"turns:turn.{domain}:443?transport=tcp"]
    assert out["imageRef"].endswith("@sha256:" + "ab" * 32)
    if cdn_on(layout):
        dist = layout.one("aws:cloudfront/distribution:Distribution")
        assert (out["cdn"], out["originUrl"]) == ("true", f"https://origin.{domain}")
        assert (out["distributionId"], out["distributionDomainName"]) == (dist.id, dist.state["domainName"])
        assert out["webBucket"] == layout.one("aws:s3/bucket:Bucket", "cdn-web").state["bucket"]
    else:
        assert out["cdn"] == "false"
        assert "distributionId" not in out
    if cognito_on(layout):
        assert out["staffAuth"] == "cognito"
        assert out["staffUserPoolId"] == layout.one("aws:cognito/userPool:UserPool").id
        assert out["staffUserPoolClientId"] == layout.one("aws:cognito/userPoolClient:UserPoolClient").id
    else:
        assert out["staffAuth"] == "token"
        assert "staffUserPoolId" not in out


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
