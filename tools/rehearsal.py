"""Rehearse the deployed stack on one machine: ``python -m tools.rehearsal`` (``bin/rehearse``).

What runs where (docs/rehearsal.md has the picture): three network namespaces stand in for the guest's
network, the AWS edge (ALB, NLB + coturn, the AppSync Events API) and a private subnet of the VPC (the
runtime task and, on its loopback, the AWS services it calls). Everything the rehearsal deploys is read
from the Pulumi program run under the test mocks (``tests/platform/pulumi_harness.py``), not retyped:

- the runtime's environment and secrets (``test_platform_wiring.runtime_environment``) with the container
  image's ``ENV`` and ``CMD`` from the ``Dockerfile``; secret values are generated here and injected by
  name the way the ECS agent resolves ``valueFrom`` ARNs from Secrets Manager;
- the DynamoDB tables (key schema, streams, TTL, encryption, deletion protection) created in moto;
- the stream-publisher Lambda's environment, event-source filter, batch size and retry bound;
- the AppSync namespaces and auth modes (IAM publish, Lambda-authorizer subscribe);
- coturn's two ``turnserver.conf`` files and the container command that starts them;
- the private subnet CIDR the runtime's address is taken from (coturn may relay only into it).

Only what must point at the local stand-ins is changed (``OVERRIDES`` says each and why). The runtime gets
no AWS keys: its credentials come from a local ECS container-credentials endpoint on 169.254.170.2 (or,
with ``--credentials imds``, IMDSv2 on 169.254.169.254), short-lived and rotating every 10 s, issued into
the ``CredentialBook`` the Nova Sonic emulator and the AppSync stand-in verify signatures against.

Then a scripted guest books a table by voice over WebRTC relayed through coturn, the stream-publisher
Lambda handler (fed from the moto DynamoDB streams) publishes the changes with SigV4, a staff subscriber
receives the booking event, the turns are read back from DynamoDB, and ``bin/smoke`` runs against the
edge. The report (JSON) lists every check and the wall time; the exit status is 0 only if all passed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from tests.netns import entered  # the calling thread moves into a namespace; one implementation for tests and tools

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_TESTS = ROOT / "tests" / "platform"

log = logging.getLogger("tools.rehearsal")

# RFC 5737 documentation addresses: the guest's network and the edge's public side never collide with a real one.
EDGE_IP = "203.0.113.1"  # the ALB, the NLB in front of coturn, and the AppSync endpoints
CLIENT_IP = "203.0.113.7"  # the guest's browser
ALB_PORT = 80  # the ALB listens on 443 with TLS; TLS termination is not rehearsed
APPSYNC_PORT = 8443
ECS_CREDENTIALS_IP = "169.254.170.2"  # where the ECS agent serves AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
IMDS_IP = "169.254.169.254"
MOTO_PORT = 4566
CREDENTIAL_LIFETIME_SECONDS = 900.0  # STS's minimum session length
CREDENTIAL_ROTATE_BEFORE_SECONDS = 890.0  # i.e. new credentials every 10 s: several keys in one rehearsal

# Every variable the rehearsal changes in the environment the Pulumi program gives the task, and why.
OVERRIDES: dict[str, str] = {
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "Bedrock runtime -> the strict Nova Sonic emulator on the task's loopback",
    "NOVA_SONIC_CA_BUNDLE": "the emulator's throwaway CA (Bedrock's certificate chains to a public CA)",
    "AWS_ENDPOINT_URL_DYNAMODB": "DynamoDB -> moto server on the task's loopback",
    "APPSYNC_ENDPOINT": "the AppSync Events API -> the local one on the edge address (plain HTTP: no TLS)",
    "APPSYNC_REALTIME_ENDPOINT": "the same API's WebSocket (ws://, not wss://: TLS is not rehearsed)",
    "TURN_URLS": "turn.<domain> -> coturn on the edge address (no DNS, no NLB: UDP 3478 and TCP 3479 direct; "
                 "the NLB's TLS listener on 443 is left out)",
}
# With staffAuth=cognito: the program's pool and client ids are the mocks'; the stand-in's pool replaces them.
COGNITO_OVERRIDES: dict[str, str] = {
    "COGNITO_USER_POOL_ID": "the staff user pool -> the Cognito stand-in's pool, made with the program's settings",
    "COGNITO_CLIENT_ID": "the pool's public app client -> the stand-in's",
    "COGNITO_REGION": "the stand-in keeps its pools in us-east-1",
    "COGNITO_ENDPOINT_URL": "cognito-idp.<region>.amazonaws.com -> the stand-in on the edge address (JWKS, sign-in)",
}
OVERRIDES.update(COGNITO_OVERRIDES)
STAFF_USER = "maitre.d@example.com"  # the pool's user names are e-mail addresses (staff_pool.py)
# Injected by the platform, not by the task definition: the ECS agent sets this one in every container of a
# task with a task role (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html).
AGENT_INJECTED = ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",)
FORBIDDEN_IN_RUNTIME = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")


# --- what the Pulumi program declares ------------------------------------------------------------------

@dataclass
class Deployment:
    stack: str
    compute: str
    region: str
    runtime_env: dict[str, str]
    runtime_secrets: dict[str, str]  # env name -> Secrets Manager ARN
    tables: list[dict[str, Any]]  # create_table arguments
    ttl: dict[str, str]  # table name -> TTL attribute
    publisher_env: dict[str, str]
    stream_filters: list[dict[str, list[str]]]
    batch_size: int
    max_retries: int
    namespaces: list[str]
    publish_auth: list[str]
    subscribe_auth: list[str]
    subscribe_modes: dict[str, list[str]]  # namespace -> its subscribe auth types, as declared
    authorizer_env: dict[str, str]  # the Lambda authorizer's environment variables
    cognito_config: dict[str, str] | None  # the API's AMAZON_COGNITO_USER_POOLS provider, if any (staffAuth=cognito)
    on_subscribe_code: str | None  # the namespaces' APPSYNC_JS code handler (the same file on every namespace)
    staff_mfa: str | None  # the staff user pool's MfaConfiguration (OPTIONAL | ON), None without a pool
    turn_confs: dict[str, str]  # transport -> turnserver.conf (without the secret)
    turn_command: str
    private_cidr: str
    turn_urls: list[str]


def _table_args(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``aws.dynamodb.Table`` inputs the program registered -> boto3 ``create_table`` arguments."""

    def keys(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
        return [{"AttributeName": hash_key, "KeyType": "HASH"},
                *([{"AttributeName": range_key, "KeyType": "RANGE"}] if range_key else [])]

    args: dict[str, Any] = {
        "TableName": inputs["name"],
        "KeySchema": keys(inputs["hashKey"], inputs.get("rangeKey")),
        "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]}
                                 for a in inputs["attributes"]],
        "BillingMode": inputs["billingMode"],
        "StreamSpecification": {"StreamEnabled": bool(inputs["streamEnabled"]),
                                "StreamViewType": inputs["streamViewType"]},
        "SSESpecification": {"Enabled": bool(inputs.get("serverSideEncryption", {}).get("enabled"))},
        "DeletionProtectionEnabled": bool(inputs.get("deletionProtectionEnabled", False)),
    }
    indexes = [{"IndexName": g["name"], "KeySchema": keys(g["hashKey"], g.get("rangeKey")),
                "Projection": {"ProjectionType": g["projectionType"],
                               **({"NonKeyAttributes": g["nonKeyAttributes"]} if g.get("nonKeyAttributes") else {})}}
               for g in inputs.get("globalSecondaryIndexes") or []]
    if indexes:
        args["GlobalSecondaryIndexes"] = indexes
    return args


def read_deployment(stack: str = "prod", compute: str = "ecs") -> Deployment:
    """Run the Pulumi program under the test mocks and collect what the rehearsal deploys."""
    if str(PLATFORM_TESTS) not in sys.path:
        sys.path.insert(0, str(PLATFORM_TESTS))
    from pulumi_harness import cached_run  # puts platform/ on sys.path, as Pulumi's `main: platform/` does
    from test_platform_wiring import runtime_environment

    run = cached_run(stack, compute=compute)  # shared with tests/platform when both run in one pytest process
    from concierge_platform.coturn import CONTAINER_COMMAND
    env, secret_arns = runtime_environment(run)
    tables = [r.inputs for r in run.of_type("aws:dynamodb/table:Table")]
    publisher = run.one("aws:lambda/function:Function", "events-publisher")
    mappings = run.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    filters = [json.loads(f["pattern"]) for m in mappings[:1] for f in m.inputs["filterCriteria"]["filters"]]
    assert all(m.inputs.get("filterCriteria") == mappings[0].inputs.get("filterCriteria") for m in mappings)
    api = run.one("aws:appsync/api:Api")  # exactly one Events API
    namespaces = run.of_type("aws:appsync/channelNamespace:ChannelNamespace")
    authorizer = run.one("aws:lambda/function:Function", "events-authorizer")
    cognito_providers = [p["cognitoConfig"] for p in api.inputs["eventConfig"]["authProviders"]
                         if p["authType"] == "AMAZON_COGNITO_USER_POOLS"]
    handler_codes = {n.inputs.get("codeHandlers") for n in namespaces}
    pools = run.of_type("aws:cognito/userPool:UserPool")
    assert len(handler_codes) == 1, "every namespace runs the same onSubscribe code (or none)"
    # coturn: the ECS task definition's containers or the EC2 user data's env files both carry the
    # rendered configuration as TURNSERVER_CONF_B64 (compute_ecs.py / compute_ec2.py).
    if compute == "ecs":
        task = run.one("aws:ecs/taskDefinition:TaskDefinition", "ecs-turn-task")
        blobs = [e["value"] for c in json.loads(task.inputs["containerDefinitions"])
                 for e in c["environment"] if e["name"] == "TURNSERVER_CONF_B64"]
    else:
        import platform_invariants

        blobs = re.findall(r"TURNSERVER_CONF_B64=(\S+)", platform_invariants.user_data(run))
    confs = [base64.b64decode(b).decode() for b in blobs]
    turn_confs = {("tcp" if "no-udp" in c.splitlines() else "udp"): c for c in confs}
    private = sorted(s.inputs["cidrBlock"] for s in run.of_type("aws:ec2/subnet:Subnet")
                     if s.name.startswith("net-private-"))
    return Deployment(
        stack=stack, compute=compute, region=run.config.get("aws:region", "us-east-1"),
        runtime_env=env, runtime_secrets=secret_arns,
        tables=[_table_args(t) for t in tables],
        ttl={t["name"]: t["ttl"]["attributeName"] for t in tables if t.get("ttl", {}).get("enabled")},
        publisher_env=dict(publisher.inputs["environment"]["variables"]),
        stream_filters=filters,
        batch_size=int(mappings[0].inputs["batchSize"]),
        max_retries=int(mappings[0].inputs["maximumRetryAttempts"]),
        namespaces=sorted(n.inputs["name"] for n in namespaces),
        publish_auth=sorted({m["authType"] for n in namespaces for m in n.inputs["publishAuthModes"]}),
        subscribe_auth=sorted({m["authType"] for n in namespaces for m in n.inputs["subscribeAuthModes"]}),
        subscribe_modes={n.inputs["name"]: sorted(m["authType"] for m in n.inputs["subscribeAuthModes"])
                         for n in namespaces},
        authorizer_env=dict(authorizer.inputs["environment"]["variables"]),
        cognito_config=dict(cognito_providers[0]) if cognito_providers else None,
        on_subscribe_code=handler_codes.pop(),
        staff_mfa=pools[0].inputs.get("mfaConfiguration") if pools else None,
        turn_confs=turn_confs, turn_command=CONTAINER_COMMAND, private_cidr=private[0],
        turn_urls=list(run.outputs.get("turnUrls") or []),
    )


def image_environment_and_command(app_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's final ``ENV`` block and ``CMD``, with the image's /app mapped to ``app_dir``."""
    text = (ROOT / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", final_stage, flags=re.MULTILINE):
        for pair in block.replace("\\\n", " ").split():
            name, _, value = pair.partition("=")
            env[name] = value.replace("/app/", f"{app_dir}/") if value.startswith("/app/") else value
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", final_stage, flags=re.MULTILINE)[-1])
    if cmd[0] == "python":
        cmd[0] = sys.executable  # the image's interpreter is the project's virtualenv here
    return env, cmd


# --- network namespaces --------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


class Topology:
    """client ns --(203.0.113.0/24)-- edge ns --(private subnet)-- runtime ns; nothing routes client<->runtime."""

    def __init__(self, private_cidr: str) -> None:
        tag = os.getpid()  # names stay within 15 characters (IFNAMSIZ) for any pid up to 2**22
        self.client_ns, self.edge_ns, self.runtime_ns = f"rhc{tag}", f"rhe{tag}", f"rhr{tag}"
        self.veth = {"client": f"rhc{tag}a", "edge_public": f"rhe{tag}a", "edge_private": f"rhe{tag}b",
                     "runtime": f"rhr{tag}b"}
        net = ip_network(private_cidr)
        self.prefix = net.prefixlen
        self.edge_private_ip = str(net[5])  # coturn's task address in the private subnet
        self.runtime_ip = str(net[10])  # the runtime task's address

    def create(self) -> None:
        self.destroy()
        remove_stale_namespaces()
        for ns in (self.client_ns, self.edge_ns, self.runtime_ns):
            _ip("netns", "add", ns)
        v = self.veth
        _ip("link", "add", v["client"], "type", "veth", "peer", "name", v["edge_public"])
        _ip("link", "set", v["client"], "netns", self.client_ns)
        _ip("link", "set", v["edge_public"], "netns", self.edge_ns)
        _ip("link", "add", v["edge_private"], "type", "veth", "peer", "name", v["runtime"])
        _ip("link", "set", v["edge_private"], "netns", self.edge_ns)
        _ip("link", "set", v["runtime"], "netns", self.runtime_ns)
        for ns, dev, address in ((self.client_ns, v["client"], f"{CLIENT_IP}/24"),
                                 (self.edge_ns, v["edge_public"], f"{EDGE_IP}/24"),
                                 (self.edge_ns, v["edge_private"], f"{self.edge_private_ip}/{self.prefix}"),
                                 (self.runtime_ns, v["runtime"], f"{self.runtime_ip}/{self.prefix}")):
            _ip("-n", ns, "addr", "add", address, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # The task reaches the edge (coturn's relay addresses, the AppSync endpoints) through the edge's private
        # address; the edge namespace does not forward, so the guest stays unreachable from the task.
        _ip("-n", self.runtime_ns, "route", "add", "203.0.113.0/24", "via", self.edge_private_ip)
        # The link-local addresses the ECS agent and IMDS answer on, served inside the task's namespace.
        for address in (ECS_CREDENTIALS_IP, IMDS_IP):
            _ip("-n", self.runtime_ns, "addr", "add", f"{address}/32", "dev", "lo")

    def destroy(self) -> None:
        for dev in (self.veth["client"], self.veth["edge_private"]):
            _ip("link", "del", dev, check=False)
        for ns in (self.client_ns, self.edge_ns, self.runtime_ns):
            _ip("netns", "del", ns, check=False)

    def exec_in(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def remove_stale_namespaces() -> None:
    """Namespaces left by a rehearsal that was killed (its pid is gone): delete them and their links."""
    listing = _ip("netns", "list", check=False).stdout
    for name in re.findall(r"^(rh[cer](\d+))\b", listing, flags=re.MULTILINE):
        if not Path(f"/proc/{name[1]}").exists():
            _ip("netns", "del", name[0], check=False)


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces (WebRTC cannot use loopback)"
    for tool in ("ip", "turnserver", "ss"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


# --- the stand-ins -------------------------------------------------------------------------------------

class LoopThread:
    """An asyncio loop in its own thread (optionally in another namespace) running one coroutine function."""

    def __init__(self, name: str, main: Callable[[asyncio.Event], Any], ns: str | None = None) -> None:
        self.name, self.main, self.ns = name, main, ns
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        with entered(self.ns) if self.ns else contextlib.nullcontext():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main())
            except BaseException as exc:
                self.error = exc
                self.ready.set()
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        await self.main(self._stop)

    def start(self, timeout: float = 20) -> None:
        self.thread.start()
        if not self.ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"{self.name} did not start: {self.error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


def booking_script(guest_name: str) -> Any:
    """What the emulated model does: the guest's audio is a booking request; it books and reads the id back."""
    from emulators.nova_sonic import CallTool, Say, Script, Turn

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    return Script([
        # The runtime asks the model to greet first (docs/greeting.md): that text prompt is the first turn.
        Turn("(the greeting prompt)", Say("Welcome to Nova Bistro. How can I help you today?", 1500)),
        Turn(f"I'd like a table for two tomorrow at seven pm, the name is {guest_name}",
             CallTool("create_restaurant_booking",
                      {"name": guest_name, "date": tomorrow, "hour": "19:00", "num_guests": 2}),
             Say("You're booked for two tomorrow at seven. Your booking id is {booking_id}.", audio_ms=1500)),
    ], fallback=Say("Welcome to Nova Bistro. How can I help you today?", 1500))


def make_emulator(script: Any, book: Any, region: str) -> tuple[Any, list[str]]:
    """The Nova Sonic emulator with the service's defaults, verifying signatures against ``book`` when it can.

    Seam: the strict emulator takes ``credentials=`` (a CredentialBook); an emulator without it cannot
    verify, which the report says instead of pretending.
    """
    from emulators.nova_sonic import NovaSonicEmulator

    parameters = inspect.signature(NovaSonicEmulator).parameters
    notes: list[str] = []
    options: dict[str, Any] = {}
    if "credentials" in parameters:
        options["credentials"] = book
        if "region" in parameters:
            options["region"] = region
    else:
        notes.append("the Nova Sonic emulator has no credentials= parameter: signatures were not verified")
    return NovaSonicEmulator(script, **options), notes


class StreamPump:
    """Lambda's DynamoDB event source mapping, in a thread: poll each table's stream, filter, batch, invoke.

    Reads with ``GetRecords`` like the Lambda poller (moto has no event source mappings that deliver), applies
    the program's filter criteria, batches up to ``batch_size`` records per shard in order, and on a partial
    batch failure retries from the reported record up to ``max_retries`` times before dropping the rest (the
    deployed mapping sends them to the dead-letter queue).
    """

    def __init__(self, endpoint: str, region: str, tables: list[str], filters: list[dict[str, list[str]]],
                 batch_size: int, max_retries: int, handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
        import boto3

        self.dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=endpoint)
        self.streams = boto3.client("dynamodbstreams", region_name=region, endpoint_url=endpoint)
        self.tables, self.filters = tables, filters
        self.batch_size, self.max_retries, self.handler = batch_size, max_retries, handler
        self.invocations = 0
        self.records_delivered = 0
        self.dead_lettered = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stream-pump", daemon=True)

    def _matches(self, record: Mapping[str, Any]) -> bool:
        for pattern in self.filters:
            for key, allowed in pattern.items():
                if not isinstance(allowed, list) or any(not isinstance(a, str) for a in allowed):
                    raise ValueError(f"filter pattern {pattern} uses syntax the rehearsal does not implement")
                if record.get(key) not in allowed:
                    return False
        return True

    def start(self) -> None:
        self._iterators: dict[str, tuple[str, str]] = {}
        for table in self.tables:
            arn = self.dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
            for shard in self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                                           ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                self._iterators[f"{arn}#{shard['ShardId']}"] = (arn, iterator)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for key, (arn, iterator) in list(self._iterators.items()):
                try:
                    page = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
                except Exception as exc:
                    self.errors.append(f"get_records: {exc}")
                    continue
                self._iterators[key] = (arn, page.get("NextShardIterator") or iterator)
                records = []
                for record in page["Records"]:
                    data = dict(record["dynamodb"])
                    if "ApproximateCreationDateTime" in data:
                        data["ApproximateCreationDateTime"] = data["ApproximateCreationDateTime"].timestamp()
                    records.append({**record, "dynamodb": data, "eventSourceARN": arn})
                batch = [r for r in records if self._matches(r)]
                if batch:
                    busy = True
                    self._deliver(batch)
            if not busy:
                self._stop.wait(0.1)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(self.max_retries + 1):
            self.invocations += 1
            try:
                response = self.handler({"Records": batch}, None)
            except Exception as exc:  # a raised handler fails the whole batch, as in Lambda
                self.errors.append(f"handler raised: {exc!r}")
                failures = [{"itemIdentifier": batch[0]["dynamodb"]["SequenceNumber"]}]
            else:
                failures = response.get("batchItemFailures") or []
            if not failures:
                self.records_delivered += len(batch)
                return
            failed = failures[0]["itemIdentifier"]
            start = next((i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed), 0)
            self.records_delivered += start
            batch = batch[start:]
            if attempt < self.max_retries:
                time.sleep(min(2.0, 0.2 * 2 ** attempt))
        self.dead_lettered += len(batch)
        self.errors.append(f"{len(batch)} records sent to the dead-letter queue")


async def _proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
    """One TCP connection of the "ALB": bytes both ways (HTTP and WebSocket alike)."""
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            dst.close()

    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()


# --- the rehearsal -------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    ok: bool
    detail: Any = None


@dataclass
class Report:
    stack: str
    compute: str
    credentials: str
    wall_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: Any = None) -> None:
        self.checks.append(Check(name, bool(ok), detail))
        print(f"    [{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail is not None else ""), flush=True)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Rehearsal:
    def __init__(self, *, stack: str, compute: str, credentials: str, smoke: bool, workdir: Path) -> None:
        self.stack, self.compute, self.credentials, self.run_smoke = stack, compute, credentials, smoke
        self.workdir = workdir
        self.report = Report(stack, compute, credentials)
        self.started = time.monotonic()
        self._mark = self.started

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.report.phases[name] = round(now - self._mark, 2)
        self._mark = now
        print(f"--> {name} ({self.report.phases[name]:.1f} s)", flush=True)

    # ------------------------------------------------------------------
    def run(self) -> Report:
        self.deployment = read_deployment(self.stack, self.compute)
        self.phase("read the Pulumi program under mocks")
        self.topology = Topology(self.deployment.private_cidr)
        self.cleanups: list[Callable[[], None]] = []
        try:
            self.topology.create()
            with entered(self.topology.runtime_ns):
                asyncio.run(self._rehearse())
        finally:
            for cleanup in reversed(self.cleanups):
                try:
                    cleanup()
                except Exception as exc:
                    log.warning("cleanup failed: %r", exc)
            self.topology.destroy()
            self.report.wall_seconds = round(time.monotonic() - self.started, 1)
        return self.report

    async def _rehearse(self) -> None:
        from emulators.appsync_events import LocalEventsApi
        from emulators.identity import CredentialBook

        d, topo, report = self.deployment, self.topology, self.report
        cognito_mode = d.cognito_config is not None
        expected_modes = ({"conversations": ["AMAZON_COGNITO_USER_POOLS", "AWS_LAMBDA"],
                           "restaurant-booking": ["AMAZON_COGNITO_USER_POOLS"]} if cognito_mode
                          else {ns: ["AWS_LAMBDA"] for ns in d.namespaces})
        report.check("AppSync auth modes as deployed", d.publish_auth == ["AWS_IAM"]
                     and d.subscribe_modes == expected_modes and (d.on_subscribe_code is not None) == cognito_mode,
                     {"publish": d.publish_auth, "subscribe": d.subscribe_modes,
                      "cognito": d.cognito_config, "onSubscribe handler": d.on_subscribe_code is not None})
        self.book = CredentialBook()
        self.secret_values = {arn: secrets.token_urlsafe(32) for arn in d.runtime_secrets.values()}
        secret = {name: self.secret_values[arn] for name, arn in d.runtime_secrets.items()}
        self.staff_token = secret.get("STAFF_TOKEN", "")  # staffAuth=cognito: none exists; staff sign in instead

        # -- AWS services on the task's loopback: moto (DynamoDB + streams), the credentials endpoint
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=MOTO_PORT, verbose=False)
        moto.start()
        self.cleanups.append(moto.stop)
        self.moto_url = f"http://127.0.0.1:{MOTO_PORT}"
        # The rehearsal's own AWS clients (creating tables, the Lambda's poller) sign with Lambda-role style
        # credentials from the same book; moto does not check them, the AppSync stand-in does.
        lambda_role = self.book.issue(lifetime_seconds=3600)
        os.environ.update({"AWS_ACCESS_KEY_ID": lambda_role.access_key_id,
                           "AWS_SECRET_ACCESS_KEY": lambda_role.secret_access_key,
                           "AWS_SESSION_TOKEN": lambda_role.session_token or "",
                           "AWS_REGION": d.region, "AWS_DEFAULT_REGION": d.region,
                           "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "AWS_EC2_METADATA_DISABLED": "true"})
        for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
            os.environ.pop(name, None)
        self._create_tables()
        self.phase("moto DynamoDB with the program's tables")

        from emulators.credentials import ContainerCredentialsEndpoint, InstanceMetadataEndpoint

        endpoint_options = {"lifetime_seconds": CREDENTIAL_LIFETIME_SECONDS,
                            "rotate_before_seconds": CREDENTIAL_ROTATE_BEFORE_SECONDS, "port": 80}
        credentials_env: dict[str, str]
        if self.credentials == "container":
            ecs = ContainerCredentialsEndpoint(self.book, host=ECS_CREDENTIALS_IP, **endpoint_options)
            ecs.start()
            self.credential_endpoint: Any = ecs
            credentials_env = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ecs.path}
        else:
            imds = InstanceMetadataEndpoint(self.book, host=IMDS_IP, **endpoint_options)
            imds.start()
            self.credential_endpoint = imds
            credentials_env = {}  # botocore's default IMDS address is 169.254.169.254: nothing to set
        self.cleanups.append(self.credential_endpoint.stop)

        # -- the strict Nova Sonic emulator, in its own thread and loop (this process owns its script)
        from emulators.nova_sonic import make_test_certificates

        certs = make_test_certificates(str(self.workdir / "nova-tls"))
        self.guest_name = "Grace Hopper"
        self.emulator, notes = make_emulator(booking_script(self.guest_name), self.book,
                                             d.runtime_env.get("BEDROCK_REGION", d.region))
        report.notes.extend(notes)
        self.emulator_url = ""

        async def emulator_main(stop: asyncio.Event) -> None:
            async with self.emulator.serve(certs.cert_file, certs.key_file) as url:
                self.emulator_url = url
                emulator_thread.ready.set()
                await stop.wait()

        emulator_thread = LoopThread("nova-sonic-emulator", emulator_main)
        emulator_thread.start()
        self.cleanups.append(emulator_thread.stop)

        # -- Amazon Cognito (staffAuth=cognito): a strict user-pools endpoint on the edge address, with
        # a staff pool and user made the way an operator makes them (docs/staff-sign-in.md)
        cognito_env: dict[str, str] = {}
        cognito_auth = None
        if cognito_mode:
            cognito_auth, cognito_env = self._start_cognito()
            self.phase("Cognito stand-in: staff pool, group and user")

        # -- the edge: AppSync Events API (IAM publish, Lambda authorizer [+ Cognito]) and the ALB, in the edge
        # namespace. The authorizer runs in this process with the Lambda's environment from the program, its
        # secrets resolved the way the function resolves them from Secrets Manager.
        for name in ("STAFF_TOKEN", "STAFF_TOKEN_SECRET_ARN", "SESSION_SECRET_ARN", "STAFF_AUTH"):
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in d.authorizer_env.items() if not k.endswith("_SECRET_ARN")})
        os.environ.update({name.removesuffix("_ARN"): self.secret_values[arn]
                           for name, arn in d.authorizer_env.items() if name.endswith("_SECRET_ARN")})
        if cognito_auth is not None:
            assert d.on_subscribe_code is not None
            handler_file = self.workdir / "on_subscribe.js"
            handler_file.write_text(d.on_subscribe_code)
            self.events_api = LocalEventsApi(self.book, namespaces=d.namespaces, region=d.region, cognito=cognito_auth,
                                             subscribe_modes=d.subscribe_modes, on_subscribe_code=handler_file)
        else:
            self.events_api = LocalEventsApi(self.book, namespaces=d.namespaces, region=d.region)
        import uvicorn

        async def edge_main(stop: asyncio.Event) -> None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((EDGE_IP, APPSYNC_PORT))
            server = uvicorn.Server(uvicorn.Config(self.events_api.app, log_level="warning", lifespan="off"))
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            alb = await asyncio.start_server(lambda r, w: _proxy(r, w, topo.runtime_ip, 8000), EDGE_IP, ALB_PORT)
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
            edge_thread.ready.set()
            await stop.wait()
            alb.close()
            await self.events_api.close()
            server.should_exit = True
            await serving

        edge_thread = LoopThread("edge", edge_main, ns=topo.edge_ns)
        edge_thread.start()
        self.cleanups.append(edge_thread.stop)
        appsync_http = f"http://{EDGE_IP}:{APPSYNC_PORT}/event"
        appsync_ws = f"ws://{EDGE_IP}:{APPSYNC_PORT}/event/realtime"

        # -- coturn, from the configuration the platform generates, with the container's own command
        self._start_coturn(secret["TURN_SECRET"])
        self.phase("credentials endpoint, Nova Sonic emulator, AppSync stand-in, ALB, coturn")

        # -- the stream-publisher Lambda, fed from the moto streams
        from runtime.events import stream_publisher

        os.environ.update({**d.publisher_env, "APPSYNC_ENDPOINT": appsync_http})
        os.environ.pop("APPSYNC_API_KEY", None)  # the deployed Lambda has none: it signs with its role
        pump = StreamPump(self.moto_url, d.region, [t["TableName"] for t in d.tables], d.stream_filters,
                          d.batch_size, d.max_retries, stream_publisher.handler)
        pump.start()
        self.cleanups.append(pump.stop)
        self.pump = pump

        # -- the runtime, as the task runs it
        overrides = {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.emulator_url,
            "NOVA_SONIC_CA_BUNDLE": certs.ca_file,
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto_url,
            "APPSYNC_ENDPOINT": appsync_http,
            "APPSYNC_REALTIME_ENDPOINT": appsync_ws,
            "TURN_URLS": f"turn:{EDGE_IP}:3478?transport=udp,turn:{EDGE_IP}:3479?transport=tcp",
            **cognito_env,
        }
        assert set(overrides) == set(OVERRIDES) - (set() if cognito_mode else set(COGNITO_OVERRIDES))
        report.overrides = {k: f"{v}  ({OVERRIDES[k]})" for k, v in overrides.items()}
        self.runtime = await self._start_runtime(overrides, credentials_env, secret)
        self.phase("runtime serving (readyz 200)")

        if cognito_mode:
            self.staff_token = self._staff_sign_in()
        async with self._staff_subscriber(appsync_ws) as staff_events:
            guest = await self._guest_call()
            self.phase("guest booked a table by voice")
            await self._verify_booking(guest, staff_events)
            self.phase("booking event, stored turns, signatures verified")
            if self.run_smoke:
                await self._smoke()
                self.phase("bin/smoke against the edge")
        self._verify_signatures()
        await self._verify_health()

    # ------------------------------------------------------------------
    def _start_cognito(self) -> tuple[Any, dict[str, str]]:
        """The staff pool as an operator has it after `pulumi up` + admin-create-user, on the local stand-in."""
        from emulators.appsync_events import CognitoAuth
        from emulators.cognito import LocalCognito

        d = self.deployment
        assert d.cognito_config is not None
        env = d.runtime_env
        # On the public edge address (a public AWS endpoint): the runtime fetches the pool's keys from it, the
        # AppSync stand-in in the edge namespace too, and bin/smoke's operator in the guest's network signs in.
        cognito = LocalCognito(host=EDGE_IP)
        with entered(self.topology.edge_ns):
            cognito.__enter__()
        self.cleanups.append(lambda: cognito.__exit__(None, None, None))
        mfa = d.staff_mfa or "OFF"
        assert mfa in ("OFF", "OPTIONAL", "ON"), mfa
        pool = cognito.create_staff_pool(mfa=mfa, group=env["COGNITO_STAFF_GROUP"])  # type: ignore[arg-type]
        self.staff_password = "Rehearsal-" + secrets.token_urlsafe(12) + "9!"
        cognito.add_user(pool, STAFF_USER, self.staff_password, groups=(pool.group,))
        self.cognito, self.staff_pool = cognito, pool
        # The program's provider regex is `^<client id>$` for its (mock) client; the same shape for the stand-in's.
        program_client = env["COGNITO_CLIENT_ID"]
        assert d.cognito_config["appIdClientRegex"] == f"^{re.escape(program_client)}$", d.cognito_config
        assert d.cognito_config["userPoolId"] == env["COGNITO_USER_POOL_ID"], "one pool for AppSync and the runtime"
        auth = CognitoAuth(user_pool_id=pool.pool_id, region=pool.region,
                           app_id_client_regex=f"^{re.escape(pool.client_id)}$", jwks_url=cognito.jwks_url(pool))
        return auth, {"COGNITO_USER_POOL_ID": pool.pool_id, "COGNITO_CLIENT_ID": pool.client_id,
                      "COGNITO_REGION": pool.region, "COGNITO_ENDPOINT_URL": cognito.url}

    def _staff_sign_in(self) -> str:
        """The staff member's first sign-in, as in the web app: SRP, then (MFA required) an authenticator app
        set up with the pool's TOTP secret; the access token is what staff pages send."""
        from cryptography.hazmat.primitives.hashes import SHA1
        from cryptography.hazmat.primitives.twofactor.totp import TOTP
        from pycognito.aws_srp import AWSSRP  # an independent client implementation of Cognito's SRP

        pool, idp = self.staff_pool, self.cognito.client()
        srp = AWSSRP(STAFF_USER, self.staff_password, pool.pool_id, pool.client_id, client=idp)
        started = idp.initiate_auth(AuthFlow="USER_SRP_AUTH", AuthParameters=srp.get_auth_params(),
                                    ClientId=pool.client_id)
        step = idp.respond_to_auth_challenge(
            ClientId=pool.client_id, ChallengeName="PASSWORD_VERIFIER",
            ChallengeResponses=srp.process_challenge(started["ChallengeParameters"], srp.get_auth_params()))
        challenge = step.get("ChallengeName")
        if challenge == "MFA_SETUP":
            secret = idp.associate_software_token(Session=step["Session"])["SecretCode"]
            key = base64.b32decode(secret + "=" * (-len(secret) % 8))
            code = TOTP(key, 6, SHA1(), 30, enforce_key_length=False).generate(time.time()).decode()  # noqa: S303
            verified = idp.verify_software_token(Session=step["Session"], UserCode=code)
            step = idp.respond_to_auth_challenge(ClientId=pool.client_id, ChallengeName="MFA_SETUP",
                                                 Session=verified["Session"],
                                                 ChallengeResponses={"USERNAME": STAFF_USER})
        result = step.get("AuthenticationResult") or {}
        self.report.check("staff signed in to the user pool with SRP", bool(result.get("AccessToken")),
                          {"user": STAFF_USER, "mfa": self.deployment.staff_mfa, "challenge": challenge,
                           "token expires in": result.get("ExpiresIn")})
        if not result.get("AccessToken"):
            raise RuntimeError(f"staff sign-in did not finish: {step.get('ChallengeName')}")
        return str(result["AccessToken"])

    def _create_tables(self) -> None:
        import boto3

        client = boto3.client("dynamodb", region_name=self.deployment.region, endpoint_url=self.moto_url)
        for args in self.deployment.tables:
            client.create_table(**args)
            client.get_waiter("table_exists").wait(TableName=args["TableName"], WaiterConfig={"Delay": 0.2})
            attribute = self.deployment.ttl.get(args["TableName"])
            if attribute:
                client.update_time_to_live(TableName=args["TableName"], TimeToLiveSpecification={
                    "Enabled": True, "AttributeName": attribute})

    def _start_coturn(self, turn_secret: str) -> None:
        topo = self.topology
        for transport, conf in sorted(self.deployment.turn_confs.items()):
            # The container command verbatim, except the path of the file it writes (two processes share /tmp).
            command = self.deployment.turn_command.replace("/tmp/turnserver.conf",  # noqa: S108 - replaced
                                                           str(self.workdir / f"turnserver-{transport}.conf"))
            env = {"PATH": os.environ["PATH"], "TURN_SECRET": turn_secret,
                   "TURNSERVER_CONF_B64": base64.b64encode(conf.encode()).decode()}
            logfile = (self.workdir / f"coturn-{transport}.log").open("w")
            proc = subprocess.Popen([*topo.exec_in(topo.edge_ns), "sh", "-c", command], env=env,
                                    stdout=logfile, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            self.cleanups.append(lambda p=proc, f=logfile: (_terminate(p), f.close()))
            port = re.search(r"^listening-port=(\d+)$", conf, flags=re.MULTILINE)
            assert port is not None
            flag = "-uln" if transport == "udp" else "-tln"
            deadline = time.monotonic() + 10
            while f":{port.group(1)} " not in subprocess.run(
                    [*topo.exec_in(topo.edge_ns), "ss", flag], capture_output=True, text=True).stdout:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"coturn ({transport}) did not start: "
                                       f"{(self.workdir / f'coturn-{transport}.log').read_text()[-2000:]}")
                time.sleep(0.1)

    async def _start_runtime(self, overrides: dict[str, str], credentials_env: dict[str, str],
                             secret: dict[str, str]) -> subprocess.Popen[bytes]:
        d = self.deployment
        app_dir = self.workdir / "app"
        app_dir.mkdir()
        (app_dir / "var").mkdir()
        (app_dir / "webapp").symlink_to(ROOT / "webapp")
        image_env, cmd = image_environment_and_command(app_dir)
        # What a container starts with: the base image's PATH and HOME (an empty home: no profile files),
        # the image's ENV, the task definition's environment, the injected secrets.
        env = {"PATH": os.environ["PATH"], "HOME": str(app_dir), "LANG": "C.UTF-8", **image_env,
               **d.runtime_env, **secret, **overrides, **credentials_env}
        assert set(credentials_env) <= set(AGENT_INJECTED)
        leaked = [k for k in FORBIDDEN_IN_RUNTIME if k in env]
        assert not leaked, f"credentials leaked into the runtime environment: {leaked}"
        self.runtime_log = self.workdir / "runtime.log"
        logfile = self.runtime_log.open("wb")
        # Popen returns at once; the child lives for the whole rehearsal and is stopped with a signal.
        proc = subprocess.Popen(cmd, cwd=app_dir, env=env, stdout=logfile, stderr=subprocess.STDOUT,  # noqa: ASYNC220
                                preexec_fn=_die_with_parent)
        self.cleanups.append(lambda: (_terminate(proc, grace=20), logfile.close()))
        base = f"http://{self.topology.runtime_ip}:{env['PORT']}"
        import httpx

        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the runtime exited ({proc.returncode}):\n{self._runtime_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base}/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the runtime was not ready within 60 s:\n{self._runtime_tail()}")
                await asyncio.sleep(0.25)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")  # noqa: ASYNC240 - procfs, instant
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        self.report.check("no AWS keys or profile files in the runtime's environment",
                          not names & set(FORBIDDEN_IN_RUNTIME) and not (app_dir / ".aws").exists(),
                          sorted(n for n in names if n.startswith("AWS_")))
        return proc

    def _runtime_tail(self, lines: int = 40) -> str:
        return "\n".join(self.runtime_log.read_text(errors="replace").splitlines()[-lines:])

    @contextlib.asynccontextmanager
    async def _staff_subscriber(self, url: str) -> Any:
        """A staff browser on the AppSync WebSocket, subscribed to every booking and conversation."""
        from websockets.asyncio.client import connect

        from runtime.events.protocol import subprotocols_for

        # AppSync's user-pool mode takes the bare JWT; the Lambda authorizer gets the header value as sent.
        value = self.staff_token if self.deployment.cognito_config is not None else f"Bearer {self.staff_token}"
        auth = {"Authorization": value, "host": f"{EDGE_IP}:{APPSYNC_PORT}"}
        events: list[dict[str, Any]] = []
        async with connect(url, subprotocols=subprotocols_for(auth), proxy=None, open_timeout=10) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "connection_init"}))
            for sub_id, channel in (("bookings", "/restaurant-booking/*"), ("conversations", "/conversations/*")):
                await ws.send(json.dumps({"type": "subscribe", "id": sub_id, "channel": channel}))
            acks = 0
            while acks < 2:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("type") == "subscribe_success":
                    acks += 1
                elif frame.get("type") in ("subscribe_error", "connection_error", "error"):
                    raise RuntimeError(f"staff subscription refused: {frame}")

            async def read() -> None:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("type") == "data":
                        events.append(json.loads(frame["event"]))

            reader = asyncio.create_task(read())
            try:
                yield events
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _guest_call(self) -> dict[str, Any]:
        topo = self.topology
        env = {"PATH": os.environ["PATH"], "HOME": str(self.workdir), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
        _, out, err = await _run_bounded([*topo.exec_in(topo.client_ns), sys.executable, "-m", "tools.rehearsal_guest",
                                          f"http://{EDGE_IP}:{ALB_PORT}", "30"], limit_seconds=90, cwd=ROOT, env=env)
        lines = out.decode().strip().splitlines()
        guest: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": err.decode()[-2000:]}
        self.report.check("guest call relayed through coturn only",
                          guest.get("policy") == "relay" and guest.get("local_candidate") == "relay"
                          and set(guest.get("offer_candidates") or ["?"]) == {"relay"},
                          {k: guest.get(k) for k in ("policy", "local_candidate", "offer_candidates",
                                                     "connect_seconds")})
        booking = guest.get("booking") or {}
        self.report.check("guest booked a table by voice", booking.get("status") == "confirmed" and
                          booking.get("name") == self.guest_name,
                          {"booking_id": booking.get("booking_id"), "error": guest.get("error"),
                           "seconds_after_speaking": guest.get("booking_seconds_after_speaking"),
                           "loud_frames": guest.get("loud_frames")})
        return guest

    async def _verify_booking(self, guest: dict[str, Any], staff_events: list[dict[str, Any]]) -> None:
        booking_id = (guest.get("booking") or {}).get("booking_id")
        session_id = guest.get("sessionId")
        deadline = time.monotonic() + 15

        def seen() -> tuple[bool, bool]:
            created = any(e.get("type") == "booking.created" and e.get("booking", {}).get("booking_id") == booking_id
                          for e in staff_events)
            turns = any(e.get("type") == "turn.added" and e.get("turn", {}).get("session_id") == session_id
                        for e in staff_events)
            return created, turns

        while seen() != (True, True) and time.monotonic() < deadline:  # noqa: ASYNC110 - another task fills the list
            await asyncio.sleep(0.1)
        created, turns_seen = seen()
        self.report.check("staff received booking.created from the stream publisher over AppSync", created,
                          {"events": len(staff_events), "lambda invocations": self.pump.invocations,
                           "pump errors": self.pump.errors[-3:]})
        self.report.check("staff received the conversation's turns", turns_seen)

        import boto3

        from runtime.stores.dynamodb import DynamoDBStore

        env = self.deployment.runtime_env
        store = DynamoDBStore(booking_table=env["BOOKING_TABLE"], chat_history_table=env["CHAT_HISTORY_TABLE"],
                              session_table=env["SESSION_TABLE"], client=boto3.client(
                                  "dynamodb", region_name=self.deployment.region, endpoint_url=self.moto_url))
        await store.start()
        try:
            stored = await store.bookings.get(booking_id) if booking_id else None
            turns = await store.conversations.list(session_id) if session_id else []
            record = await store.sessions.get(session_id) if session_id else None
        finally:
            await store.close()
        self.report.check("the booking is in the DynamoDB bookings table",
                          stored is not None and stored.status == "confirmed" and stored.session_id == session_id)
        roles = [t.role for t in turns]
        self.report.check("the turns are in the DynamoDB conversations table",
                          "USER" in roles and "ASSISTANT" in roles and any(
                              booking_id and booking_id in t.text for t in turns),
                          [(t.seq, t.role, t.text[:60]) for t in turns])
        self.report.check("the session record names the Nova Sonic engine",
                          record is not None and record.engine == "nova-sonic",
                          None if record is None else {"status": record.status, "engine": record.engine})

        issued = {c.access_key_id for c in self.book.issued()}
        api_log = self.events_api.log
        self.report.check("the Lambda published with SigV4 from its role (no API key)",
                          api_log.accepted > 0 and all(k in issued for k in api_log.keys) and not api_log.refused,
                          {"accepted": api_log.accepted, "refused": api_log.refused})

    def _verify_signatures(self) -> None:
        """Every Bedrock stream (the guest's and the smoke call's) was opened with served credentials."""
        served = list(self.credential_endpoint.served_keys)
        keys: list[str | None] = []
        verified_events = 0
        for stream in self.emulator.streams:
            key = getattr(stream, "access_key_id", None)  # set by the strict emulator once it verified
            if key is None:
                match = re.search(r"Credential=([A-Z0-9]+)/", stream.headers.get("authorization", ""))
                key = match.group(1) if match else None
            keys.append(key)
            verified_events += int(getattr(stream, "verified_events", 0))
        self.report.check("the runtime signed Bedrock streams with served credentials only",
                          bool(keys) and all(k in served for k in keys),
                          {"streams": len(keys), "distinct keys": len(set(keys)), "served keys": len(served),
                           "endpoint fetches": self.credential_endpoint.fetches,
                           "event signatures verified": verified_events,
                           "stream errors": [s.error for s in self.emulator.streams if s.error]})

    async def _smoke(self) -> None:
        topo = self.topology
        # An operator's shell: their PATH and HOME (bin/smoke finds Python and the virtualenv), the staff token.
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(self.workdir)), "LANG": "C.UTF-8",
               "STAFF_TOKEN": self.staff_token,
               **({"PYENV_ROOT": os.environ["PYENV_ROOT"]} if "PYENV_ROOT" in os.environ else {})}
        code, out, err = await _run_bounded([*topo.exec_in(topo.client_ns), str(ROOT / "bin" / "smoke"),
                                             f"http://{EDGE_IP}:{ALB_PORT}", "--listen", "25"],
                                            limit_seconds=120, cwd=ROOT, env=env)
        text = (out + err).decode(errors="replace")
        print(textwrap_indent(text), flush=True)
        self.report.check("bin/smoke passes against the edge", code == 0 and "smoke OK" in text
                          and "received booking.created" in text, text.strip().splitlines()[-1:] or None)

    async def _verify_health(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=5) as http:
            ready = await http.get(f"http://{self.topology.runtime_ip}:8000/readyz")
        log_text = self.runtime_log.read_text(errors="replace")
        self.report.check("the runtime is still ready, nothing logged as never retrieved",
                          ready.status_code == 200 and self.runtime.poll() is None
                          and "never retrieved" not in log_text,
                          {"readyz": ready.status_code, "tracebacks": log_text.count("Traceback")})


def textwrap_indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.rstrip().splitlines())


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the rehearsal dies, even by SIGKILL (prctl PR_SET_PDEATHSIG).

    Without it a killed rehearsal would leave the runtime and coturn running inside a namespace nobody can
    reach any more.
    """
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


async def _run_bounded(argv: list[str], *, limit_seconds: float, **options: Any) -> tuple[int, bytes, bytes]:
    """Run a child to completion within ``limit_seconds``; kill it (and say so) when it overruns."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, **options)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_seconds)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        err += f"\n(killed after {limit_seconds:.0f} s)".encode()
    return proc.returncode if proc.returncode is not None else -9, out, err


def _terminate(proc: subprocess.Popen[Any], grace: float = 5) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/rehearse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="prod", choices=["dev", "prod"])
    parser.add_argument("--compute", default="ecs", choices=["ecs", "ec2"])
    parser.add_argument("--credentials", choices=["container", "imds"],
                        help="default: container for ecs, imds for ec2")
    parser.add_argument("--no-smoke", action="store_true", help="skip bin/smoke (the voice booking still runs)")
    parser.add_argument("--report", help="also write the JSON report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"rehearsal impossible here: {reason}", file=sys.stderr)
        return 2
    # SIGTERM (a test's timeout, Ctrl-C in a wrapper) unwinds normally: children stopped, namespaces deleted.
    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)  # the Lambda's and moto's INFO lines would drown the report
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto server's access log
    credentials = args.credentials or ("container" if args.compute == "ecs" else "imds")
    workdir = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    rehearsal = Rehearsal(stack=args.stack, compute=args.compute, credentials=credentials,
                          smoke=not args.no_smoke, workdir=workdir)
    error: str | None = None
    try:
        report = rehearsal.run()
    except (Exception, KeyboardInterrupt) as exc:
        report = rehearsal.report
        error = f"{type(exc).__name__}: {exc}"
        report.check("the rehearsal ran to the end", False, error)
    summary = report.as_dict()
    summary["workdir"] = str(workdir)
    if args.report:
        Path(args.report).write_text(json.dumps(summary, indent=2, default=str))
    if not report.ok and hasattr(rehearsal, "runtime_log") and rehearsal.runtime_log.exists():
        print("runtime log (tail):\n" + textwrap_indent(rehearsal._runtime_tail(60)), file=sys.stderr)
    print(f"rehearsal {'OK' if report.ok else 'FAILED'} in {report.wall_seconds:.1f} s "
          f"({args.stack}/{args.compute}, {credentials} credentials)", flush=True)
    if not args.keep and report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
