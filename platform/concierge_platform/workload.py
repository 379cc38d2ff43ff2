"""What both compute backends run, so ECS and EC2 differ only in how, never in what.

The runtime reads plain environment variables (runtime/settings.py); secrets are passed by Secrets
Manager ARN and resolved by the platform (ECS ``secrets``) or the host at service start (EC2), never
written into task definitions or user data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from . import iam
from .coturn import TRANSPORTS
from .security import APP_PORT

RUNTIME_CONTAINER = "runtime"
# One coturn process per client protocol (see security.TURN_TCP_PORT): container / systemd unit names.
TURN_CONTAINERS: dict[str, str] = {t: f"coturn-{t}" for t in TRANSPORTS}
# coturn's user on EC2 hosts: a uid nothing else uses, so an iptables owner match can keep it away from the
# instance metadata service (coturn shares the host's network namespace there; a hop limit cannot tell it apart).
TURN_UID = 3478
IMDS_ADDRESSES: tuple[str, ...] = ("169.254.169.254",)


@dataclass
class WorkloadArgs:
    name: str
    region: str
    account_id: pulumi.Input[str]
    image_ref: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    turn_image_ref: pulumi.Input[str]
    turn_repository_arn: pulumi.Input[str] | None  # None: the coturn image is not in this stack's ECR
    turn_conf_b64: dict[str, str]  # transport -> base64 turnserver.conf
    environment: dict[str, pulumi.Input[str]]
    secret_arns: dict[str, pulumi.Output[str]]  # env var -> Secrets Manager ARN
    private_subnet_ids: list[pulumi.Input[str]]
    app_security_group_id: pulumi.Input[str]
    turn_security_group_id: pulumi.Input[str]
    api_target_group_arn: pulumi.Input[str]
    turn_target_group_arns: dict[str, pulumi.Input[str]]  # transport -> target group (udp 3478, tcp 3479)
    table_arns: list[pulumi.Input[str]]
    bedrock_region: str
    model_id: str
    runtime_log_group_name: pulumi.Input[str]
    runtime_log_group_arn: pulumi.Input[str]
    turn_log_group_name: pulumi.Input[str]
    turn_log_group_arn: pulumi.Input[str]
    min_capacity: int
    max_capacity: int
    desired_capacity: int
    cpu_target_percent: float
    cluster_name: str  # ECS cluster / ASG name: fixed up front so dashboards and IAM scopes can name them
    service_name: str
    drain_minutes: int = 60
    # Services / the ASG wait for these: a target group only "has an associated load balancer" once a
    # listener forwards to it, and CreateService / AttachLoadBalancerTargetGroups fail before that.
    api_listeners: list[pulumi.Resource] = field(default_factory=list)
    turn_listeners: dict[str, list[pulumi.Resource]] = field(default_factory=dict)  # transport -> listeners

    @property
    def all_listeners(self) -> list[pulumi.Resource]:
        return [*self.api_listeners, *(lst for lsts in self.turn_listeners.values() for lst in lsts)]

    def runtime_statements(self) -> list[iam.Statement]:
        """What the runtime process itself may do: its tables and the one Nova Sonic model."""
        return [iam.dynamodb_table_statement(self.table_arns),
                iam.bedrock_statement(self.bedrock_region, self.model_id)]

    def image_pull_statements(self, *, runtime: bool = True, turn: bool = True) -> list[iam.Statement]:
        repos: list[pulumi.Input[str]] = []
        if runtime:
            repos.append(self.repository_arn)
        if turn and self.turn_repository_arn is not None:
            repos.append(self.turn_repository_arn)
        if not repos:
            return []
        return [
            # GetAuthorizationToken is account-wide by design: AWS accepts only Resource "*" for it.
            iam.Statement(["ecr:GetAuthorizationToken"], ["*"], sid="EcrLogin"),
            iam.Statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                          repos, sid="EcrPull"),
        ]

    def container_environment(self, extra: dict[str, pulumi.Input[str]] | None = None) -> dict[str, pulumi.Input[str]]:
        return {"HOST": "0.0.0.0", "PORT": str(APP_PORT), **self.environment, **(extra or {})}
