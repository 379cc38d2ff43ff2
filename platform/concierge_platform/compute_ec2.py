"""EC2 backend: an Auto Scaling Group of Docker hosts, each running the runtime and coturn under systemd.

All containers use host networking: aiortc must see the instance's private IP as its host candidate
(Docker's bridge address is unreachable) and coturn must relay on it. Because coturn then shares the host's
network namespace, a metadata hop limit cannot keep it from IMDS (and the host role's credentials): coturn
runs as its own uid and an iptables owner rule rejects that uid's packets to the metadata addresses.
User data carries only secret ARNs; the host fetches the values at each service start with its role.

Scale-in and instance refresh wait for calls: a termination lifecycle hook holds the instance in
Terminating:Wait while ``concierge-drain`` (a systemd service) sees the runtime report calls in progress on
``/metrics``, sending heartbeats, bounded by ``drainMinutes``; then it completes the lifecycle action.
"""

from __future__ import annotations

import base64
import shlex
import textwrap

import pulumi
import pulumi_aws as aws

from . import iam
from .coturn import CONTAINER_COMMAND, TRANSPORTS
from .security import APP_PORT
from .workload import IMDS_ADDRESSES, TURN_CONTAINERS, TURN_UID, WorkloadArgs

# The launch template resolves the AMI at each launch ("resolve:ssm:"), so `pulumi up` never sees a new AMI
# id and an unrelated update does not roll the fleet; set `amiId` to pin one image instead.
# https://docs.aws.amazon.com/autoscaling/ec2/userguide/using-systems-manager-parameters.html
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
RESOLVE_AMI = f"resolve:ssm:{AMI_PARAMETER}"
LIFECYCLE_HEARTBEAT_S = 300  # the hook's heartbeat timeout; the watcher beats every HEARTBEAT_EVERY_S
HEARTBEAT_EVERY_S = 60
METRICS_URL = f"http://127.0.0.1:{APP_PORT}/metrics"
CALLS_METRIC = "voice_sessions_active"  # runtime/metrics.py SESSIONS_ACTIVE, summed over workers (livesum)
IMDS = "http://169.254.169.254/latest"


def render_drain_script(*, region: str, group_name: str, hook_name: str, drain_seconds: int,
                        poll_seconds: int = 5, heartbeat_every: int = HEARTBEAT_EVERY_S,
                        metrics_url: str = METRICS_URL, imds: str = IMDS) -> str:
    """``concierge-drain``: wait for this instance's termination, then for its calls to end, then let it go.

    The instance learns it is terminating from IMDS ``autoscaling/target-lifecycle-state``
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html),
    so no queue or EventBridge rule is needed. Calls are the runtime's ``voice_sessions_active`` gauge; a
    runtime that does not answer has no calls. The wait is bounded by ``drain_seconds``; the hook's
    default result is CONTINUE, so even a dead watcher delays termination by one heartbeat timeout only.
    """
    return textwrap.dedent(f"""\
        #!/bin/bash
        # Rendered by platform/concierge_platform/compute_ec2.py; run by concierge-drain.service.
        set -uo pipefail
        imds() {{
          local token
          token=$(curl -sf --max-time 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' {imds}/api/token) \\
            && curl -sf --max-time 2 -H "X-aws-ec2-metadata-token: $token" "{imds}/$1"
        }}
        calls() {{
          local page
          page=$(curl -sf --max-time 3 {metrics_url}) || {{ echo 0; return; }}
          awk '/^{CALLS_METRIC}[{{ ]/ {{ s += $NF }} END {{ printf "%d\\n", s }}' <<<"$page"
        }}
        until [ "$(imds meta-data/autoscaling/target-lifecycle-state)" = Terminated ]; do sleep {poll_seconds}; done
        instance=$(imds meta-data/instance-id)
        hook=(--region {region} --auto-scaling-group-name {group_name} --lifecycle-hook-name {hook_name} \\
              --instance-id "$instance")
        echo "concierge-drain: $instance is terminating; waiting for calls to end (at most {drain_seconds} s)"
        deadline=$((SECONDS + {drain_seconds}))
        beat=$SECONDS
        while [ $SECONDS -lt $deadline ]; do
          n=$(calls)
          [ "$n" -le 0 ] 2>/dev/null && break
          if [ $((SECONDS - beat)) -ge {heartbeat_every} ]; then
            aws autoscaling record-lifecycle-action-heartbeat "${{hook[@]}}" || true
            beat=$SECONDS
          fi
          echo "concierge-drain: $n call(s) in progress"
          sleep {poll_seconds}
        done
        echo "concierge-drain: calls now $(calls); completing the lifecycle action"
        exec aws autoscaling complete-lifecycle-action "${{hook[@]}}" --lifecycle-action-result CONTINUE
        """)


def render_imds_block(uid: int = TURN_UID) -> str:
    """``coturn-imds-block``: reject coturn's packets to instance metadata (idempotent: -C before -I)."""
    # IPv4 only: the launch template keeps the IPv6 metadata endpoint disabled (http_protocol_ipv6).
    rules = [("iptables", f"{a}/32") for a in IMDS_ADDRESSES]
    lines = ["#!/bin/bash", "# Runs before each coturn start (ExecStartPre): coturn shares the host's network.",
             "set -euo pipefail"]
    for tool, dest in rules:
        rule = f"OUTPUT -d {dest} -m owner --uid-owner {uid} -j REJECT"
        lines.append(f"{tool} -w -C {rule} 2>/dev/null || {tool} -w -I {rule}")
    return "\n".join(lines) + "\n"


def _unit(description: str, name: str, pre: tuple[str, ...] = ()) -> str:
    # The docker command lives in /usr/local/bin/<name>-run: systemd would rewrite "$", "%" and "\"
    # inside ExecStart, which the coturn start command needs verbatim.
    return "\n".join([
        "[Unit]", f"Description={description}", "After=docker.service network-online.target",
        "Requires=docker.service", "Wants=network-online.target", "",
        "[Service]", "Restart=always", "RestartSec=5", "TimeoutStartSec=600",
        f"ExecStartPre=-/usr/bin/docker rm -f {name}", "ExecStartPre=/usr/local/bin/concierge-prepare",
        *(f"ExecStartPre={p}" for p in pre),
        f"ExecStart=/usr/local/bin/{name}-run", f"ExecStop=/usr/bin/docker stop -t 30 {name}", "",
        "[Install]", "WantedBy=multi-user.target", "",
    ])


DRAIN_UNIT = "\n".join([
    "[Unit]", "Description=Hold a terminating instance until its calls end (Auto Scaling lifecycle hook)",
    "After=network-online.target concierge-runtime.service", "Wants=network-online.target", "",
    "[Service]", "ExecStart=/usr/local/bin/concierge-drain", "Restart=on-failure", "RestartSec=5", "",
    "[Install]", "WantedBy=multi-user.target", "",
])
TURN_UNITS: dict[str, str] = {t: f"{TURN_CONTAINERS[t]}.service" for t in TRANSPORTS}
UNITS: tuple[str, ...] = ("concierge-runtime.service", *TURN_UNITS.values(), "concierge-drain.service")


def render_user_data(*, region: str, image: str, turn_image: str, environment: dict[str, str],
                     secret_arns: dict[str, str], turn_confs_b64: dict[str, str], runtime_log_group: str,
                     turn_log_group: str, group_name: str, hook_name: str, drain_seconds: int) -> str:
    """cloud-init shell script: Docker, ECR login, secrets at start, the runtime and two coturn units, and
    the drain watcher for the termination lifecycle hook."""
    registry = image.split("/", 1)[0]
    env_lines = "\n".join(f"{k}={v}" for k, v in sorted(environment.items()))
    fetch_lines = "\n".join(
        f"printf '%s=%s\\n' {shlex.quote(env)} \"$(fetch {shlex.quote(arn)})\""
        for env, arn in sorted(secret_arns.items())
    )
    turn_arn = shlex.quote(secret_arns["TURN_SECRET"])

    def logs(group: str, stream: str) -> str:
        return (f"--log-driver awslogs --log-opt awslogs-region={region} --log-opt awslogs-group={group} "
                f'--log-opt awslogs-stream="$(hostname)-{stream}"')

    runtime_run = (
        "exec docker run --name concierge-runtime --network host --ulimit nofile=65536:65536 "
        "--env-file /etc/concierge/runtime.env --env-file /run/concierge/secrets.env "
        f"{logs(runtime_log_group, 'runtime')} {image}"
    )
    files: list[str] = []
    installs: list[str] = []
    for t in TRANSPORTS:
        name = TURN_CONTAINERS[t]
        files.append(f"cat > /etc/concierge/{name}.env <<'CONCIERGE_ENV'\n"
                     f"TURNSERVER_CONF_B64={turn_confs_b64[t]}\nCONCIERGE_ENV")
        run = (f"exec docker run --name {name} --network host --user {TURN_UID}:{TURN_UID} "
               f"--ulimit nofile=65536:65536 --env-file /etc/concierge/{name}.env --env-file /run/concierge/turn.env "
               f"{logs(turn_log_group, name)} --entrypoint sh {turn_image} -c {shlex.quote(CONTAINER_COMMAND)}")
        installs.append(f"printf '%s\\n' '#!/bin/bash' {shlex.quote(run)} > /usr/local/bin/{name}-run")
        installs.append(f"chmod 0755 /usr/local/bin/{name}-run")
        unit = _unit(f"coturn TURN relay ({t.upper()})", name, pre=("/usr/local/bin/coturn-imds-block",))
        installs.append(f"cat > /etc/systemd/system/{TURN_UNITS[t]} <<'CONCIERGE_UNIT'\n{unit}CONCIERGE_UNIT")
    drain = render_drain_script(region=region, group_name=group_name, hook_name=hook_name,
                                drain_seconds=drain_seconds)
    return textwrap.dedent("""\
        #!/bin/bash
        # Docker host for the voice concierge (rendered by platform/concierge_platform/compute_ec2.py).
        set -euo pipefail
        dnf install -y docker iptables-nft
        systemctl enable --now docker
        install -d -m 0755 /etc/concierge
        cat > /etc/concierge/runtime.env <<'CONCIERGE_ENV'
        {env_lines}
        CONCIERGE_ENV
        """).format(env_lines=env_lines) + "\n".join(files) + "\n" + textwrap.dedent("""\
        cat > /usr/local/bin/concierge-prepare <<'CONCIERGE_PREPARE'
        #!/bin/bash
        # Runs before each container start: fresh ECR login, current secret values, images pulled.
        set -euo pipefail
        fetch() {{ aws secretsmanager get-secret-value --region {region} --secret-id "$1" \\
                  --query SecretString --output text; }}
        install -d -m 0700 /run/concierge
        exec 9>/run/concierge/.lock
        flock 9  # every unit runs this at boot; one at a time, files replaced atomically
        umask 077
        {{
        {fetch_lines}
        }} > /run/concierge/secrets.env.new
        printf 'TURN_SECRET=%s\\n' "$(fetch {turn_arn})" > /run/concierge/turn.env.new
        mv /run/concierge/secrets.env.new /run/concierge/secrets.env
        mv /run/concierge/turn.env.new /run/concierge/turn.env
        # coturn runs as uid {turn_uid}: it may read the TURN secret, never the runtime's secrets.
        chown {turn_uid}:{turn_uid} /run/concierge/turn.env
        aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin {registry}
        docker pull {image}
        docker pull {turn_image}
        CONCIERGE_PREPARE
        chmod 0755 /usr/local/bin/concierge-prepare
        cat > /usr/local/bin/coturn-imds-block <<'CONCIERGE_IMDS'
        {imds_block}CONCIERGE_IMDS
        chmod 0755 /usr/local/bin/coturn-imds-block
        cat > /usr/local/bin/concierge-drain <<'CONCIERGE_DRAIN'
        {drain}CONCIERGE_DRAIN
        chmod 0755 /usr/local/bin/concierge-drain
        printf '%s\\n' '#!/bin/bash' {runtime_run_q} > /usr/local/bin/concierge-runtime-run
        chmod 0755 /usr/local/bin/concierge-runtime-run
        cat > /etc/systemd/system/concierge-runtime.service <<'CONCIERGE_UNIT'
        {runtime_unit}CONCIERGE_UNIT
        cat > /etc/systemd/system/concierge-drain.service <<'CONCIERGE_UNIT'
        {drain_unit}CONCIERGE_UNIT
        """).format(region=region, fetch_lines=fetch_lines, turn_arn=turn_arn, registry=registry, image=image,
                    turn_image=turn_image, turn_uid=TURN_UID, imds_block=render_imds_block(), drain=drain,
                    runtime_run_q=shlex.quote(runtime_run), runtime_unit=_unit("Voice concierge runtime",
                                                                               "concierge-runtime"),
                    drain_unit=DRAIN_UNIT) + "\n".join(installs) + "\n" + textwrap.dedent(f"""\
        systemctl daemon-reload
        systemctl enable --now {' '.join(UNITS)}
        """)


class Ec2Compute(pulumi.ComponentResource):
    """Instance role, launch template (IMDSv2, encrypted EBS), the ASG with CPU tracking + instance refresh,
    and the termination lifecycle hook that lets calls finish."""

    def __init__(self, name: str, args: WorkloadArgs, *, instance_type: str, ami_id: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Ec2Compute", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        hook_name = f"{args.name}-drain-calls"
        group_arn = pulumi.Output.concat("arn:aws:autoscaling:", args.region, ":", args.account_id,
                                         ":autoScalingGroup:*:autoScalingGroupName/", args.cluster_name)

        host_role, host_policy = iam.role(
            f"{name}-host-role", "ec2.amazonaws.com",
            [*args.runtime_statements(), *args.image_pull_statements(),
             iam.log_statement([args.runtime_log_group_arn, args.turn_log_group_arn]),
             iam.secrets_statement(list(args.secret_arns.values())),
             iam.Statement(["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
                           [group_arn], sid="DrainLifecycleHook")],
            child, "Docker hosts: pull the images, read the app secrets, write logs, run the runtime, drain calls")
        profile = aws.iam.InstanceProfile(f"{name}-host-profile", role=host_role.name, opts=child)

        drain_seconds = args.drain_minutes * 60
        user_data = pulumi.Output.all(
            image=args.image_ref, turn_image=args.turn_image_ref,
            env=pulumi.Output.all(**args.container_environment({"AWS_REGION": args.region})),
            secrets=pulumi.Output.all(**args.secret_arns), runtime_logs=args.runtime_log_group_name,
            turn_logs=args.turn_log_group_name,
        ).apply(lambda v: base64.b64encode(render_user_data(
            region=args.region, image=v["image"], turn_image=v["turn_image"], environment=v["env"],
            secret_arns=v["secrets"], turn_confs_b64=args.turn_conf_b64, runtime_log_group=v["runtime_logs"],
            turn_log_group=v["turn_logs"], group_name=args.cluster_name, hook_name=hook_name,
            drain_seconds=drain_seconds).encode()).decode())

        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-hosts", name_prefix=f"{args.name}-host-", image_id=ami_id or RESOLVE_AMI,
            instance_type=instance_type, iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[args.app_security_group_id, args.turn_security_group_id],
            # Hop limit 1: every container uses the host network, so the runtime reaches IMDS without a second
            # hop while any bridge-networked container cannot; coturn (host network too) is kept away from IMDS
            # by coturn-imds-block, because a hop limit cannot tell it apart from the runtime.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 1, "http_protocol_ipv6": "disabled",
                              "instance_metadata_tags": "disabled"},
            block_device_mappings=[{"device_name": "/dev/xvda",
                                    "ebs": {"encrypted": "true", "volume_size": 30, "volume_type": "gp3",
                                            "delete_on_termination": "true"}}],
            monitoring={"enabled": True}, user_data=user_data, update_default_version=True,
            tag_specifications=[{"resource_type": "instance", "tags": {"Name": f"{args.name}-host"}},
                                {"resource_type": "volume", "tags": {"Name": f"{args.name}-host"}}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host_policy]),
        )
        target_groups = [args.api_target_group_arn, *(args.turn_target_group_arns[t] for t in TRANSPORTS)]
        self.group = aws.autoscaling.Group(
            f"{name}-asg", name=args.cluster_name, min_size=args.min_capacity, max_size=args.max_capacity,
            desired_capacity=args.desired_capacity, vpc_zone_identifiers=args.private_subnet_ids,
            target_group_arns=target_groups,
            health_check_type="ELB", health_check_grace_period=300, default_instance_warmup=180,
            # latest_version, not "$Latest": an instance refresh only starts when the version number changes.
            launch_template={"id": self.launch_template.id,
                             "version": self.launch_template.latest_version.apply(str)},
            # Launch before terminating: min 100 % healthy, up to 200 % during the refresh, so a one-host
            # stack keeps serving while its replacement warms up.
            # https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-overview.html
            instance_refresh={"strategy": "Rolling",
                              "preferences": {"min_healthy_percentage": 100, "max_healthy_percentage": 200,
                                              "instance_warmup": 180, "skip_matching": True,
                                              "auto_rollback": True}},
            tags=[{"key": "Name", "value": f"{args.name}-host", "propagate_at_launch": True}],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desired_capacity"],
                                        depends_on=args.all_listeners),
        )
        self.drain_hook = aws.autoscaling.LifecycleHook(
            f"{name}-drain-hook", name=hook_name, autoscaling_group_name=self.group.name,
            lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING", heartbeat_timeout=LIFECYCLE_HEARTBEAT_S,
            default_result="CONTINUE", opts=child)
        self.scaling_policy = aws.autoscaling.Policy(
            f"{name}-cpu", autoscaling_group_name=self.group.name, policy_type="TargetTrackingScaling",
            estimated_instance_warmup=180,
            target_tracking_configuration={
                "target_value": args.cpu_target_percent,
                "predefined_metric_specification": {"predefined_metric_type": "ASGAverageCPUUtilization"},
            },
            opts=child)
        self.register_outputs({"groupName": self.group.name})
