"""Run the real Pulumi program (platform/__main__.py) under recording mocks and return what it declared.

Why this shape (reference/pulumi-aws.md §1.3-1.7): a fresh event loop and root Stack per run (pytest-
asyncio shares the process), a monitor that rejects duplicate URNs like the real engine, config loaded
from the stack's own Pulumi.<stack>.yaml (mocks do not read it), preview off (applies would be skipped),
and a hard failure when nothing was recorded (a program run without mocks "passes" vacuously).
"""

from __future__ import annotations

import asyncio
import copy
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
                "sessionSecret": "session-secret-for-tests"}


@dataclass
class Recorded:
    """One registered resource: what the program passed (camelCase wire inputs) and the mock's state."""

    typ: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    id: str
    parent: str = ""

    @property
    def arn(self) -> str:
        return str(self.state.get("arn"))


@dataclass
class Run:
    stack: str
    config: dict[str, str]
    resources: list[Recorded]
    calls: list[MockCallArgs]
    outputs: dict[str, Any] = field(default_factory=dict)

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

    def mutated(self, edit: Callable[[Run], None]) -> Run:
        """A deep copy changed by ``edit``: proves an invariant check notices a broken invariant."""
        clone = copy.deepcopy(self)
        edit(clone)
        return clone


def _service(typ: str) -> str:
    return typ.split(":")[1].split("/")[0]


class RecordingMocks(Mocks):
    """Echo inputs as state and add the computed attributes the program reads (ARNs, DNS, stream ARNs)."""

    def __init__(self) -> None:
        self.resources: list[Recorded] = []
        self.calls: list[MockCallArgs] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = args.inputs
        rid = f"{args.name}-id"
        state: dict[str, Any] = dict(inputs)
        physical = inputs.get("name") or inputs.get("namePrefix") or args.name
        state.setdefault("name", physical)
        state["arn"] = f"arn:aws:{_service(args.typ)}:{REGION}:{ACCOUNT}:{args.typ.split(':')[-1].lower()}/{physical}"
        extra = _computed(args.typ, args.name, inputs, state)
        state.update(extra)
        self.resources.append(Recorded(args.typ, args.name, inputs, state, rid))
        return rid, state

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.calls.append(args)
        token = args.token
        if token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION}
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
        raise AssertionError(f"unmocked invoke {token}: add it to RecordingMocks.call")


def _computed(typ: str, name: str, inputs: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    arn = state["arn"]
    if typ == "aws:dynamodb/table:Table":
        return {"streamArn": f"{arn}/stream/2026-01-01T00:00:00.000", "streamLabel": "2026-01-01T00:00:00.000"}
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        kind = "app" if inputs.get("loadBalancerType") == "application" else "net"
        return {"dnsName": f"{name}-123.{REGION}.elb.amazonaws.com", "zoneId": "Z35SXDOTRQ7X7K",
                "arnSuffix": f"{kind}/{name}/0123456789abcdef"}
    if typ == "aws:lb/targetGroup:TargetGroup":
        return {"arnSuffix": f"targetgroup/{name}/0123456789abcdef"}
    if typ == "aws:acm/certificate:Certificate":
        domain = inputs["domainName"]
        return {"domainValidationOptions": [{
            "domainName": domain, "resourceRecordName": f"_0a1b2c.{domain}.", "resourceRecordType": "CNAME",
            "resourceRecordValue": "_3d4e5f.acm-validations.aws."}]}
    if typ == "aws:route53/record:Record":
        return {"fqdn": str(inputs["name"]).rstrip(".")}
    if typ == "aws:appsync/api:Api":
        return {"apiId": "mockapi", "apiArn": f"arn:aws:appsync:{REGION}:{ACCOUNT}:apis/mockapi",
                "dns": {"HTTP": "mockprefix.appsync-api.us-east-1.amazonaws.com",
                        "REALTIME": "mockprefix.appsync-realtime-api.us-east-1.amazonaws.com"}}
    if typ == "aws:appsync/channelNamespace:ChannelNamespace":
        return {"channelNamespaceArn":
                f"arn:aws:appsync:{REGION}:{ACCOUNT}:apis/{inputs['apiId']}/channelNamespace/{inputs['name']}"}
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"latestVersion": 3}
    if typ == "aws:ecr/repository:Repository":
        return {"repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{inputs['name']}", "registryId": ACCOUNT}
    if typ == "docker-build:index:Image":
        repo = str(inputs["tags"][0]).rsplit(":", 1)[0]
        return {"ref": f"{repo}@sha256:{'ab' * 32}", "digest": f"sha256:{'ab' * 32}"}
    if typ == "aws:sqs/queue:Queue":
        return {"url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{state['name']}"}
    if typ == "aws:lambda/function:Function":
        return {"invokeArn": f"arn:aws:apigateway:{REGION}:lambda:path/functions/{arn}/invocations"}
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
        return super().RegisterResource(request)


def stack_config(stack: str, overrides: dict[str, str] | None = None, *, secrets: bool = True) -> dict[str, str]:
    """Pulumi.<stack>.yaml as the flat ``project:key`` strings the engine would pass, plus test secrets."""
    raw = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    cfg = {k: (json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool) else str(v))
           for k, v in raw.items()}
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
    mocks = RecordingMocks()
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
