"""Run the real Pulumi program (platform/__main__.py) under recording mocks and return what it declared.

Why this shape: a fresh event loop and root Stack per run (pytest-asyncio shares the process), a monitor
that rejects duplicate URNs like the real engine, config loaded from the stack's own Pulumi.<stack>.yaml
(mocks do not read it), preview off (applies would be skipped), and a hard failure when nothing was
recorded (a program run without mocks "passes" vacuously).

Plain Pulumi mocks echo inputs back, so they hide what the provider and AWS add. This harness also does
what they do (docs/platform-testing.md): it auto-names resources like pulumi-aws (logical name + "-" + 7
hex characters, or ``namePrefix`` + 26 characters), gives every resource an ARN in its service's real
format, and records each registration's dependency URNs (explicit ``depends_on`` and the resources behind
Output inputs) from the monitor's RegisterResourceRequest: the engine creates a resource only after
every one of those, so their transitive closure is the creation order of a first ``pulumi up``.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import hashlib
import json
import runpy
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_DIR = ROOT / "platform"
if str(PLATFORM_DIR) not in sys.path:  # what Pulumi does for `main: platform/`
    sys.path.insert(0, str(PLATFORM_DIR))

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
ACCOUNT = "123456789012"
REGION = "us-east-1"
HOSTED_ZONE_ID = "Z0123456789EXAMPLE"
AMI_ID = "ami-0123456789abcdef0"
TEST_SECRETS = {"turnSecret": "turn-secret-for-tests", "staffToken": "staff-token-for-tests",
                "sessionSecret": "session-secret-for-tests", "originSecret": "0f" * 32}
# A built web app as `npm run build` leaves it (hashed assets, unhashed public files): the CDN uploads it.
WEB_DIST_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "webapp-dist"


@dataclass(repr=False)
class Recorded:
    """One registered resource: what the program passed (camelCase wire inputs) and the mock's state."""

    typ: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    id: str
    parent: str = ""
    urn: str = ""
    # URNs this registration waited for (RegisterResourceRequest.dependencies: depends_on + Output inputs).
    dependencies: set[str] = field(default_factory=set)
    protect: bool = False
    delete_before_replace: bool = False
    provider: str = ""  # the explicit provider reference ("<urn>::<id>"), empty for the default provider
    secret_inputs: set[str] = field(default_factory=set)  # top-level inputs that arrived marked secret

    @property
    def arn(self) -> str:
        return str(self.state.get("arn"))

    def __repr__(self) -> str:  # pytest prints reprs in every failing frame: keep them short and fast
        return f"Recorded({self.typ} {self.name})"

    @property
    def physical_name(self) -> str | None:
        """The name AWS sees (explicit, prefixed or auto-named), or None for types without a name input."""
        prop = AUTONAMED.get(self.typ)
        return None if prop is None else self.state.get(prop[0])


@dataclass(repr=False)
class Run:
    stack: str
    config: dict[str, str]
    resources: list[Recorded]
    calls: list[MockCallArgs]
    outputs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Run({self.stack} {self.config.get(f'{PROJECT}:compute')}, {len(self.resources)} resources)"

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Recorded:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def by_arn(self, arn: str) -> Recorded:
        found = [r for r in self.resources if r.state.get("arn") == arn]
        assert len(found) == 1, f"no single resource with arn {arn}"
        return found[0]

    def by_id(self, rid: str) -> Recorded:
        found = [r for r in self.resources if r.id == rid]
        assert len(found) == 1, f"no single resource with id {rid}"
        return found[0]

    def by_urn(self, urn: str) -> Recorded:
        found = [r for r in self.resources if r.urn == urn]
        assert len(found) == 1, f"no single resource with urn {urn}"
        return found[0]

    def created_after(self, resource: Recorded) -> set[str]:
        """URNs the engine must have created before ``resource``: the transitive closure of its dependencies."""
        by_urn = {r.urn: r for r in self.resources}
        seen: set[str] = set()
        todo = list(resource.dependencies)
        while todo:
            urn = todo.pop()
            if urn in seen:
                continue
            seen.add(urn)
            if urn in by_urn:
                todo.extend(by_urn[urn].dependencies)
        return seen

    def provider_of(self, resource: Recorded) -> Recorded | None:
        """The explicit provider resource ``resource`` was registered with (None: the stack's default provider)."""
        if not resource.provider:
            return None
        return self.by_urn(resource.provider.rsplit("::", 1)[0])

    def region_of(self, resource: Recorded) -> str:
        """The region AWS creates ``resource`` in: its explicit provider's, else the stack's."""
        provider = self.provider_of(resource)
        if provider is not None and provider.inputs.get("region"):
            return str(provider.inputs["region"])
        return self.config.get("aws:region", REGION)

    def mutated(self, edit: Callable[[Run], None]) -> Run:
        """A deep copy changed by ``edit``: proves an invariant check notices a broken invariant."""
        clone = copy.deepcopy(self)
        edit(clone)
        return clone


def _service(typ: str) -> str:
    return typ.split(":")[1].split("/")[0]


# Types pulumi-aws auto-names: type -> (name property, prefix property or None). A resource without an explicit
# name gets logical name + "-" + 7 random hex characters, with a prefix property prefix + 26 characters
# (Terraform's id.PrefixedUniqueId: a timestamp and a counter). Types not listed take no name input.
# https://www.pulumi.com/docs/iac/concepts/resources/names/#autonaming
AUTONAMED: dict[str, tuple[str, str | None]] = {
    "aws:ec2/securityGroup:SecurityGroup": ("name", "namePrefix"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("name", "namePrefix"),
    "aws:lb/loadBalancer:LoadBalancer": ("name", "namePrefix"),
    "aws:lb/targetGroup:TargetGroup": ("name", "namePrefix"),
    "aws:iam/role:Role": ("name", "namePrefix"),
    "aws:iam/rolePolicy:RolePolicy": ("name", "namePrefix"),
    "aws:iam/policy:Policy": ("name", "namePrefix"),
    "aws:iam/instanceProfile:InstanceProfile": ("name", "namePrefix"),
    "aws:lambda/function:Function": ("name", None),
    "aws:sqs/queue:Queue": ("name", "namePrefix"),
    "aws:sns/topic:Topic": ("name", "namePrefix"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "namePrefix"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", None),
    "aws:ecr/repository:Repository": ("name", None),
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": ("ecrRepositoryPrefix", None),
    "aws:ecs/cluster:Cluster": ("name", None),
    "aws:ecs/service:Service": ("name", None),
    "aws:dynamodb/table:Table": ("name", None),
    "aws:secretsmanager/secret:Secret": ("name", "namePrefix"),
    "aws:autoscaling/group:Group": ("name", "namePrefix"),
    "aws:autoscaling/policy:Policy": ("name", None),
    "aws:autoscaling/lifecycleHook:LifecycleHook": ("name", None),
    "aws:appautoscaling/policy:Policy": ("name", None),
    "aws:wafv2/webAcl:WebAcl": ("name", "namePrefix"),
    "aws:appsync/api:Api": ("name", None),
    "aws:appsync/channelNamespace:ChannelNamespace": ("name", None),
    "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix"),
    "aws:s3/bucketV2:BucketV2": ("bucket", "bucketPrefix"),
    "aws:kms/alias:Alias": ("name", "namePrefix"),
    "aws:cloudfront/originAccessControl:OriginAccessControl": ("name", None),
    "aws:cloudfront/function:Function": ("name", None),
    "aws:cognito/userPool:UserPool": ("name", None),
    "aws:cognito/userPoolClient:UserPoolClient": ("name", None),
    "aws:cognito/userGroup:UserGroup": ("name", None),
}
PREFIX_SUFFIX_LEN = 26
CLOUDFRONT_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"
CLOUDFRONT_PREFIX_LIST_ID = "pl-3b927c52"  # its id in us-east-1
CLOUDFRONT_PREFIX_LIST_WEIGHT = 55


def _hex(seed: str, length: int) -> str:
    """Deterministic stand-in for the provider's random characters (runs stay cacheable and comparable)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def auto_name(typ: str, logical: str, prefix: str | None) -> str:
    if prefix:
        return prefix + _hex(f"{typ}/{logical}/prefix", PREFIX_SUFFIX_LEN)
    name = f"{logical}-{_hex(f'{typ}/{logical}', 7)}"
    return name.lower() if typ.startswith("aws:s3/") else name  # S3 lower-cases generated bucket names


def _uuid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def realistic_id(typ: str, logical: str, region: str = REGION) -> str | None:
    """IDs whose format other services check (a pool id's region prefix, a distribution's E...), else None."""
    if typ == "aws:cognito/userPool:UserPool":
        return f"{region}_{_hex(logical, 9).upper()}"  # https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-settings-attributes.html
    if typ == "aws:cognito/userPoolClient:UserPoolClient":
        return _hex(logical, 26)
    if typ in ("aws:cloudfront/distribution:Distribution", "aws:cloudfront/originAccessControl:OriginAccessControl"):
        return "E" + _hex(logical, 13).upper()
    return None


def realistic_arn(typ: str, logical: str, physical: str, inputs: dict[str, Any], region: str = REGION,
                  rid: str = "") -> str:
    """The ARN AWS would return, in each service's documented format, so IAM policies can be linted.

    https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
    """
    region_part = f"{region}:{ACCOUNT}"
    h16 = _hex(f"{typ}/{logical}", 16)
    lb_kind = "app" if inputs.get("loadBalancerType", "application") == "application" else "net"
    arns: dict[str, Callable[[], str]] = {
        "aws:ec2/securityGroup:SecurityGroup": lambda: f"arn:aws:ec2:{region_part}:security-group/sg-{h16}0",
        "aws:ec2/vpc:Vpc": lambda: f"arn:aws:ec2:{region_part}:vpc/vpc-{h16}0",
        "aws:ec2/subnet:Subnet": lambda: f"arn:aws:ec2:{region_part}:subnet/subnet-{h16}0",
        "aws:ec2/launchTemplate:LaunchTemplate": lambda: f"arn:aws:ec2:{region_part}:launch-template/lt-{h16}0",
        "aws:ec2/flowLog:FlowLog": lambda: f"arn:aws:ec2:{region_part}:vpc-flow-log/fl-{h16}0",
        "aws:ec2/vpcEndpoint:VpcEndpoint": lambda: f"arn:aws:ec2:{region_part}:vpc-endpoint/vpce-{h16}0",
        "aws:lb/loadBalancer:LoadBalancer": lambda: (
            f"arn:aws:elasticloadbalancing:{region_part}:loadbalancer/{lb_kind}/{physical}/{h16}"),
        "aws:lb/targetGroup:TargetGroup": lambda: (
            f"arn:aws:elasticloadbalancing:{region_part}:targetgroup/{physical}/{h16}"),
        "aws:lb/listener:Listener": lambda: (
            str(inputs.get("loadBalancerArn", f"arn:aws:elasticloadbalancing:{region_part}:loadbalancer/app/x/0"))
            .replace(":loadbalancer/", ":listener/", 1) + f"/{h16}"),
        "aws:acm/certificate:Certificate": lambda: f"arn:aws:acm:{region_part}:certificate/{_uuid(logical)}",
        "aws:iam/role:Role": lambda: f"arn:aws:iam::{ACCOUNT}:role/{physical}",
        "aws:iam/policy:Policy": lambda: f"arn:aws:iam::{ACCOUNT}:policy/{physical}",
        "aws:iam/instanceProfile:InstanceProfile": lambda: f"arn:aws:iam::{ACCOUNT}:instance-profile/{physical}",
        "aws:lambda/function:Function": lambda: f"arn:aws:lambda:{region_part}:function:{physical}",
        "aws:lambda/eventSourceMapping:EventSourceMapping": lambda: (
            f"arn:aws:lambda:{region_part}:event-source-mapping:{_uuid(logical)}"),
        "aws:sqs/queue:Queue": lambda: f"arn:aws:sqs:{region_part}:{physical}",
        "aws:sns/topic:Topic": lambda: f"arn:aws:sns:{region_part}:{physical}",
        "aws:cloudwatch/logGroup:LogGroup": lambda: f"arn:aws:logs:{region_part}:log-group:{physical}",
        "aws:cloudwatch/metricAlarm:MetricAlarm": lambda: f"arn:aws:cloudwatch:{region_part}:alarm:{physical}",
        "aws:cloudwatch/dashboard:Dashboard": lambda: (
            f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{inputs.get('dashboardName', physical)}"),
        "aws:secretsmanager/secret:Secret": lambda: f"arn:aws:secretsmanager:{region_part}:secret:{physical}-{h16[:6]}",
        "aws:ecr/repository:Repository": lambda: f"arn:aws:ecr:{region_part}:repository/{physical}",
        "aws:ecs/cluster:Cluster": lambda: f"arn:aws:ecs:{region_part}:cluster/{physical}",
        "aws:ecs/service:Service": lambda: (
            f"arn:aws:ecs:{region_part}:service/{str(inputs.get('cluster', 'x')).rsplit('/', 1)[-1]}/{physical}"),
        "aws:ecs/taskDefinition:TaskDefinition": lambda: (
            f"arn:aws:ecs:{region_part}:task-definition/{inputs.get('family', physical)}:1"),
        "aws:dynamodb/table:Table": lambda: f"arn:aws:dynamodb:{region_part}:table/{physical}",
        "aws:autoscaling/group:Group": lambda: (
            f"arn:aws:autoscaling:{region_part}:autoScalingGroup:{_uuid(logical)}:autoScalingGroupName/{physical}"),
        # CLOUDFRONT-scope web ACLs are "global": https://docs.aws.amazon.com/waf/latest/APIReference/API_WebACL.html
        "aws:wafv2/webAcl:WebAcl": lambda: (
            f"arn:aws:wafv2:{region_part}:"
            f"{'global' if inputs.get('scope') == 'CLOUDFRONT' else 'regional'}/webacl/{physical}/{_uuid(logical)}"),
        "aws:cloudfront/distribution:Distribution": lambda: f"arn:aws:cloudfront::{ACCOUNT}:distribution/{rid}",
        "aws:cloudfront/function:Function": lambda: f"arn:aws:cloudfront::{ACCOUNT}:function/{physical}",
        "aws:cloudfront/originAccessControl:OriginAccessControl": lambda: (
            f"arn:aws:cloudfront::{ACCOUNT}:origin-access-control/{rid}"),
        "aws:cognito/userPool:UserPool": lambda: f"arn:aws:cognito-idp:{region_part}:userpool/{rid}",
        "aws:appsync/api:Api": lambda: f"arn:aws:appsync:{region_part}:apis/{_hex(logical, 26)}",
        "aws:appsync/channelNamespace:ChannelNamespace": lambda: (
            f"arn:aws:appsync:{region_part}:apis/{inputs.get('apiId')}/channelNamespace/{physical}"),
        "aws:kms/key:Key": lambda: f"arn:aws:kms:{region_part}:key/{_uuid(logical)}",
        "aws:kms/alias:Alias": lambda: f"arn:aws:kms:{region_part}:{physical}",
        "aws:s3/bucket:Bucket": lambda: f"arn:aws:s3:::{physical}",
        "aws:s3/bucketV2:BucketV2": lambda: f"arn:aws:s3:::{physical}",
    }
    make = arns.get(typ)
    if make is not None:
        return make()
    return f"arn:aws:{_service(typ)}:{region_part}:{typ.split(':')[-1].lower()}/{physical}"


# How the SDK marks a secret value on the wire (pulumi.runtime.rpc): {SECRET_SIG_KEY: SECRET_SIG, "value": ...}.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _unwrap_secrets(value: Any) -> tuple[Any, bool]:
    """(value without secret markers, whether any part was secret): AWS receives the plain value."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            inner, _ = _unwrap_secrets(value.get("value"))
            return inner, True
        found = False
        out = {}
        for k, v in value.items():
            out[k], secret = _unwrap_secrets(v)
            found = found or secret
        return out, found
    if isinstance(value, list):
        items = [_unwrap_secrets(v) for v in value]
        return [v for v, _ in items], any(secret for _, secret in items)
    return value, False


class RecordingMocks(Mocks):
    """Auto-name like the provider, echo inputs as state, add computed attributes (real-format ARNs, DNS...)."""

    def __init__(self, region: str = REGION) -> None:
        self.region = region  # the stack's aws:region: the default provider's
        self.resources: list[Recorded] = []
        self.calls: list[MockCallArgs] = []
        self.current = threading.local()  # the StrictMonitor puts the registration's URN/options here
        self.provider_regions: dict[str, str] = {}  # explicit provider reference -> its region

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs: dict[str, Any] = {}
        secret_inputs: set[str] = set()
        for key, raw in args.inputs.items():
            inputs[key], secret = _unwrap_secrets(raw)
            if secret:
                secret_inputs.add(key)
        reg = getattr(self.current, "registration", {})
        region = self.provider_regions.get(reg.get("provider", ""), self.region)
        rid = realistic_id(args.typ, args.name, region) or f"{args.name}-id"
        if args.typ == "pulumi:providers:aws":
            self.provider_regions[f"{reg.get('urn', '')}::{rid}"] = str(inputs.get("region") or self.region)
        state: dict[str, Any] = dict(inputs)
        naming = AUTONAMED.get(args.typ)
        if naming is not None:
            prop, prefix_prop = naming
            if not state.get(prop):
                state[prop] = auto_name(args.typ, args.name, inputs.get(prefix_prop) if prefix_prop else None)
            physical = state[prop]
        else:
            physical = inputs.get("name") or args.name
        state.setdefault("name", physical)
        state["arn"] = realistic_arn(args.typ, args.name, physical, inputs, region, rid)
        extra = _computed(args.typ, args.name, inputs, state)
        state.update(extra)
        self.resources.append(Recorded(args.typ, args.name, inputs, state, rid, parent=reg.get("parent", ""),
                                       urn=reg.get("urn", ""), dependencies=set(reg.get("dependencies", ())),
                                       protect=reg.get("protect", False),
                                       delete_before_replace=reg.get("delete_before_replace", False),
                                       provider=reg.get("provider", ""), secret_inputs=secret_inputs))
        return rid, state

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.calls.append(args)
        token = args.token
        if token == "aws:index/getRegion:getRegion":
            return {"region": self.region, "name": self.region, "id": self.region}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{REGION}{s}" for s in "abc"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(3)], "id": REGION}
        if token == "aws:route53/getZone:getZone":
            return {"zoneId": HOSTED_ZONE_ID, "name": args.args.get("name"), "id": HOSTED_ZONE_ID}
        if token == "aws:ssm/getParameter:getParameter":
            return {"value": AMI_ID, "name": args.args.get("name"), "type": "String", "id": "p"}
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "mock-ecr-password", "authorizationToken": "x",
                    "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com", "id": "t"}
        if token == "aws:ec2/getManagedPrefixList:getManagedPrefixList":
            # The CloudFront origin-facing list: its weight (maxEntries) counts against the rule quota of every
            # security group that references it. https://docs.aws.amazon.com/vpc/latest/userguide/working-with-aws-managed-prefix-lists.html
            name = args.args.get("name")
            assert name == CLOUDFRONT_PREFIX_LIST, f"unexpected managed prefix list {name}"
            return {"id": CLOUDFRONT_PREFIX_LIST_ID, "name": name, "maxEntries": CLOUDFRONT_PREFIX_LIST_WEIGHT,
                    "addressFamily": "IPv4", "ownerId": "AWS", "version": 1, "entries": [],
                    "arn": f"arn:aws:ec2:{REGION}:aws:prefix-list/{CLOUDFRONT_PREFIX_LIST_ID}"}
        raise AssertionError(f"unmocked invoke {token}: add it to RecordingMocks.call")


def _computed(typ: str, name: str, inputs: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    arn = state["arn"]
    if typ == "aws:dynamodb/table:Table":
        return {"streamArn": f"{arn}/stream/2026-01-01T00:00:00.000", "streamLabel": "2026-01-01T00:00:00.000"}
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        return {"dnsName": f"{state['name']}-123.{REGION}.elb.amazonaws.com", "zoneId": "Z35SXDOTRQ7X7K",
                "arnSuffix": arn.split(":loadbalancer/", 1)[1]}
    if typ == "aws:lb/targetGroup:TargetGroup":
        return {"arnSuffix": arn.split(":", 5)[5]}
    if typ == "aws:acm/certificate:Certificate":
        domain = inputs["domainName"]
        return {"domainValidationOptions": [{
            "domainName": domain, "resourceRecordName": f"_0a1b2c.{domain}.", "resourceRecordType": "CNAME",
            "resourceRecordValue": "_3d4e5f.acm-validations.aws."}]}
    if typ == "aws:route53/record:Record":
        return {"fqdn": str(inputs["name"]).rstrip(".")}
    if typ == "aws:appsync/api:Api":
        return {"apiId": arn.rsplit("/", 1)[1], "apiArn": arn,
                "dns": {"HTTP": "mockprefix.appsync-api.us-east-1.amazonaws.com",
                        "REALTIME": "mockprefix.appsync-realtime-api.us-east-1.amazonaws.com"}}
    if typ == "aws:appsync/channelNamespace:ChannelNamespace":
        return {"channelNamespaceArn": arn}
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"latestVersion": 3}
    if typ == "aws:ecr/repository:Repository":
        return {"repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{state['name']}", "registryId": ACCOUNT}
    if typ == "docker-build:index:Image":
        repo = str(inputs["tags"][0]).rsplit(":", 1)[0]
        return {"ref": f"{repo}@sha256:{'ab' * 32}", "digest": f"sha256:{'ab' * 32}"}
    if typ == "aws:sqs/queue:Queue":
        return {"url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{state['name']}"}
    if typ == "aws:lambda/function:Function":
        return {"invokeArn": f"arn:aws:apigateway:{REGION}:lambda:path/functions/{arn}/invocations"}
    if typ in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        return {"bucketRegionalDomainName": f"{state['bucket']}.s3.{REGION}.amazonaws.com"}
    if typ == "aws:cloudfront/distribution:Distribution":
        return {"domainName": f"d{_hex(name, 13)}.cloudfront.net", "hostedZoneId": "Z2FDTNDATAQYW2",
                "status": "Deployed"}
    if typ == "aws:cognito/userPool:UserPool":
        pool_id = arn.rsplit("/", 1)[1]
        return {"endpoint": f"cognito-idp.{REGION}.amazonaws.com/{pool_id}"}
    return {}


class StrictMonitor(MockMonitor):
    """MockMonitor accepts duplicate URNs silently; the real engine refuses them.

    An exception raised here would only surface as an unretrieved-future warning, so duplicates are
    recorded and ``run_program`` fails on them once the program has settled.
    """

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.duplicates: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # registrations run concurrently in the SDK's thread pool

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        with self._lock:
            if request.type != "pulumi:pulumi:Stack" and urn in self._seen:
                self.duplicates.append(urn)
            self._seen.add(urn)
        # MockResourceArgs carries no dependencies; the request does. new_resource runs synchronously on this
        # thread inside super().RegisterResource, so a thread-local hands them over without races.
        current = self.mocks.current if isinstance(self.mocks, RecordingMocks) else threading.local()
        current.registration = {
            "urn": urn, "parent": request.parent, "protect": bool(request.protect), "provider": request.provider,
            "delete_before_replace": bool(request.deleteBeforeReplace),
            "dependencies": {*request.dependencies,
                             *(u for deps in request.propertyDependencies.values() for u in deps.urns)},
        }
        try:
            return super().RegisterResource(request)
        finally:
            current.registration = {}


def stack_config(stack: str, overrides: dict[str, str] | None = None, *, secrets: bool = True) -> dict[str, str]:
    """Pulumi.<stack>.yaml as the flat ``project:key`` strings the engine would pass, plus test secrets."""
    raw = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    cfg = {k: (json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool) else str(v))
           for k, v in raw.items()}
    cfg.setdefault(f"{PROJECT}:webDistDir", str(WEB_DIST_FIXTURE))  # tests never depend on a local npm build
    if secrets:
        cfg.update({f"{PROJECT}:{k}": v for k, v in TEST_SECRETS.items()})
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            cfg.pop(full, None)
        else:
            cfg[full] = value
    return cfg


def run_program(stack: str, overrides: dict[str, str] | None = None, *,
                program: Callable[[], Any] | None = None, secrets: bool = True) -> Run:
    """Run platform/__main__.py (or ``program``) once under fresh mocks and return the recording."""
    config = stack_config(stack, overrides, secrets=secrets)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi_settings.ROOT.set(None)  # force a fresh root Stack bound to this loop
    mocks = RecordingMocks(config.get("aws:region", REGION))
    monitor = StrictMonitor(mocks)
    outputs: dict[str, Any] = {}
    try:
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
        pulumi.runtime.set_all_config(config, secret_keys=[f"{PROJECT}:{k}" for k in TEST_SECRETS])

        @pulumi.runtime.test
        def _program() -> Any:
            if program is not None:
                return program()
            module = runpy.run_path(str(PLATFORM_DIR / "__main__.py"), run_name="__main__")
            exported = module["deployment"].outputs
            return pulumi.Output.all(**exported).apply(outputs.update)

        _program()
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        pulumi_settings.ROOT.set(None)
    # A recording (and the imported SDKs) is a large, long-lived heap: collect this run's garbage now (so any lost
    # task exception is reported against this test), then freeze the survivors so the suite's per-test
    # gc.collect() (tests/conftest.py) does not walk them again for every later test.
    gc.collect()
    gc.freeze()
    assert mocks.resources, "no resources were recorded: the Pulumi mocks are not active"
    assert not monitor.duplicates, f"Duplicate resource URN(s): {monitor.duplicates}"
    return Run(stack=stack, config=config, resources=mocks.resources, calls=mocks.calls, outputs=outputs)


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], Run] = {}


def cached_run(stack: str, **overrides: str) -> Run:
    """Each (stack, overrides) program run once per session; tests only read the recording."""
    key = (stack, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        _CACHE[key] = run_program(stack, overrides)
    return _CACHE[key]


def cdn_on(run: Run) -> bool:
    return run.config.get(f"{PROJECT}:cdn", "true").lower() == "true"


def cognito_on(run: Run) -> bool:
    return run.config.get(f"{PROJECT}:staffAuth", "cognito") == "cognito"


def policy_statements(run: Run) -> list[tuple[Recorded, dict[str, Any]]]:
    """Every IAM statement of every inline or managed policy the program declares."""
    found = []
    for r in [*run.of_type("aws:iam/rolePolicy:RolePolicy"), *run.of_type("aws:iam/policy:Policy")]:
        doc = json.loads(r.inputs["policy"])
        statements = doc["Statement"]
        for stmt in statements if isinstance(statements, list) else [statements]:
            found.append((r, stmt))
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
