"""Deployment invariants as checks over a recorded program run; each returns the violations it found.

Written as plain functions (not assertions) so the tests can show both sides: no violations in every
real stack, and a violation reported once the recording is mutated to break the invariant. They take
the same camelCase shape as pulumi-policy's ``ResourceValidationArgs.props`` and could be moved into a
CrossGuard pack unchanged.
"""

from __future__ import annotations

import base64
from typing import Any

from iam_lint import takes_only_star
from pulumi_harness import Run, as_list, policy_statements

WORLD = {"0.0.0.0/0", "::/0"}
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def encryption(run: Run) -> list[str]:
    bad = []
    for t in run.of_type("aws:dynamodb/table:Table"):
        if not (t.inputs.get("serverSideEncryption") or {}).get("enabled"):
            bad.append(f"table {t.name} without SSE")
        if not (t.inputs.get("pointInTimeRecovery") or {}).get("enabled"):
            bad.append(f"table {t.name} without point-in-time recovery")
    for q in run.of_type("aws:sqs/queue:Queue"):
        if not (q.inputs.get("sqsManagedSseEnabled") or q.inputs.get("kmsMasterKeyId")):
            bad.append(f"queue {q.name} unencrypted")
    for r in run.of_type("aws:ecr/repository:Repository"):
        if not r.inputs.get("encryptionConfigurations"):
            bad.append(f"ECR repository {r.name} without encryption configuration")
    for lt in run.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        mappings = lt.inputs.get("blockDeviceMappings") or []
        if not mappings:
            bad.append(f"launch template {lt.name} relies on unencrypted default volumes")
        for m in mappings:
            if str((m.get("ebs") or {}).get("encrypted")).lower() != "true":
                bad.append(f"launch template {lt.name} volume {m.get('deviceName')} unencrypted")
    for lst in run.of_type("aws:lb/listener:Listener"):
        if lst.inputs.get("protocol") in {"HTTPS", "TLS"} and not lst.inputs.get("sslPolicy", "").startswith(
                "ELBSecurityPolicy-TLS13"):
            bad.append(f"listener {lst.name} allows pre-TLS1.2 policies")
    return bad


def no_wildcard_iam(run: Run) -> list[str]:
    bad = []
    if run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        bad.append("managed policy attachments are not allowed (they carry wildcard actions)")
    for policy, stmt in policy_statements(run):
        actions = as_list(stmt.get("Action", []))
        if stmt.get("NotAction") or stmt.get("NotResource"):
            bad.append(f"{policy.name}: NotAction/NotResource")
        for action in actions:
            if "*" in action:
                bad.append(f"{policy.name}: wildcard action {action}")
        # Resource "*" only for actions AWS grants on nothing else (no resource-level permissions, per the
        # IAM definition parliament ships).
        if "*" in as_list(stmt.get("Resource", [])) and not all(takes_only_star(a) for a in actions):
            bad.append(f"{policy.name}: Resource * for {actions}")
    return bad


def bedrock_scoped(run: Run) -> list[str]:
    cfg = run.config
    region = cfg.get("nova-concierge:bedrockRegion", "us-east-1")
    model = cfg.get("nova-concierge:novaSonicModelId", "amazon.nova-2-sonic-v1:0")
    expected = [f"arn:aws:bedrock:{region}::foundation-model/{model}"]
    bad, granted = [], False
    for policy, stmt in policy_statements(run):
        actions = [a for a in as_list(stmt.get("Action", [])) if a.startswith("bedrock:")]
        if not actions:
            continue
        granted = granted or "bedrock:InvokeModelWithBidirectionalStream" in actions
        if set(actions) - {"bedrock:InvokeModelWithBidirectionalStream", "bedrock:InvokeModel"}:
            bad.append(f"{policy.name}: extra Bedrock actions {actions}")
        if as_list(stmt.get("Resource")) != expected:
            bad.append(f"{policy.name}: Bedrock on {stmt.get('Resource')}, expected {expected}")
    if not granted:
        bad.append("no role may invoke the Nova Sonic model")
    return bad


def imdsv2(run: Run) -> list[str]:
    return [f"launch template {lt.name} allows IMDSv1"
            for lt in run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
            if (lt.inputs.get("metadataOptions") or {}).get("httpTokens") != "required"]


def one_compute_backend(run: Run) -> list[str]:
    compute = run.config["nova-concierge:compute"]
    ecs = {t: len(run.of_type(t)) for t in ("aws:ecs/cluster:Cluster", "aws:appautoscaling/target:Target")}
    ec2 = {t: len(run.of_type(t)) for t in ("aws:autoscaling/group:Group", "aws:ec2/launchTemplate:LaunchTemplate")}
    want_ecs, want_ec2 = (1, 0) if compute == "ecs" else (0, 1)
    bad = [f"{compute}: {n} x {t}" for t, n in ecs.items() if n != want_ecs]
    bad += [f"{compute}: {n} x {t}" for t, n in ec2.items() if n != want_ec2]
    if compute == "ec2" and run.of_type("aws:ecs/service:Service"):
        bad.append("ec2 stack declares ECS services")
    return bad


def two_azs(run: Run) -> list[str]:
    subnets = run.of_type("aws:ec2/subnet:Subnet")
    public = [s for s in subnets if "public" in s.name]
    private = [s for s in subnets if "private" in s.name]
    bad = []
    for kind, group in (("public", public), ("private", private)):
        zones = {s.inputs.get("availabilityZone") for s in group}
        if len(group) != 2 or len(zones) != 2:
            bad.append(f"{kind} subnets {[s.name for s in group]} span AZs {sorted(map(str, zones))}, need 2")
    return bad


def one_nat(run: Run) -> list[str]:
    nats = run.of_type("aws:ec2/natGateway:NatGateway")
    if len(nats) != 1:
        return [f"{len(nats)} NAT gateways, expected exactly one shared"]
    nat_id = nats[0].id
    bad = []
    for rt in run.of_type("aws:ec2/routeTable:RouteTable"):
        if "private" in rt.name and not any(r.get("natGatewayId") == nat_id for r in rt.inputs.get("routes", [])):
            bad.append(f"private route table {rt.name} does not route through the shared NAT")
    return bad


def _lb_security_groups(run: Run) -> set[str]:
    return {sg for lb in run.of_type("aws:lb/loadBalancer:LoadBalancer") for sg in lb.inputs.get("securityGroups", [])}


def _world_rules(run: Run) -> list[tuple[str, str, Any, Any, str]]:
    """(rule name, protocol, from, to, security group id) of every ingress open to the Internet."""
    rules = []
    for rule in run.of_type(INGRESS):
        if rule.inputs.get("cidrIpv4") in WORLD or rule.inputs.get("cidrIpv6") in WORLD:
            rules.append((rule.name, rule.inputs.get("ipProtocol"), rule.inputs.get("fromPort"),
                          rule.inputs.get("toPort"), rule.inputs["securityGroupId"]))
    for sg in run.of_type(SG):
        for inline in sg.inputs.get("ingress") or []:
            if WORLD & {*inline.get("cidrBlocks", []), *inline.get("ipv6CidrBlocks", [])}:
                rules.append((sg.name, inline.get("protocol"), inline.get("fromPort"), inline.get("toPort"), sg.id))
    return rules


def no_world_open_ranges(run: Run) -> list[str]:
    """Only load-balancer groups face the Internet, one listener port per rule; no UDP range anywhere."""
    lb_groups = _lb_security_groups(run)
    bad = []
    for name, proto, lo, hi, sg in _world_rules(run):
        if sg not in lb_groups:
            bad.append(f"{name}: Internet ingress on non-load-balancer group {sg}")
        if proto in {"-1", "all"} or lo is None or lo != hi:
            bad.append(f"{name}: Internet ingress {proto} {lo}-{hi} is a range, not one listener port")
    # The runtime's media UDP may come only from the TURN relays' group.
    app_sg, turn_sg = run.one(SG, "security-app").id, run.one(SG, "security-turn").id
    for rule in run.of_type(INGRESS):
        if rule.inputs["securityGroupId"] == app_sg and rule.inputs.get("ipProtocol") in {"udp", "-1"} and \
                rule.inputs.get("referencedSecurityGroupId") != turn_sg:
            bad.append(f"{rule.name}: runtime UDP reachable from something other than the TURN relays")
    return bad


def user_data(run: Run) -> str:
    lt = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    return base64.b64decode(lt.inputs["userData"]).decode()


ALL = {
    "encryption": encryption,
    "no_wildcard_iam": no_wildcard_iam,
    "bedrock_scoped": bedrock_scoped,
    "imdsv2": imdsv2,
    "one_compute_backend": one_compute_backend,
    "two_azs": two_azs,
    "one_nat": one_nat,
    "no_world_open_ranges": no_world_open_ranges,
}
