"""Physical names as the provider makes them, checked against each service's naming rules.

Mocks keep the logical name as the physical name, so a group called ``sg-alb`` looked fine; the provider
sends ``sg-alb-1a2b3c4`` and EC2 refuses names starting with ``sg-``. The harness auto-names like the
provider, and :mod:`aws_rules` holds the rules.
"""

from __future__ import annotations

import re

import aws_rules
import pytest
from pulumi_harness import AUTONAMED, PREFIX_SUFFIX_LEN, Run, auto_name, cached_run

SG = "aws:ec2/securityGroup:SecurityGroup"


def test_physical_names_obey_the_aws_rules(deployed: Run) -> None:
    assert aws_rules.naming(deployed) == []


def test_every_auto_named_type_has_a_rule() -> None:
    assert set(AUTONAMED) <= set(aws_rules.NAME_RULES)


def test_auto_names_follow_the_provider() -> None:
    name = auto_name("aws:sqs/queue:Queue", "events-dlq", None)
    assert re.fullmatch(r"events-dlq-[0-9a-f]{7}", name)
    prefixed = auto_name("aws:sqs/queue:Queue", "events-dlq", "concierge-dev-dlq-")
    assert prefixed.startswith("concierge-dev-dlq-")
    assert len(prefixed) == len("concierge-dev-dlq-") + PREFIX_SUFFIX_LEN
    assert auto_name("aws:s3/bucketV2:BucketV2", "Logs", None).startswith("logs-")


def test_the_recording_carries_the_auto_names(deployed: Run) -> None:
    """Unnamed resources get suffixed names in state; explicit names and prefixes are kept."""
    for r in deployed.resources:
        naming = AUTONAMED.get(r.typ)
        if naming is None:
            continue
        prop, prefix_prop = naming
        if r.inputs.get(prop):
            assert r.physical_name == r.inputs[prop]
        elif prefix_prop and r.inputs.get(prefix_prop):
            assert r.physical_name.startswith(r.inputs[prefix_prop])
            assert len(r.physical_name) == len(r.inputs[prefix_prop]) + PREFIX_SUFFIX_LEN
        else:
            assert re.fullmatch(re.escape(r.name) + r"-[0-9a-f]{7}", r.physical_name.lower()), r


@pytest.mark.parametrize(("typ", "name", "why"), [
    (SG, "sg-x", "starts with 'sg-'"),
    (SG, "a" * 256, "256 characters"),
    (SG, "web\tfront", "does not match"),
    ("aws:ecr/repository:Repository", "Concierge-Dev/runtime", "does not match"),
    ("aws:ecr/repository:Repository", "concierge-/runtime", "does not match"),
    ("aws:ecr/repository:Repository", "a", "1 characters"),
    ("aws:lb/loadBalancer:LoadBalancer", "concierge-production-edge-alb-1a2", "33 characters"),
    ("aws:lb/loadBalancer:LoadBalancer", "internal-api", "starts with 'internal-'"),
    ("aws:lb/loadBalancer:LoadBalancer", "api_lb", "does not match"),
    ("aws:lb/targetGroup:TargetGroup", "concierge-dev-", "ends with a hyphen"),
    ("aws:iam/role:Role", "r" * 65, "65 characters"),
    ("aws:iam/role:Role", "task role", "does not match"),
    ("aws:iam/rolePolicy:RolePolicy", "p" * 129, "129 characters"),
    ("aws:lambda/function:Function", "f" * 65, "65 characters"),
    ("aws:lambda/function:Function", "events.publisher", "does not match"),
    ("aws:sqs/queue:Queue", "q" * 81, "81 characters"),
    ("aws:sns/topic:Topic", "t" * 257, "257 characters"),
    ("aws:cloudwatch/logGroup:LogGroup", "/concierge/dev runtime", "does not match"),
    ("aws:cloudwatch/logGroup:LogGroup", "/" + "l" * 512, "513 characters"),
    ("aws:dynamodb/table:Table", "ab", "2 characters"),
    ("aws:s3/bucket:Bucket", "Concierge-Web", "does not match"),
    ("aws:s3/bucket:Bucket", "concierge-prod-web-" + "a" * 45, "64 characters"),
    ("aws:s3/bucket:Bucket", "xn--concierge", "starts with 'xn--'"),
    ("aws:cloudfront/originAccessControl:OriginAccessControl", "o" * 65, "65 characters"),
    ("aws:cloudfront/function:Function", "spa.routes", "does not match"),
    ("aws:cloudfront/function:Function", "f" * 65, "65 characters"),
    ("aws:cognito/userPool:UserPool", "staff/pool", "does not match"),
    ("aws:cognito/userPool:UserPool", "p" * 129, "129 characters"),
    ("aws:cognito/userPoolClient:UserPoolClient", "web#client", "does not match"),
    ("aws:cognito/userGroup:UserGroup", "staff members", "does not match"),
])
def test_broken_names_are_caught(typ: str, name: str, why: str) -> None:
    found = aws_rules.name_violations(typ, name)
    assert any(why in v for v in found), found


def test_security_group_named_sg_is_caught_in_a_run() -> None:
    def edit(r: Run) -> None:
        group = r.of_type(SG)[0]
        group.state["name"] = "sg-x"

    found = aws_rules.naming(cached_run("dev", compute="ecs").mutated(edit))
    assert any("'sg-x': starts with 'sg-'" in v for v in found), found


def test_waf_log_group_without_the_prefix_is_caught() -> None:
    run = cached_run("prod", compute="ecs")
    logging_configs = run.of_type("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    assert logging_configs, "WAF logging is declared (finding 12)"

    def edit(r: Run) -> None:
        cfg = r.of_type("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")[0]
        group = next(g for g in r.of_type("aws:cloudwatch/logGroup:LogGroup")
                     if g.arn in {a.removesuffix(":*") for a in cfg.inputs["logDestinationConfigs"]})
        group.state["name"] = "/concierge/prod/waf"

    found = aws_rules.naming(run.mutated(edit))
    assert any("aws-waf-logs-" in v for v in found), found


def test_an_unclassified_auto_named_type_is_reported() -> None:
    def edit(r: Run) -> None:
        AUTONAMED["aws:test/thing:Thing"] = ("name", None)
        r.resources[0].typ = "aws:test/thing:Thing"

    try:
        found = aws_rules.naming(cached_run("dev", compute="ecs").mutated(edit))
    finally:
        AUTONAMED.pop("aws:test/thing:Thing")
    assert any("has no naming rule" in v for v in found), found
