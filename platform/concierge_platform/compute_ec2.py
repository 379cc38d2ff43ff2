"""EC2 backend: an Auto Scaling Group of Docker hosts, each running the runtime and coturn under systemd.

Both containers use host networking: aiortc must see the instance's private IP as its host candidate
(Docker's bridge address is unreachable, reference/webrtc-aiortc.md §1.2) and coturn must relay on it.
User data carries only secret ARNs; the host fetches the values at each service start with its role.
"""

from __future__ import annotations

import base64
import shlex
import textwrap

import pulumi
import pulumi_aws as aws

from . import iam
from .coturn import CONTAINER_COMMAND
from .workload import WorkloadArgs

AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def render_user_data(*, region: str, image: str, turn_image: str, environment: dict[str, str],
                     secret_arns: dict[str, str], turn_conf_b64: str, runtime_log_group: str,
                     turn_log_group: str) -> str:
    """cloud-init shell script: Docker, ECR login, secrets at start, two systemd units."""
    registry = image.split("/", 1)[0]
    env_lines = "\n".join(f"{k}={v}" for k, v in sorted(environment.items()))
    fetch_lines = "\n".join(
        f"printf '%s=%s\\n' {shlex.quote(env)} \"$(fetch {shlex.quote(arn)})\""
        for env, arn in sorted(secret_arns.items())
    )
    turn_arn = shlex.quote(secret_arns["TURN_SECRET"])

    def unit(description: str, name: str) -> str:
        # The docker command lives in /usr/local/bin/<name>-run: systemd would rewrite "$", "%" and "\\"
        # inside ExecStart, which the coturn start command needs verbatim.
        return textwrap.dedent(f"""\
            [Unit]
            Description={description}
            After=docker.service network-online.target
            Requires=docker.service
            Wants=network-online.target

            [Service]
            Restart=always
            RestartSec=5
            TimeoutStartSec=600
            ExecStartPre=-/usr/bin/docker rm -f {name}
            ExecStartPre=/usr/local/bin/concierge-prepare
            ExecStart=/usr/local/bin/{name}-run
            ExecStop=/usr/bin/docker stop -t 30 {name}

            [Install]
            WantedBy=multi-user.target
            """)

    def logs(group: str, stream: str) -> str:
        return (f"--log-driver awslogs --log-opt awslogs-region={region} --log-opt awslogs-group={group} "
                f'--log-opt awslogs-stream="$(hostname)-{stream}"')

    runtime_run = (
        "exec docker run --name concierge-runtime --network host --ulimit nofile=65536:65536 "
        "--env-file /etc/concierge/runtime.env --env-file /run/concierge/secrets.env "
        f"{logs(runtime_log_group, 'runtime')} {image}"
    )
    turn_run = (
        "exec docker run --name coturn --network host --ulimit nofile=65536:65536 "
        "--env-file /etc/concierge/coturn.env --env-file /run/concierge/turn.env "
        f"{logs(turn_log_group, 'coturn')} --entrypoint sh {turn_image} -c {shlex.quote(CONTAINER_COMMAND)}"
    )
    runtime_unit = unit("Voice concierge runtime", "concierge-runtime")
    turn_unit = unit("coturn TURN relay", "coturn")
    return textwrap.dedent("""\
        #!/bin/bash
        # Docker host for the voice concierge (rendered by platform/concierge_platform/compute_ec2.py).
        set -euo pipefail
        dnf install -y docker
        systemctl enable --now docker
        install -d -m 0755 /etc/concierge
        cat > /etc/concierge/runtime.env <<'CONCIERGE_ENV'
        {env_lines}
        CONCIERGE_ENV
        cat > /etc/concierge/coturn.env <<'CONCIERGE_ENV'
        TURNSERVER_CONF_B64={turn_conf_b64}
        CONCIERGE_ENV
        cat > /usr/local/bin/concierge-prepare <<'CONCIERGE_PREPARE'
        #!/bin/bash
        # Runs before each container start: fresh ECR login, current secret values, image pulled.
        set -euo pipefail
        fetch() {{ aws secretsmanager get-secret-value --region {region} --secret-id "$1" \\
                  --query SecretString --output text; }}
        install -d -m 0700 /run/concierge
        exec 9>/run/concierge/.lock
        flock 9  # both units run this at boot; one at a time, files replaced atomically
        umask 077
        {{
        {fetch_lines}
        }} > /run/concierge/secrets.env.new
        printf 'TURN_SECRET=%s\\n' "$(fetch {turn_arn})" > /run/concierge/turn.env.new
        mv /run/concierge/secrets.env.new /run/concierge/secrets.env
        mv /run/concierge/turn.env.new /run/concierge/turn.env
        aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin {registry}
        docker pull {image}
        docker pull {turn_image}
        CONCIERGE_PREPARE
        chmod 0755 /usr/local/bin/concierge-prepare
        printf '%s\\n' '#!/bin/bash' {runtime_run_q} > /usr/local/bin/concierge-runtime-run
        printf '%s\\n' '#!/bin/bash' {turn_run_q} > /usr/local/bin/coturn-run
        chmod 0755 /usr/local/bin/concierge-runtime-run /usr/local/bin/coturn-run
        cat > /etc/systemd/system/concierge-runtime.service <<'CONCIERGE_UNIT'
        {runtime_unit}CONCIERGE_UNIT
        cat > /etc/systemd/system/coturn.service <<'CONCIERGE_UNIT'
        {turn_unit}CONCIERGE_UNIT
        systemctl daemon-reload
        systemctl enable --now concierge-runtime.service coturn.service
        """).format(env_lines=env_lines, turn_conf_b64=turn_conf_b64, region=region, fetch_lines=fetch_lines,
                    turn_arn=turn_arn, registry=registry, image=image, turn_image=turn_image,
                    runtime_unit=runtime_unit, turn_unit=turn_unit,
                    runtime_run_q=shlex.quote(runtime_run), turn_run_q=shlex.quote(turn_run))


class Ec2Compute(pulumi.ComponentResource):
    """Instance role, launch template (IMDSv2, encrypted EBS) and the ASG with CPU tracking + instance refresh."""

    def __init__(self, name: str, args: WorkloadArgs, *, instance_type: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Ec2Compute", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ami = aws.ssm.get_parameter(name=AMI_PARAMETER)

        host_role, host_policy = iam.role(
            f"{name}-host-role", "ec2.amazonaws.com",
            [*args.runtime_statements(), *args.image_pull_statements(),
             iam.log_statement([args.runtime_log_group_arn, args.turn_log_group_arn]),
             iam.secrets_statement(list(args.secret_arns.values()))],
            child, "Docker hosts: pull the image, read the app secrets, write logs, run the runtime")
        profile = aws.iam.InstanceProfile(f"{name}-host-profile", role=host_role.name, opts=child)

        user_data = pulumi.Output.all(
            image=args.image_ref, env=pulumi.Output.all(**args.container_environment({"AWS_REGION": args.region})),
            secrets=pulumi.Output.all(**args.secret_arns), runtime_logs=args.runtime_log_group_name,
            turn_logs=args.turn_log_group_name,
        ).apply(lambda v: base64.b64encode(render_user_data(
            region=args.region, image=v["image"], turn_image=args.turn_image, environment=v["env"],
            secret_arns=v["secrets"], turn_conf_b64=args.turn_conf_b64, runtime_log_group=v["runtime_logs"],
            turn_log_group=v["turn_logs"]).encode()).decode())

        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-hosts", name_prefix=f"{args.name}-host-", image_id=ami.value, instance_type=instance_type,
            iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[args.app_security_group_id, args.turn_security_group_id],
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 2},  # 2: containers reach IMDS too
            block_device_mappings=[{"device_name": "/dev/xvda",
                                    "ebs": {"encrypted": "true", "volume_size": 30, "volume_type": "gp3",
                                            "delete_on_termination": "true"}}],
            monitoring={"enabled": True}, user_data=user_data, update_default_version=True,
            tag_specifications=[{"resource_type": "instance", "tags": {"Name": f"{args.name}-host"}},
                                {"resource_type": "volume", "tags": {"Name": f"{args.name}-host"}}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host_policy]),
        )
        self.group = aws.autoscaling.Group(
            f"{name}-asg", name=args.cluster_name, min_size=args.min_capacity, max_size=args.max_capacity,
            desired_capacity=args.desired_capacity, vpc_zone_identifiers=args.private_subnet_ids,
            target_group_arns=[args.api_target_group_arn, args.turn_target_group_arn,
                               args.turn_tls_target_group_arn],
            health_check_type="ELB", health_check_grace_period=300, default_instance_warmup=180,
            # latest_version, not "$Latest": an instance refresh only starts when the version number changes.
            launch_template={"id": self.launch_template.id,
                             "version": self.launch_template.latest_version.apply(str)},
            instance_refresh={"strategy": "Rolling",
                              "preferences": {"min_healthy_percentage": 50, "instance_warmup": 180,
                                              "auto_rollback": True}},
            tags=[{"key": "Name", "value": f"{args.name}-host", "propagate_at_launch": True}],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desired_capacity"]),
        )
        self.scaling_policy = aws.autoscaling.Policy(
            f"{name}-cpu", autoscaling_group_name=self.group.name, policy_type="TargetTrackingScaling",
            estimated_instance_warmup=180,
            target_tracking_configuration={
                "target_value": args.cpu_target_percent,
                "predefined_metric_specification": {"predefined_metric_type": "ASGAverageCPUUtilization"},
            },
            opts=child)
        self.register_outputs({"groupName": self.group.name})
