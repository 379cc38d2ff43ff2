"""The fixes for issue 12's findings 1-13, one test (or a few) per finding, on the real program's recording.

Where a fix is behaviour rather than shape (coturn's one-protocol processes, the EC2 drain watcher, the
coturn IMDS block, ECS task protection across workers), the behaviour itself runs: real coturn, the rendered
shell scripts with stand-in tools in a private mount namespace, a local HTTP server playing the ECS agent
as strictly as its documentation states, and real worker processes sharing a Prometheus multiprocess dir.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import platform_invariants as invariants
import pytest
from concierge_platform import config as platform_config
from concierge_platform.compute_ec2 import RESOLVE_AMI, render_drain_script, render_imds_block
from concierge_platform.coturn import deployed_confs, render_turnserver_conf
from pulumi_harness import Recorded, Run, cached_run, run_program
from test_platform_wiring import runtime_environment

SG = "aws:ec2/securityGroup:SecurityGroup"
LISTENER = "aws:lb/listener:Listener"
TG = "aws:lb/targetGroup:TargetGroup"
SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
HAS_ROOT_NS = shutil.which("unshare") is not None and os.geteuid() == 0


def _error_of(stack: str, overrides: dict[str, str | None]) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the operator reads the message
        run_program(stack, overrides)  # type: ignore[arg-type]
    return str(info.value)


def _containers(run: Run, task: str) -> list[dict[str, Any]]:
    return json.loads(run.one(TASK, task).inputs["containerDefinitions"])


def _policy_of(run: Run, role: Recorded) -> list[dict[str, Any]]:
    policy = next(p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.id)
    return json.loads(policy.inputs["policy"])["Statement"]


# --- 1: security group names ---------------------------------------------------------------------------

def test_security_group_names_never_start_with_sg(deployed: Run) -> None:
    groups = deployed.of_type(SG)
    assert len(groups) == 4
    for sg in groups:
        assert not sg.name.startswith("sg-"), f"logical name {sg.name} would auto-name to sg-..."
        prefix = sg.inputs["namePrefix"]
        assert prefix.startswith(f"concierge-{deployed.stack}-")
        assert not prefix.lower().startswith("sg-")
        assert not str(sg.physical_name or sg.state.get("name")).lower().startswith("sg-")


# --- 2: one protocol per container port, end to end -------------------------------------------------------

def test_turn_task_maps_each_container_port_once(ecs_run: Run) -> None:
    containers = _containers(ecs_run, "ecs-turn-task")
    mappings = [(c["name"], m["containerPort"], m["protocol"]) for c in containers for m in c["portMappings"]]
    assert sorted(mappings) == [("coturn-tcp", 3479, "tcp"), ("coturn-udp", 3478, "udp")]
    ports = [p for _, p, _ in mappings]
    assert len(ports) == len(set(ports)), "a container port in two mappings (ECS refuses it)"
    service = ecs_run.one(SERVICE, "ecs-turn")
    for lb in service.inputs["loadBalancers"]:
        tg = ecs_run.by_arn(lb["targetGroupArn"])
        (mapping,) = [m for n, p, m in mappings if n == lb["containerName"] and p == lb["containerPort"]]
        assert tg.inputs["protocol"].lower() == mapping
        assert tg.inputs["port"] == lb["containerPort"]


def test_nlb_listeners_one_protocol_per_port(deployed: Run) -> None:
    nlb = deployed.one("aws:lb/loadBalancer:LoadBalancer", "edge-nlb")
    listeners = [lst for lst in deployed.of_type(LISTENER) if lst.inputs["loadBalancerArn"] == nlb.arn]
    got = {}
    for lst in listeners:
        (action,) = lst.inputs["defaultActions"]
        tg = deployed.by_arn(action["targetGroupArn"])
        got[(lst.inputs["protocol"], lst.inputs["port"])] = (tg.inputs["protocol"], tg.inputs["port"])
    assert got == {("UDP", 3478): ("UDP", 3478), ("TCP", 3479): ("TCP", 3479), ("TLS", 443): ("TCP", 3479)}
    assert deployed.outputs["turnUrls"][:2] == [f"turn:turn.{deployed.config['nova-concierge:domainName']}:3478"
                                                "?transport=udp",
                                                f"turn:turn.{deployed.config['nova-concierge:domainName']}:3479"
                                                "?transport=tcp"]


def test_deployed_coturn_configs_split_protocols_and_relay_ranges() -> None:
    confs = {t: c.splitlines() for t, c in deployed_confs("turn.example.com", ["10.40.128.0/20"]).items()}
    assert "listening-port=3478" in confs["udp"]
    assert "no-tcp" in confs["udp"]
    assert "no-udp" not in confs["udp"]
    assert "listening-port=3479" in confs["tcp"]
    assert "no-udp" in confs["tcp"]
    assert "no-tcp" not in confs["tcp"]

    def relay(lines: list[str]) -> range:
        values = dict(line.split("=", 1) for line in lines if line.startswith(("min-port", "max-port")))
        return range(int(values["min-port"]), int(values["max-port"]) + 1)

    assert not set(relay(confs["udp"])) & set(relay(confs["tcp"])), "the two processes share a namespace"
    with pytest.raises(ValueError, match="transports"):
        render_turnserver_conf("r", ["10.0.0.0/24"], transports=("sctp",))


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stun_binding(port: int, attempts: int = 4) -> bool:
    """A STUN Binding request over UDP; True when coturn answers a success."""
    from aioice import stun

    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5 if attempts > 1 else 0.1)
        for _ in range(attempts):
            s.sendto(bytes(request), ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(2048)
            except (TimeoutError, ConnectionRefusedError):
                continue
            return stun.parse_message(data).message_class == stun.Class.RESPONSE
    return False


@pytest.mark.skipif(shutil.which("turnserver") is None, reason="needs Debian's coturn")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_real_coturn_serves_only_its_protocol(tmp_path: Path, transport: str) -> None:
    port = _free_port(socket.SOCK_STREAM)
    relay = 40000 + port % 10000
    conf = render_turnserver_conf("turn.test", ["198.51.100.0/24"], listening_port=port, listening_ip="127.0.0.1",
                                  min_port=relay, max_port=relay + 10, transports=(transport,))
    conf_file = tmp_path / "turnserver.conf"
    conf_file.write_text(conf + f"static-auth-secret=s\npidfile={tmp_path}/turn.pid\n")
    proc = subprocess.Popen(["turnserver", "-c", str(conf_file)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        udp_ok = tcp_ok = False
        while time.monotonic() < deadline:
            assert proc.poll() is None, "coturn exited"
            with socket.socket() as probe:
                tcp_ok = probe.connect_ex(("127.0.0.1", port)) == 0
            udp_ok = not tcp_ok and _stun_binding(port, attempts=1)
            if tcp_ok or udp_ok:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # both listeners come up together; re-check the one that must stay closed
        with socket.socket() as probe:
            tcp_ok = probe.connect_ex(("127.0.0.1", port)) == 0
        udp_ok = _stun_binding(port)
        assert (udp_ok, tcp_ok) == ((True, False) if transport == "udp" else (False, True))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- 3: creation order --------------------------------------------------------------------------------

def _listeners_of(run: Run, target_group_arn: str) -> list[Recorded]:
    """Listeners and listener rules (behind CloudFront the origin rule forwards) sending to the target group."""
    return [lst for lst in [*run.of_type(LISTENER), *run.of_type("aws:lb/listenerRule:ListenerRule")]
            if any(a.get("targetGroupArn") == target_group_arn
                   for a in lst.inputs.get("defaultActions", lst.inputs.get("actions", [])))]


def listener_order_violations(run: Run) -> list[str]:
    if run.config["nova-concierge:compute"] == "ecs":
        consumers = [(svc, [lb["targetGroupArn"] for lb in svc.inputs["loadBalancers"]])
                     for svc in run.of_type(SERVICE)]
    else:
        group = run.one("aws:autoscaling/group:Group")
        consumers = [(group, group.inputs["targetGroupArns"])]
    bad = []
    for consumer, tg_arns in consumers:
        before = run.created_after(consumer)
        for arn in tg_arns:
            listeners = _listeners_of(run, arn)
            if not listeners:
                bad.append(f"target group {arn} has no listener")
            bad += [f"{consumer.name} may be created before listener {lst.name}" for lst in listeners
                    if lst.urn not in before]
    return bad


def test_services_and_group_wait_for_their_listeners(deployed: Run) -> None:
    assert listener_order_violations(deployed) == []

    def drop_listener_dependencies(r: Run) -> None:
        listeners = {lst.urn for lst in r.of_type(LISTENER)}
        for res in [*r.of_type(SERVICE), *r.of_type("aws:autoscaling/group:Group")]:
            res.dependencies -= listeners

    assert listener_order_violations(deployed.mutated(drop_listener_dependencies))  # the check can fail


def test_tls_listeners_wait_for_certificate_validation(deployed: Run) -> None:
    for lst in deployed.of_type(LISTENER):
        if lst.inputs["protocol"] in {"HTTPS", "TLS"}:
            validations = [r.urn for r in deployed.of_type("aws:acm/certificateValidation:CertificateValidation")]
            assert set(validations) & deployed.created_after(lst), lst.name


# --- 4: keep-alive above the ALB idle timeout, from one place ---------------------------------------------

def test_runtime_keep_alive_exceeds_alb_idle_timeout(deployed: Run) -> None:
    from runtime.settings import Settings

    idle = deployed.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb").inputs["idleTimeout"]
    env, _ = runtime_environment(deployed)
    assert int(env["KEEP_ALIVE_SECONDS"]) > idle
    assert Settings(keep_alive_seconds=env["KEEP_ALIVE_SECONDS"]).keep_alive_seconds > idle
    assert Settings().keep_alive_seconds > platform_config.ALB_IDLE_TIMEOUT_S  # standalone default too


def test_idle_timeout_config_moves_both_sides() -> None:
    run = run_program("dev", {"albIdleTimeoutSeconds": "900"})
    assert run.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb").inputs["idleTimeout"] == 900
    assert runtime_environment(run)[0]["KEEP_ALIVE_SECONDS"] == "915"
    assert "albIdleTimeoutSeconds must be within 60..4000" in _error_of("dev", {"albIdleTimeoutSeconds": "5000"})


def test_serve_passes_keep_alive_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.__main__ as entry

    seen: dict[str, Any] = {}
    monkeypatch.setattr(entry.uvicorn, "run", lambda *a, **kw: seen.update(kw))
    started: list[Any] = []
    monkeypatch.setattr(entry.task_protection, "start", lambda uri, **kw: started.append((uri, kw)))
    monkeypatch.setattr(entry, "configure_logging", lambda level: None)  # keep the session's logging as it is
    # _serve writes these into os.environ for its workers; registering them here restores them afterwards.
    for key in ("ECS_AGENT_URI", "PROMETHEUS_MULTIPROC_DIR", "SESSION_SECRET", "STAFF_TOKEN", "RUNTIME_JSON_LOGS",
                "SPEECH_WARM_UP", "WORKERS"):
        monkeypatch.setenv(key, "placeholder")  # records the original value (or its absence) for undo
        monkeypatch.delenv(key)
    monkeypatch.setenv("KEEP_ALIVE_SECONDS", "3700")
    monkeypatch.setenv("SESSION_SECRET", "x" * 32)
    monkeypatch.setenv("STAFF_TOKEN", "y" * 24)
    assert entry.main(["serve", "--workers", "1"]) == 0
    assert seen["timeout_keep_alive"] == 3700
    assert started == [(None, {"expires_minutes": 60, "poll_seconds": 1.0})]  # standalone: no agent URI


# --- 5: instance refresh launches first; the AMI does not move with `pulumi up` -----------------------

def test_instance_refresh_launches_before_terminating(ec2_run: Run) -> None:
    prefs = ec2_run.one("aws:autoscaling/group:Group").inputs["instanceRefresh"]["preferences"]
    assert prefs["minHealthyPercentage"] == 100
    assert 100 < prefs["maxHealthyPercentage"] <= 200


def test_ami_resolved_at_launch_or_pinned(ec2_run: Run) -> None:
    lt = ec2_run.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.inputs["imageId"] == RESOLVE_AMI
    assert not [c for c in ec2_run.calls if c.token == "aws:ssm/getParameter:getParameter"]
    pinned = run_program("dev", {"amiId": "ami-0fedcba9876543210"})
    assert pinned.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["imageId"] == "ami-0fedcba9876543210"
    assert "amiId must look like" in _error_of("dev", {"amiId": "latest"})


# --- 6: calls survive scale-in: ECS task protection, EC2 lifecycle hook + drain watcher -----------------

def test_ecs_task_role_may_protect_only_its_cluster_tasks(ecs_run: Run) -> None:
    task = ecs_run.one(TASK, "ecs-runtime-task")
    role = ecs_run.by_arn(task.inputs["taskRoleArn"])
    (stmt,) = [s for s in _policy_of(ecs_run, role) if s.get("Sid") == "ScaleInProtection"]
    assert stmt["Action"] == ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    assert stmt["Resource"] == [f"arn:aws:ecs:us-east-1:123456789012:task/concierge-{ecs_run.stack}/*"]
    env, _ = runtime_environment(ecs_run)
    assert 1 <= int(env["TASK_PROTECTION_MINUTES"]) <= 2880
    (container,) = _containers(ecs_run, "ecs-runtime-task")
    assert container["stopTimeout"] == 120


def test_asg_termination_hook_and_host_permission(ec2_run: Run) -> None:
    group = ec2_run.one("aws:autoscaling/group:Group")
    hook = ec2_run.one("aws:autoscaling/lifecycleHook:LifecycleHook")
    assert hook.inputs["autoscalingGroupName"] == group.state["name"]
    assert hook.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook.inputs["defaultResult"] == "CONTINUE"
    assert 30 <= hook.inputs["heartbeatTimeout"] <= 7200
    profile = ec2_run.one("aws:iam/instanceProfile:InstanceProfile")
    role = next(r for r in ec2_run.of_type(ROLE) if r.id == profile.inputs["role"] or
                r.state.get("name") == profile.inputs["role"])
    (stmt,) = [s for s in _policy_of(ec2_run, role) if s.get("Sid") == "DrainLifecycleHook"]
    assert stmt["Action"] == ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
    assert stmt["Resource"] == [f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:"
                                f"autoScalingGroupName/{group.state['name']}"]
    script = invariants.user_data(ec2_run)
    assert f"--lifecycle-hook-name {hook.inputs['name']}" in script
    assert "concierge-drain.service" in script.split("systemctl enable --now", 1)[1]


DRAIN_STUB = """#!/bin/bash
name=$(basename "$0")
line=$name; for a in "$@"; do line+=$'\\x1f'"$a"; done
printf '%s\\n' "$line" >> "$STUB_DIR/calls.log"
if [ "$name" = curl ]; then
  url=${@: -1}
  case "$url" in
    */api/token) echo token ;;
    */autoscaling/target-lifecycle-state)
      n=$(cat "$STUB_DIR/polls" 2>/dev/null || echo 0); echo $((n + 1)) > "$STUB_DIR/polls"
      if [ "$n" -ge 2 ]; then echo Terminated; else echo InService; fi ;;
    */instance-id) echo i-0123456789abcdef0 ;;
    */metrics)
      [ -f "$STUB_DIR/down" ] && exit 7
      left=$(cat "$STUB_DIR/calls")
      printf '# HELP voice_sessions_active x\\nvoice_sessions_active{transport="webrtc"} %s.0\\n' "$left"
      printf 'voice_sessions_active{transport="websocket"} 0.0\\n'
      [ "$left" -gt 0 ] && [ ! -f "$STUB_DIR/stuck" ] && echo $((left - 1)) > "$STUB_DIR/calls" ;;
  esac
fi
"""


def _run_drain(tmp_path: Path, *, calls: int, drain_seconds: int, stuck: bool = False, down: bool = False
               ) -> list[list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("curl", "aws", "sleep"):
        (stubs / tool).write_text(DRAIN_STUB if tool != "sleep" else "#!/bin/bash\nexec /bin/sleep 0.01\n")
        (stubs / tool).chmod(0o755)
    (tmp_path / "calls").write_text(f"{calls}\n")
    if stuck:
        (tmp_path / "stuck").touch()
    if down:
        (tmp_path / "down").touch()
    script = tmp_path / "concierge-drain"
    script.write_text(render_drain_script(region="us-east-1", group_name="concierge-dev-hosts",
                                          hook_name="concierge-dev-drain-calls", drain_seconds=drain_seconds,
                                          poll_seconds=1, heartbeat_every=0))
    result = subprocess.run(["bash", str(script)], env={"PATH": f"{stubs}:/usr/bin:/bin", "STUB_DIR": str(tmp_path)},
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split("\x1f") for line in (tmp_path / "calls.log").read_text().splitlines()]


HOOK_ARGS = ["--region", "us-east-1", "--auto-scaling-group-name", "concierge-dev-hosts",
             "--lifecycle-hook-name", "concierge-dev-drain-calls", "--instance-id", "i-0123456789abcdef0"]


def test_drain_waits_for_calls_then_completes(tmp_path: Path) -> None:
    log = _run_drain(tmp_path, calls=3, drain_seconds=60)
    aws = [c for c in log if c[0] == "aws"]
    metrics = [c for c in log if c[0] == "curl" and c[-1].endswith("/metrics")]
    assert aws[-1] == ["aws", "autoscaling", "complete-lifecycle-action", *HOOK_ARGS,
                       "--lifecycle-action-result", "CONTINUE"]
    assert len([c for c in aws if c[2] == "complete-lifecycle-action"]) == 1
    assert ["aws", "autoscaling", "record-lifecycle-action-heartbeat", *HOOK_ARGS] in aws
    assert len(metrics) >= 4  # 3, 2, 1 calls seen, then 0
    first_metrics = log.index(metrics[0])
    assert any("target-lifecycle-state" in c[-1] for c in log[:first_metrics]), "waits for Terminated first"


def test_drain_is_bounded_when_a_call_never_ends(tmp_path: Path) -> None:
    started = time.monotonic()
    log = _run_drain(tmp_path, calls=1, drain_seconds=2, stuck=True)
    assert time.monotonic() - started < 15
    assert log[-1][:3] == ["aws", "autoscaling", "complete-lifecycle-action"]


def test_drain_treats_a_silent_runtime_as_idle(tmp_path: Path) -> None:
    log = _run_drain(tmp_path, calls=5, drain_seconds=60, down=True)
    assert not [c for c in log if c[:3] == ["aws", "autoscaling", "record-lifecycle-action-heartbeat"]]
    assert log[-1][:3] == ["aws", "autoscaling", "complete-lifecycle-action"]


AGENT_TASK_PATH = "/api/0123456789abcdef0123456789abcdef-1234567890"  # ECS_AGENT_URI carries the task's path


class _Agent(http.server.BaseHTTPRequestHandler):
    """The ECS agent's task-protection endpoint, as strict as its documentation: PUT only, JSON body with a
    boolean ProtectionEnabled and, if present, an integer ExpiresInMinutes within 1..2880."""

    log: ClassVar[list[dict[str, Any]]] = []
    delay = 0.0

    def do_PUT(self) -> None:
        time.sleep(self.delay)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = (self.path == f"{AGENT_TASK_PATH}/task-protection/v1/state"
              and self.headers["Content-Type"] == "application/json"
              and isinstance(body.get("ProtectionEnabled"), bool)
              and set(body) <= {"ProtectionEnabled", "ExpiresInMinutes"}
              and (type(body.get("ExpiresInMinutes", 1)) is int and 1 <= body.get("ExpiresInMinutes", 1) <= 2880))
        self.log.append(body)
        answer = ({"protection": {"ProtectionEnabled": body["ProtectionEnabled"]}} if ok
                  else {"error": {"Code": "InvalidParameterException"}})
        data = json.dumps(answer).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[str]:
    _Agent.log, _Agent.delay = [], 0.0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}{AGENT_TASK_PATH}"  # like ECS_AGENT_URI
    server.shutdown()
    server.server_close()


def test_protection_follows_calls(agent: str) -> None:
    from runtime.task_protection import AgentClient, ProtectionWatcher

    calls = [0]
    now = [0.0]
    watcher = ProtectionWatcher(AgentClient(agent), expires_minutes=10, poll_seconds=1, count=lambda: calls[0],
                                clock=lambda: now[0])
    watcher.step()
    assert _Agent.log == []  # idle and unprotected: nothing to say
    calls[0] = 2
    watcher.step()
    watcher.step()
    assert _Agent.log == [{"ProtectionEnabled": True, "ExpiresInMinutes": 10}]  # once, not every poll
    now[0] = 301.0  # half the expiry: renewed so a long call never outlives its protection
    watcher.step()
    assert len(_Agent.log) == 2
    calls[0] = 0
    watcher.step()
    assert _Agent.log[-1] == {"ProtectionEnabled": False}
    assert watcher.protected is False


def test_protection_retries_after_a_refusal_and_is_bounded(agent: str) -> None:
    from runtime.task_protection import AgentClient, ProtectionWatcher

    bad = ProtectionWatcher(AgentClient(agent), expires_minutes=5000, poll_seconds=1, count=lambda: 1)
    bad.step()
    assert bad.protected is False  # the strict agent refused ExpiresInMinutes 5000: not believed protected
    _Agent.delay = 1.5
    slow = AgentClient(agent, timeout=0.3)
    started = time.monotonic()
    assert slow.set(True, 10) is False
    assert time.monotonic() - started < 1.0
    assert AgentClient("http://127.0.0.1:9", timeout=0.3).set(True, 10) is False  # nothing listening


def test_protection_is_off_without_the_agent() -> None:
    from runtime import task_protection

    assert task_protection.start(None, expires_minutes=10, poll_seconds=1) is None
    assert task_protection.start("", expires_minutes=10, poll_seconds=1) is None


WORKER = """
import os, sys, time
from runtime import metrics
metrics.SESSIONS_ACTIVE.labels(transport=sys.argv[1]).inc(int(sys.argv[2]))
print("ready", flush=True)
time.sleep(60)
"""


def test_calls_are_counted_across_live_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.task_protection import calls_in_progress

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[2])}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, t, n], env=env, stdout=subprocess.PIPE, text=True)
               for t, n in (("webrtc", "2"), ("websocket", "1"))]
    try:
        for w in workers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == "ready"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        assert calls_in_progress() == 3
        workers[0].kill()
        workers[0].wait(timeout=10)
        assert calls_in_progress() == 1  # a dead worker's calls are over; its stale file is dropped
    finally:
        for w in workers:
            w.kill()
            w.wait(timeout=10)


# --- 7: services wait for a steady state ---------------------------------------------------------------

def test_services_wait_for_steady_state(ecs_run: Run) -> None:
    for svc in ecs_run.of_type(SERVICE):
        assert svc.inputs["waitForSteadyState"] is True, svc.name
        assert svc.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}


# --- 8: coturn from ECR, by digest ------------------------------------------------------------------------

def test_coturn_is_mirrored_into_ecr_and_deployed_by_digest(deployed: Run) -> None:
    build = deployed.one("docker-build:index:Image", "images-coturn-image")
    repo = deployed.one("aws:ecr/repository:Repository", "images-coturn")
    assert build.inputs["buildArgs"] == {"COTURN_IMAGE": "coturn/coturn:4.6.3"}
    assert build.inputs["dockerfile"]["location"].endswith("platform/coturn-image/Dockerfile")
    assert Path(build.inputs["dockerfile"]["location"]).is_file()
    ref = deployed.outputs["turnImageRef"]
    assert ref.startswith(repo.state["repositoryUrl"] + "@sha256:")
    if deployed.config["nova-concierge:compute"] == "ecs":
        assert {c["image"] for c in _containers(deployed, "ecs-turn-task")} == {ref}
    else:
        assert f"docker pull {ref}" in invariants.user_data(deployed)
    assert "docker.io" not in json.dumps([r.inputs for r in deployed.of_type(TASK)])


def test_turn_image_uri_must_be_pinned() -> None:
    assert "turnImageUri must be pinned by digest" in _error_of("prod", {"turnImageUri": "coturn/coturn:4.6.3"})
    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/coturn@sha256:" + "ef" * 32
    run = run_program("prod", {"turnImageUri": uri})
    assert [i.name for i in run.of_type("docker-build:index:Image")] == ["images-runtime-image"]
    assert {c["image"] for c in _containers(run, "ecs-turn-task")} == {uri}


# --- 9: coturn away from IMDS (EC2) and from the other secrets (ECS) --------------------------------------

def test_ec2_coturn_runs_as_its_uid_behind_the_imds_block(ec2_run: Run) -> None:
    script = invariants.user_data(ec2_run)
    for t in ("udp", "tcp"):
        run_line = next(line for line in script.splitlines() if f"/usr/local/bin/coturn-{t}-run" in line
                        and line.startswith("printf"))
        assert "--user 3478:3478" in run_line
        assert "--network host" in run_line
        unit = script.split(f"/etc/systemd/system/coturn-{t}.service <<'CONCIERGE_UNIT'\n", 1)[1].split(
            "CONCIERGE_UNIT", 1)[0]
        pre = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
        assert pre[-1] == "ExecStartPre=/usr/local/bin/coturn-imds-block"  # no coturn start without the rule
    lt = ec2_run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["metadataOptions"]
    assert (lt["httpTokens"], lt["httpPutResponseHopLimit"], lt["httpProtocolIpv6"]) == ("required", 1, "disabled")


@pytest.mark.skipif(not HAS_ROOT_NS, reason="needs util-linux unshare and root")
def test_imds_block_script_adds_the_rule_once(tmp_path: Path) -> None:
    stub = tmp_path / "iptables"
    # -C fails until the rule was inserted, like iptables with an empty OUTPUT chain.
    stub.write_text('#!/bin/bash\nprintf "%s\\n" "$*" >> "$LOG"\n'
                    'if [ "$2" = -C ]; then [ -f "$LOG.inserted" ]; exit; fi\ntouch "$LOG.inserted"\n')
    stub.chmod(0o755)
    script = tmp_path / "block"
    script.write_text(render_imds_block())
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LOG": str(tmp_path / "log")}
    for _ in range(2):
        subprocess.run(["bash", str(script)], env=env, check=True, timeout=30)
    lines = (tmp_path / "log").read_text().splitlines()
    rule = "OUTPUT -d 169.254.169.254/32 -m owner --uid-owner 3478 -j REJECT"
    assert lines == [f"-w -C {rule}", f"-w -I {rule}", f"-w -C {rule}"]


def test_ecs_coturn_execution_role_reads_only_the_turn_secret(ecs_run: Run) -> None:
    task = ecs_run.one(TASK, "ecs-turn-task")
    assert "taskRoleArn" not in task.inputs
    role = ecs_run.by_arn(task.inputs["executionRoleArn"])
    runtime_role = ecs_run.by_arn(ecs_run.one(TASK, "ecs-runtime-task").inputs["executionRoleArn"])
    assert role.urn != runtime_role.urn
    statements = {s["Sid"]: s for s in _policy_of(ecs_run, role)}
    turn_secret = next(s for s in ecs_run.of_type("aws:secretsmanager/secret:Secret")
                       if s.name == "secrets-turn-secret")
    assert statements["Secrets"]["Resource"] == [turn_secret.arn]
    assert statements["Logs"]["Resource"][0] == ecs_run.one("aws:cloudwatch/logGroup:LogGroup", "obs-turn-logs").arn
    assert not any(s["Action"][0].startswith(("dynamodb", "bedrock")) for s in statements.values())


# --- 10: ListStreams takes only "*" ---------------------------------------------------------------------

def test_list_streams_alone_on_star(deployed: Run) -> None:
    role = deployed.by_arn(deployed.one("aws:lambda/function:Function", "events-publisher").inputs["role"])
    statements = {s["Sid"]: s for s in _policy_of(deployed, role)}
    assert statements["ListStreams"] == {"Sid": "ListStreams", "Effect": "Allow", "Action": ["dynamodb:ListStreams"],
                                         "Resource": ["*"]}
    assert "dynamodb:ListStreams" not in statements["ReadTableStreams"]["Action"]
    assert "*" not in statements["ReadTableStreams"]["Resource"]


# --- 11: gateway endpoints ---------------------------------------------------------------------------------

def test_dynamodb_and_s3_gateway_endpoints_on_the_private_routes(deployed: Run) -> None:
    private_rt = deployed.one("aws:ec2/routeTable:RouteTable", "net-private-rt")
    endpoints = {e.inputs["serviceName"]: e for e in deployed.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert set(endpoints) == {"com.amazonaws.us-east-1.dynamodb", "com.amazonaws.us-east-1.s3"}
    for e in endpoints.values():
        assert e.inputs["vpcEndpointType"] == "Gateway"
        assert e.inputs["routeTableIds"] == [private_rt.id]


# --- 12: operations ----------------------------------------------------------------------------------------

def test_alb_access_logs_and_flow_logs_land_in_the_log_bucket(deployed: Run) -> None:
    bucket = deployed.one("aws:s3/bucket:Bucket", "logs-bucket")
    alb = deployed.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb")
    assert alb.inputs["accessLogs"] == {"bucket": bucket.state["bucket"], "enabled": True, "prefix": "alb"}
    policy_res = deployed.one("aws:s3/bucketPolicy:BucketPolicy", "logs-policy")
    assert policy_res.urn in deployed.created_after(alb), "ELB checks bucket access when logging is enabled"
    policy = {s["Sid"]: s for s in json.loads(policy_res.inputs["policy"])["Statement"]}
    assert policy["AlbAccessLogs"]["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}  # us-east-1
    assert policy["AlbAccessLogs"]["Resource"] == f"{bucket.arn}/alb/AWSLogs/123456789012/*"
    assert policy["FlowLogsWrite"]["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    flow = deployed.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["logDestination"] == f"{bucket.arn}/flow-logs/"
    assert flow.inputs["vpcId"] == deployed.one("aws:ec2/vpc:Vpc").id
    sse = deployed.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       "logs-sse")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    block = deployed.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "logs-public-access").inputs
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))


def test_waf_and_appsync_log(deployed: Run) -> None:
    logging_cfg = deployed.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    group = deployed.by_arn(logging_cfg.inputs["logDestinationConfigs"][0])
    assert group.inputs["name"].startswith("aws-waf-logs-")
    assert logging_cfg.inputs["resourceArn"] == deployed.one("aws:wafv2/webAcl:WebAcl").arn
    assert logging_cfg.inputs["redactedFields"] == [{"singleHeader": {"name": "authorization"}}]
    log_config = deployed.one("aws:appsync/api:Api").inputs["eventConfig"]["logConfig"]
    assert log_config["logLevel"] == "ERROR"
    role = deployed.by_arn(log_config["cloudwatchLogsRoleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "appsync.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_operational_alarms(deployed: Run) -> None:
    alarms = {a.inputs["name"].removeprefix(f"concierge-{deployed.stack}-"): a for a in deployed.of_type(ALARM)}
    nlb = deployed.one("aws:lb/loadBalancer:LoadBalancer", "edge-nlb")
    for t, tg_name in (("udp", "edge-turn-tg"), ("tcp", "edge-turns-tg")):
        a = alarms[f"turn-unhealthy-{t}"].inputs
        assert (a["namespace"], a["metricName"]) == ("AWS/NetworkELB", "HealthyHostCount")
        assert a["dimensions"] == {"LoadBalancer": nlb.state["arnSuffix"],
                                   "TargetGroup": deployed.one(TG, tg_name).state["arnSuffix"]}
        assert a["treatMissingData"] == "breaching"
    dlq = alarms["publisher-dlq"].inputs
    assert dlq["dimensions"] == {"QueueName": deployed.one("aws:sqs/queue:Queue").state["name"]}
    age = alarms["stream-iterator-age"].inputs
    assert (age["metricName"], age["dimensions"]) == (
        "IteratorAge", {"FunctionName": deployed.one("aws:lambda/function:Function", "events-publisher").state["name"]})
    topic = deployed.one("aws:sns/topic:Topic")
    key = deployed.one("aws:kms/key:Key")
    assert topic.inputs["kmsMasterKeyId"] == key.arn
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    cw = statements["CloudWatchAlarmsPublish"]
    assert cw["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert cw["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"
    for a in alarms.values():
        assert a.inputs["alarmActions"] == [topic.arn]


# --- 13: names, prefixes, Fargate sizes, trust, deletion protection, protect ------------------------------

NAME_PREFIXES = [
    ("concierge-dev", True), ("a", True), ("x" * 20, True), ("x" * 21, False), ("Concierge-dev", False),
    ("concierge-", False), ("concierge--dev", False), ("-concierge", False), ("9lives", False), ("con_cierge", False),
]


def test_name_prefix_rules() -> None:
    for prefix, ok in NAME_PREFIXES:
        if ok:
            assert platform_config.check_name_prefix(prefix) == prefix
        else:
            with pytest.raises(platform_config.ConfigError, match="namePrefix"):
                platform_config.check_name_prefix(prefix)


def test_default_prefix_from_an_awkward_stack_name() -> None:
    assert platform_config.default_name_prefix("Staging_EU") == "concierge-staging-eu"
    assert platform_config.default_name_prefix("a-long-stack-name") == "concierge-a-long-sta"
    assert platform_config.default_name_prefix("abcdefghij-x") == "concierge-abcdefghij"  # no trailing "-"
    assert "namePrefix" in _error_of("dev", {"namePrefix": "Bad-"})


FARGATE_PAIRS = [
    (256, 512, True), (256, 4096, False), (1024, 2048, True), (1024, 1536, False),
    (4096, 30720, True), (8192, 20480, True), (8192, 18432, False), (768, 2048, False), (16384, 122880, True),
]


def test_fargate_sizes_are_checked() -> None:
    for cpu, memory, ok in FARGATE_PAIRS:
        if ok:
            platform_config.check_fargate_size("taskCpu", cpu, "taskMemory", memory)
        else:
            with pytest.raises(platform_config.ConfigError, match="Fargate"):
                platform_config.check_fargate_size("taskCpu", cpu, "taskMemory", memory)
    assert "taskMemory=1536 is not a Fargate memory size for taskCpu=1024" in _error_of(
        "dev", {"compute": "ecs", "taskCpu": "1024", "taskMemory": "1536"})
    assert "turnCpu must be one of the Fargate CPU sizes" in _error_of("prod", {"turnCpu": "768"})
    run = run_program("dev", {"compute": "ecs", "taskCpu": "4096", "taskMemory": "8192"})
    assert run.one(TASK, "ecs-runtime-task").inputs["memory"] == "8192"
    assert run_program("dev", {"taskCpu": "768"}).one("aws:autoscaling/group:Group")  # ec2: not a Fargate size


def test_ecs_trust_policies_carry_source_conditions(ecs_run: Run) -> None:
    for role in ecs_run.of_type(ROLE):
        (stmt,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        if stmt["Principal"]["Service"] == "ecs-tasks.amazonaws.com":
            assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"},
                                         "ArnLike": {"aws:SourceArn": "arn:aws:ecs:us-east-1:123456789012:*"}}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_deletion_protection_and_protect_follow_the_stack(stack: str) -> None:
    run = cached_run(stack, compute="ecs")
    prod = stack == "prod"
    for lb in run.of_type("aws:lb/loadBalancer:LoadBalancer"):
        assert lb.inputs["enableDeletionProtection"] is prod
    stateful = [*run.of_type("aws:dynamodb/table:Table"), *run.of_type("aws:secretsmanager/secret:Secret"),
                *run.of_type("aws:ecr/repository:Repository"), run.one("aws:s3/bucket:Bucket", "logs-bucket"),
                run.one("aws:cognito/userPool:UserPool")]
    assert {r.protect for r in stateful} == {prod}
    assert run_program("dev", {"protect": "true"}).one("aws:dynamodb/table:Table", "data-bookings").protect is True


def test_fixed_names_never_replace_create_first(deployed: Run) -> None:
    """A fixed physical name is allowed only where the name is the only input that forces a replacement (so a
    replacement always brings a new name) or where the resource deletes before it replaces."""
    name_only_replace = {  # types whose replacement only a name change triggers (pulumi-aws 7 schema)
        "aws:ecs/cluster:Cluster", "aws:autoscaling/group:Group", "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/metricAlarm:MetricAlarm", "aws:cloudwatch/dashboard:Dashboard",
        "aws:lambda/function:Function", "aws:appsync/api:Api", "aws:autoscaling/lifecycleHook:LifecycleHook",
        "aws:ecr/repository:Repository", "aws:appsync/channelNamespace:ChannelNamespace",
        "aws:cloudfront/function:Function",
        # every input updates in place (aws_cloudfront_origin_access_control has no ForceNew argument)
        "aws:cloudfront/originAccessControl:OriginAccessControl",
        # Cognito does not require unique pool or client names, so a create-first replacement cannot collide;
        # a group's name is unique per pool and the group is replaced with its pool (user_pool_id forces new).
        "aws:cognito/userPool:UserPool", "aws:cognito/userPoolClient:UserPoolClient",
        "aws:cognito/userGroup:UserGroup",
    }
    offenders = []
    for r in deployed.resources:
        fixed = r.inputs.get("name") or r.inputs.get("dashboardName")
        if not fixed or r.typ.startswith(("concierge:", "pulumi:")) or r.typ in name_only_replace:
            continue
        if r.typ.startswith("aws:route53/") or r.typ.startswith("aws:appautoscaling/"):
            continue  # a record's name is its identity; scaling resources are named by their target
        if not r.delete_before_replace:
            offenders.append(f"{r.typ} {r.name} ({fixed})")
    assert offenders == []
    for svc in deployed.of_type(SERVICE):
        assert svc.delete_before_replace is True
    for q in deployed.of_type("aws:sqs/queue:Queue"):
        assert "name" not in q.inputs
        assert q.inputs["namePrefix"].endswith("-")


def test_user_data_fits_the_ec2_limit(ec2_run: Run) -> None:
    """Two coturn configs, the drain watcher and the IMDS block made the script longer; EC2 takes at most 16 KB
    of raw user data (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html)."""
    data = ec2_run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]
    raw = base64.b64decode(data)
    assert raw.decode().startswith("#!/bin/bash")
    assert len(raw) <= 16 * 1024


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_serve_with_two_workers_protects_while_any_worker_has_a_call(agent: str, tmp_path: Path) -> None:
    """The real ``python -m runtime serve --workers 2`` against the strict agent: two WebSocket calls, one
    hangs up (still protected), then the other (unprotected)."""
    import asyncio

    from websockets.asyncio.client import connect

    port = _free_port(socket.SOCK_STREAM)
    env = {**os.environ, "ECS_AGENT_URI": agent, "SESSION_SECRET": "s" * 32, "STAFF_TOKEN": "t" * 24,
           "DATA_DIR": str(tmp_path), "TASK_PROTECTION_MINUTES": "7", "SPEECH_ENGINE": "local", "STORE": "sqlite",
           "SPEECH_WARM_UP": "0", "SHUTDOWN_GRACE_SECONDS": "1"}  # the calls only need to exist, not to talk
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "serve", "--port", str(port), "--workers", "2"],
                            env=env, cwd=Path(__file__).parents[2], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        _wait_for(listening, 45, "the runtime to listen")

        async def calls() -> None:
            async with connect(f"ws://127.0.0.1:{port}/ws/audio", open_timeout=30) as first:
                assert json.loads(await first.recv())["type"] == "session"
                async with connect(f"ws://127.0.0.1:{port}/ws/audio", open_timeout=30) as second:
                    assert json.loads(await second.recv())["type"] == "session"
                    await asyncio.to_thread(_wait_for, lambda: len(_Agent.log) >= 1, 10, "protection on")
                    await second.send(json.dumps({"type": "hangup"}))
                await asyncio.sleep(2.5)  # more than two polls: one call is still in progress
                assert _Agent.log == [{"ProtectionEnabled": True, "ExpiresInMinutes": 7}]
                await first.send(json.dumps({"type": "hangup"}))
            await asyncio.to_thread(_wait_for, lambda: len(_Agent.log) >= 2, 10, "protection off")

        asyncio.run(calls())
        assert _Agent.log == [{"ProtectionEnabled": True, "ExpiresInMinutes": 7}, {"ProtectionEnabled": False}]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
