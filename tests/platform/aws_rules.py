"""What AWS refuses and the mocks accept: physical-name rules, ECS task/service rules, creation order.

Each check returns the violations it found (empty list = fine), so tests can show both sides: no
violation in the real stacks, and a violation once a recording is mutated to break the rule.

The naming rules are hand-written from the API references below because botocore's models carry only
some of them (e.g. no "sg-" or "internal-" prefix rule, no pattern for load balancer names); where a
model has a pattern, aws_api_shapes.py checks it too when it validates the create call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pulumi_harness import AUTONAMED, CLOUDFRONT_PREFIX_LIST_ID, CLOUDFRONT_PREFIX_LIST_WEIGHT, Recorded, Run, as_list


@dataclass(frozen=True)
class NameRule:
    max_len: int
    pattern: str  # full match
    source: str  # the API reference that states it
    min_len: int = 1
    forbidden_prefixes: tuple[str, ...] = ()
    no_edge_hyphen: bool = False


_ELB_NAME = r"[A-Za-z0-9-]+"
NAME_RULES: dict[str, NameRule] = {
    "aws:ec2/securityGroup:SecurityGroup": NameRule(
        255, r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+", forbidden_prefixes=("sg-",),
        source="https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html"),
    "aws:ec2/launchTemplate:LaunchTemplate": NameRule(
        128, r"[a-zA-Z0-9().\-/_]+", min_len=3,
        source="https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html"),
    "aws:ecr/repository:Repository": NameRule(
        256, r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", min_len=2,
        source="https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html"),
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": NameRule(
        30, r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", min_len=2,
        source="https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreatePullThroughCacheRule.html"),
    "aws:lb/loadBalancer:LoadBalancer": NameRule(
        32, _ELB_NAME, forbidden_prefixes=("internal-",), no_edge_hyphen=True,
        source="https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html"),
    "aws:lb/targetGroup:TargetGroup": NameRule(
        32, _ELB_NAME, no_edge_hyphen=True,
        source="https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html"),
    "aws:iam/role:Role": NameRule(
        64, r"[\w+=,.@-]+", source="https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html"),
    "aws:iam/rolePolicy:RolePolicy": NameRule(
        128, r"[\w+=,.@-]+", source="https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html"),
    "aws:iam/policy:Policy": NameRule(
        128, r"[\w+=,.@-]+", source="https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreatePolicy.html"),
    "aws:iam/instanceProfile:InstanceProfile": NameRule(
        128, r"[\w+=,.@-]+",
        source="https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateInstanceProfile.html"),
    "aws:lambda/function:Function": NameRule(
        64, r"[a-zA-Z0-9_-]+", source="https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html"),
    "aws:sqs/queue:Queue": NameRule(
        80, r"[a-zA-Z0-9_-]+(?:\.fifo)?",
        source="https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html"),
    "aws:sns/topic:Topic": NameRule(
        256, r"[a-zA-Z0-9_-]+(?:\.fifo)?", source="https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html"),
    "aws:cloudwatch/logGroup:LogGroup": NameRule(
        512, r"[.\-_/#A-Za-z0-9]+",
        source="https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": NameRule(
        255, r"[^\x00-\x1f]+",
        source="https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html"),
    "aws:ecs/cluster:Cluster": NameRule(
        255, r"[a-zA-Z0-9_-]+", source="https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateCluster.html"),
    "aws:ecs/service:Service": NameRule(
        255, r"[a-zA-Z0-9_-]+", source="https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateService.html"),
    "aws:dynamodb/table:Table": NameRule(
        255, r"[a-zA-Z0-9_.-]+", min_len=3,
        source="https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html"),
    "aws:secretsmanager/secret:Secret": NameRule(
        512, r"[a-zA-Z0-9/_+=.@-]+",
        source="https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html"),
    "aws:autoscaling/group:Group": NameRule(
        255, r"[^\x00-\x1f]+",
        source="https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CreateAutoScalingGroup.html"),
    "aws:autoscaling/policy:Policy": NameRule(
        255, r"[^\x00-\x1f]+",
        source="https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutScalingPolicy.html"),
    "aws:autoscaling/lifecycleHook:LifecycleHook": NameRule(
        255, r"[A-Za-z0-9\-_/]+",
        source="https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html"),
    "aws:appautoscaling/policy:Policy": NameRule(
        256, r"[^\x00-\x1f]+",
        source="https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html"),
    "aws:wafv2/webAcl:WebAcl": NameRule(
        128, r"[\w-]+", source="https://docs.aws.amazon.com/waf/latest/APIReference/API_CreateWebACL.html"),
    "aws:appsync/api:Api": NameRule(
        50, r"[A-Za-z0-9_\- ]+", source="https://docs.aws.amazon.com/appsync/latest/APIReference/API_CreateApi.html"),
    "aws:appsync/channelNamespace:ChannelNamespace": NameRule(
        50, r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?",
        source="https://docs.aws.amazon.com/appsync/latest/APIReference/API_CreateChannelNamespace.html"),
    "aws:s3/bucket:Bucket": NameRule(
        63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]", min_len=3, forbidden_prefixes=("xn--", "sthree-"),
        source="https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"),
    "aws:kms/alias:Alias": NameRule(
        256, r"alias/[a-zA-Z0-9/_-]+", forbidden_prefixes=("alias/aws/",),
        source="https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html"),
    "aws:cloudfront/originAccessControl:OriginAccessControl": NameRule(
        64, r"[^\x00-\x1f]+",
        source="https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_OriginAccessControlConfig.html"),
    "aws:cloudfront/function:Function": NameRule(
        64, r"[a-zA-Z0-9\-_]+", source="https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CreateFunction.html"),
    "aws:cognito/userPool:UserPool": NameRule(
        128, r"[\w\s+=,.@-]+",
        source="https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateUserPool.html"),
    "aws:cognito/userPoolClient:UserPoolClient": NameRule(
        128, r"[\w\s+=,.@-]+",
        source="https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateUserPoolClient.html"),
    # [\p{L}\p{M}\p{S}\p{N}\p{P}]+: letters, marks, symbols, numbers, punctuation - no white space or controls.
    "aws:cognito/userGroup:UserGroup": NameRule(
        128, r"[^\s\x00-\x1f]+",
        source="https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateGroup.html"),
}
NAME_RULES["aws:s3/bucketV2:BucketV2"] = NAME_RULES["aws:s3/bucket:Bucket"]
WAF_LOG_GROUP_PREFIX = "aws-waf-logs-"  # https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html


def name_violations(typ: str, name: str) -> list[str]:
    """Why AWS would refuse ``name`` for a resource of type ``typ`` (empty: it would accept it)."""
    rule = NAME_RULES[typ]
    bad = []
    if not rule.min_len <= len(name) <= rule.max_len:
        bad.append(f"{len(name)} characters, allowed {rule.min_len}..{rule.max_len}")
    if not re.fullmatch(rule.pattern, name):
        bad.append(f"does not match {rule.pattern}")
    bad += [f"starts with {p!r}" for p in rule.forbidden_prefixes if name.lower().startswith(p)]
    if rule.no_edge_hyphen and (name.startswith("-") or name.endswith("-")):
        bad.append("begins or ends with a hyphen")
    return [f"{typ.split(':')[-1]} name {name!r}: {b} ({rule.source})" for b in bad]


def naming(run: Run) -> list[str]:
    """Every physical name (explicit, prefixed or auto-named by the harness) obeys its service's rules."""
    bad = []
    for r in run.resources:
        if r.typ not in AUTONAMED:
            continue
        if r.typ not in NAME_RULES:
            bad.append(f"{r.typ} is auto-named but has no naming rule in aws_rules.NAME_RULES")
            continue
        bad += [f"{r.name}: {v}" for v in name_violations(r.typ, str(r.physical_name))]
    waf_log_arns = {arn.removesuffix(":*") for cfg in run.of_type(
        "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
        for arn in as_list(cfg.inputs.get("logDestinationConfigs", []))}
    for group in run.of_type("aws:cloudwatch/logGroup:LogGroup"):
        if group.arn in waf_log_arns and not str(group.physical_name).startswith(WAF_LOG_GROUP_PREFIX):
            bad.append(f"{group.name}: WAF logs to {group.physical_name!r}, AWS requires the prefix "
                       f"{WAF_LOG_GROUP_PREFIX!r} (https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html)")
    return bad


# --- ECS rules the API references state but botocore's model cannot express ---------------------

# Fargate task sizes (CPU units -> allowed memory in MiB), from the ECS developer guide, written out
# independently of the platform's own table so a wrong entry there is caught here:
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
FARGATE_SIZES: dict[int, set[int]] = {
    256: {512, 1024, 2048},
    512: {1024 * g for g in range(1, 5)},
    1024: {1024 * g for g in range(2, 9)},
    2048: {1024 * g for g in range(4, 17)},
    4096: {1024 * g for g in range(8, 31)},
    8192: {1024 * g for g in range(16, 61, 4)},
    16384: {1024 * g for g in range(32, 121, 8)},
}


def _containers(task: Recorded) -> list[dict]:
    return json.loads(task.inputs["containerDefinitions"])


def ecs_rules(run: Run) -> list[str]:
    """Port mappings, load balancer bindings and Fargate sizes that RegisterTaskDefinition/CreateService refuse.

    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_PortMapping.html (a container port is
    mapped once; with awsvpc the host port equals the container port),
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_LoadBalancer.html (containerName and
    containerPort name a port mapping of the service's task definition).
    """
    bad = []
    tasks = {t.arn: t for t in run.of_type("aws:ecs/taskDefinition:TaskDefinition")}
    for task in tasks.values():
        if "FARGATE" in task.inputs.get("requiresCompatibilities", []):
            cpu, memory = int(task.inputs["cpu"]), int(task.inputs["memory"])
            if memory not in FARGATE_SIZES.get(cpu, set()):
                bad.append(f"{task.name}: Fargate has no {cpu} CPU / {memory} MiB size")
        for c in _containers(task):
            ports = [m.get("containerPort") for m in c.get("portMappings", [])]
            for port in sorted({p for p in ports if ports.count(p) > 1}):
                protocols = [m.get("protocol", "tcp") for m in c["portMappings"] if m.get("containerPort") == port]
                bad.append(f"{task.name}/{c['name']}: container port {port} is in {ports.count(port)} port mappings "
                           f"({', '.join(protocols)}); ECS maps a container port once")
            if task.inputs.get("networkMode") == "awsvpc":
                for m in c.get("portMappings", []):
                    if m.get("hostPort") not in (None, m.get("containerPort")):
                        bad.append(f"{task.name}/{c['name']}: awsvpc host port {m['hostPort']} != container port")
    for svc in run.of_type("aws:ecs/service:Service"):
        task = tasks.get(svc.inputs.get("taskDefinition"))
        if task is None:
            bad.append(f"{svc.name}: task definition {svc.inputs.get('taskDefinition')} is not in the stack")
            continue
        containers = {c["name"]: c for c in _containers(task)}
        for lb in svc.inputs.get("loadBalancers", []):
            c = containers.get(lb["containerName"])
            if c is None:
                bad.append(f"{svc.name}: load balancer container {lb['containerName']} is not in {task.name}")
                continue
            matches = [m for m in c.get("portMappings", []) if m.get("containerPort") == lb["containerPort"]]
            if len(matches) != 1:
                bad.append(f"{svc.name}: load balancer containerPort {int(lb['containerPort'])} matches {len(matches)} "
                           f"port mappings of {lb['containerName']}, needs exactly one")
    return bad


# --- creation order -----------------------------------------------------------------------------

LISTENER = "aws:lb/listener:Listener"


def _forwarded_target_groups(listener: Recorded) -> set[str]:
    arns = set()
    for action in listener.inputs.get("defaultActions", []):
        if action.get("targetGroupArn"):
            arns.add(action["targetGroupArn"])
        for tg in (action.get("forward") or {}).get("targetGroups", []):
            arns.add(tg["arn"])
    return arns


def _listeners_of(run: Run, target_group_arn: str) -> list[Recorded]:
    listeners = [lst for lst in run.of_type(LISTENER) if target_group_arn in _forwarded_target_groups(lst)]
    rules = run.of_type("aws:lb/listenerRule:ListenerRule")
    return listeners + [r for r in rules if any(
        a.get("targetGroupArn") == target_group_arn for a in r.inputs.get("actions", []))]


def creation_order(run: Run) -> list[str]:
    """What a first ``pulumi up`` creates too early, from the dependency URNs each registration waited for.

    - CreateService / an ASG's target group attachment fail unless the target group already has a listener
      ("The target group ... does not have an associated load balancer"):
      https://docs.aws.amazon.com/AmazonECS/latest/developerguide/alb.html
    - a TLS listener needs an issued certificate (UnsupportedCertificate until ACM validation finished);
    - an event source mapping is validated against the function role's permissions when it is created
      (InvalidParameterValueException "...role does not have permissions to call GetRecords...").
    """
    bad = []
    attachments: list[tuple[Recorded, list[str]]] = [
        (svc, [lb["targetGroupArn"] for lb in svc.inputs.get("loadBalancers", [])])
        for svc in run.of_type("aws:ecs/service:Service")]
    attachments += [(g, list(g.inputs.get("targetGroupArns", []))) for g in run.of_type("aws:autoscaling/group:Group")]
    for consumer, tg_arns in attachments:
        before = run.created_after(consumer)
        for arn in tg_arns:
            tg = run.by_arn(arn)
            listeners = _listeners_of(run, arn)
            if not listeners:
                bad.append(f"{consumer.name}: target group {tg.name} has no listener")
            for lst in listeners:
                if lst.urn not in before:
                    bad.append(f"{consumer.name} is not created after listener {lst.name} of its target group "
                               f"{tg.name}: a first up races CreateListener")
    validations = run.of_type("aws:acm/certificateValidation:CertificateValidation")
    for lst in run.of_type(LISTENER):
        cert = lst.inputs.get("certificateArn")
        if not cert:
            continue
        before = run.created_after(lst)
        waited = [v for v in validations if v.inputs.get("certificateArn") == cert and v.urn in before]
        if not waited:
            bad.append(f"{lst.name}: TLS listener is not created after the validation of certificate {cert}")
    # CreateDistribution refuses a certificate ACM has not issued yet (InvalidViewerCertificate).
    for dist in run.of_type("aws:cloudfront/distribution:Distribution"):
        cert = (dist.inputs.get("viewerCertificate") or {}).get("acmCertificateArn")
        before = run.created_after(dist)
        if cert and not [v for v in validations if v.inputs.get("certificateArn") == cert and v.urn in before]:
            bad.append(f"{dist.name}: distribution is not created after the validation of certificate {cert}")
    for esm in run.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
        fn = [f for f in run.of_type("aws:lambda/function:Function")
              if esm.inputs["functionName"] in (f.arn, f.physical_name)]
        if len(fn) != 1:
            bad.append(f"{esm.name}: function {esm.inputs['functionName']} is not in the stack")
            continue
        role = run.by_arn(fn[0].inputs["role"])
        before = run.created_after(esm)
        for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
            if policy.inputs.get("role") in (role.id, role.physical_name) and policy.urn not in before:
                bad.append(f"{esm.name}: not created after {policy.name}, the policy of its function's role")
    return bad


# --- security group rule quota ----------------------------------------------------------------------------

# Inbound (and, separately, outbound) rules per security group, the default quota; a referenced prefix list counts
# as its maximum number of entries, not as one rule:
# https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html#vpc-limits-security-groups
SG_RULES_PER_DIRECTION = 60
PREFIX_LIST_WEIGHTS = {CLOUDFRONT_PREFIX_LIST_ID: CLOUDFRONT_PREFIX_LIST_WEIGHT}


def security_group_quota(run: Run) -> list[str]:
    """AuthorizeSecurityGroupIngress fails with RulesPerSecurityGroupLimitExceeded past the quota."""
    bad = []
    for direction in ("Ingress", "Egress"):
        weights: dict[str, int] = {}
        for rule in run.of_type(f"aws:vpc/securityGroup{direction}Rule:SecurityGroup{direction}Rule"):
            pl = rule.inputs.get("prefixListId")
            weight = PREFIX_LIST_WEIGHTS.get(pl, 0) if pl else 1
            if pl and pl not in PREFIX_LIST_WEIGHTS:
                bad.append(f"{rule.name}: prefix list {pl} of unknown weight")
            weights[rule.inputs["securityGroupId"]] = weights.get(rule.inputs["securityGroupId"], 0) + weight
        bad += [f"{run.by_id(sg).name}: {w} {direction.lower()} rules (prefix lists by weight), quota "
                f"{SG_RULES_PER_DIRECTION}" for sg, w in weights.items() if w > SG_RULES_PER_DIRECTION]
    return bad


# --- CloudFront's us-east-1 resources -----------------------------------------------------------------------

def cloudfront_regions(run: Run) -> list[str]:
    """What CloudFront uses must be created in us-east-1, whatever the stack's region.

    - the viewer certificate: https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cnames-and-https-requirements.html
    - a CLOUDFRONT-scope web ACL (and its logging configuration and log group):
      https://docs.aws.amazon.com/waf/latest/developerguide/how-aws-waf-works-resources.html,
      https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html
    """
    bad = []
    certs = {c.arn: c for c in run.of_type("aws:acm/certificate:Certificate")}
    for dist in run.of_type("aws:cloudfront/distribution:Distribution"):
        arn = (dist.inputs.get("viewerCertificate") or {}).get("acmCertificateArn", "")
        cert = certs.get(arn)
        if cert is None:
            bad.append(f"{dist.name}: viewer certificate {arn} is not an ACM certificate of the stack")
            continue
        if run.region_of(cert) != "us-east-1" or ":acm:us-east-1:" not in arn:
            bad.append(f"{dist.name}: viewer certificate {cert.name} is in {run.region_of(cert)}, not us-east-1")
        for validation in run.of_type("aws:acm/certificateValidation:CertificateValidation"):
            if validation.inputs.get("certificateArn") == cert.arn and run.region_of(validation) != "us-east-1":
                bad.append(f"{validation.name}: validates a us-east-1 certificate from {run.region_of(validation)}")
        acl_arn = dist.inputs.get("webAclId")
        acls = [a for a in run.of_type("aws:wafv2/webAcl:WebAcl") if a.arn == acl_arn]
        if len(acls) != 1:
            bad.append(f"{dist.name}: web ACL {acl_arn} is not a WAFv2 web ACL ARN of the stack")
            continue
        acl = acls[0]
        if acl.inputs.get("scope") != "CLOUDFRONT":
            bad.append(f"{acl.name}: a distribution's web ACL must have scope CLOUDFRONT, "
                       f"not {acl.inputs.get('scope')}")
        if run.region_of(acl) != "us-east-1":
            bad.append(f"{acl.name}: CLOUDFRONT web ACL created in {run.region_of(acl)}, not us-east-1")
    for acl in run.of_type("aws:wafv2/webAcl:WebAcl"):
        if acl.inputs.get("scope") != "CLOUDFRONT":
            continue
        for cfg in run.of_type("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"):
            if cfg.inputs.get("resourceArn") == acl.arn and run.region_of(cfg) != "us-east-1":
                bad.append(f"{cfg.name}: logging of a CLOUDFRONT web ACL configured in {run.region_of(cfg)}")
            for group in run.of_type("aws:cloudwatch/logGroup:LogGroup"):
                if cfg.inputs.get("resourceArn") == acl.arn and group.arn in {
                        a.removesuffix(":*") for a in as_list(cfg.inputs.get("logDestinationConfigs", []))} and \
                        run.region_of(group) != "us-east-1":
                    bad.append(f"{group.name}: a CLOUDFRONT web ACL logs only to us-east-1 log groups")
    return bad


ALL = {"naming": naming, "ecs_rules": ecs_rules, "creation_order": creation_order,
       "security_group_quota": security_group_quota, "cloudfront_regions": cloudfront_regions}
