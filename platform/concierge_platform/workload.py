"""What both compute backends run, so ECS and EC2 differ only in how, never in what.

The runtime reads plain environment variables (runtime/settings.py); secrets are passed by Secrets
Manager ARN and resolved by the platform (ECS ``secrets``) or the host at service start (EC2), never
written into task definitions or user data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from . import iam
from .security import APP_PORT

RUNTIME_CONTAINER = "runtime"
TURN_CONTAINER = "coturn"


@dataclass
class WorkloadArgs:
    name: str
    region: str
    image_ref: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    turn_image: str
    turn_conf_b64: str
    environment: dict[str, pulumi.Input[str]]
    secret_arns: dict[str, pulumi.Output[str]]  # env var -> Secrets Manager ARN
    private_subnet_ids: list[pulumi.Input[str]]
    app_security_group_id: pulumi.Input[str]
    turn_security_group_id: pulumi.Input[str]
    api_target_group_arn: pulumi.Input[str]
    turn_target_group_arn: pulumi.Input[str]
    turn_tls_target_group_arn: pulumi.Input[str]
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
    cluster_name: str  # ECS cluster / ASG name: fixed up front so dashboards can name them
    service_name: str

    def runtime_statements(self) -> list[iam.Statement]:
        """What the runtime process itself may do: its tables and the one Nova Sonic model."""
        return [iam.dynamodb_table_statement(self.table_arns),
                iam.bedrock_statement(self.bedrock_region, self.model_id)]

    def image_pull_statements(self) -> list[iam.Statement]:
        return [
            # GetAuthorizationToken is account-wide by design: AWS accepts only Resource "*" for it.
            iam.Statement(["ecr:GetAuthorizationToken"], ["*"], sid="EcrLogin"),
            iam.Statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                          [self.repository_arn], sid="EcrPull"),
        ]

    def container_environment(self, extra: dict[str, pulumi.Input[str]] | None = None) -> dict[str, pulumi.Input[str]]:
        return {"HOST": "0.0.0.0", "PORT": str(APP_PORT), **self.environment, **(extra or {})}
