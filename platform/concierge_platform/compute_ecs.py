"""ECS Fargate backend: the runtime service behind the ALB (CPU target tracking) and coturn behind the NLB.

Fargate's awsvpc networking gives each task its own ENI, so aiortc's host candidate is the task's private
IP, which coturn (relaying from the same private subnets) reaches directly.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from . import iam
from .coturn import CONTAINER_COMMAND, LISTEN_PORTS, TRANSPORTS
from .security import APP_PORT
from .workload import RUNTIME_CONTAINER, TURN_CONTAINERS, WorkloadArgs

# ECS scale-in protection while a task has calls (runtime/task_protection.py): how long one PUT protects.
TASK_PROTECTION_MINUTES = 60


def _log_config(group: pulumi.Input[str], region: str, prefix: str) -> dict[str, Any]:
    return {"logDriver": "awslogs", "options": {"awslogs-group": group, "awslogs-region": region,
                                                "awslogs-stream-prefix": prefix}}


def _pairs(values: dict[str, str], key: str) -> list[dict[str, str]]:
    return [{"name": k, key: v} for k, v in sorted(values.items())]


class EcsCompute(pulumi.ComponentResource):
    """Cluster, task definitions, the two services and App Auto Scaling on the runtime service."""

    def __init__(self, name: str, args: WorkloadArgs, *, task_cpu: int, task_memory: int, turn_count: int,
                 turn_cpu: int, turn_memory: int, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:EcsCompute", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster", name=args.cluster_name,
            settings=[{"name": "containerInsights", "value": "enabled"}], opts=child)

        trust = iam.ecs_trust(args.region, args.account_id)
        execution_role, execution_policy = iam.role(
            f"{name}-execution-role", trust,
            [*args.image_pull_statements(turn=False),
             iam.log_statement([args.runtime_log_group_arn]),
             iam.secrets_statement(list(args.secret_arns.values()))],
            child, "ECS agent for the runtime: pull its image, write its logs, inject the app secrets")
        # coturn gets its own execution role: it needs the TURN secret only, never the staff token or the
        # session key, and it has no task role at all (nothing in it calls AWS).
        turn_execution_role, turn_execution_policy = iam.role(
            f"{name}-turn-execution-role", trust,
            [*args.image_pull_statements(runtime=False),
             iam.log_statement([args.turn_log_group_arn]),
             iam.secrets_statement([args.secret_arns["TURN_SECRET"]])],
            child, "ECS agent for coturn: pull its image, write its logs, inject the TURN secret")
        # The ECS agent's task-protection endpoint calls UpdateTaskProtection with the task role
        # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html).
        tasks_of_cluster = pulumi.Output.concat("arn:aws:ecs:", args.region, ":", args.account_id, ":task/",
                                                args.cluster_name, "/*")
        task_role, task_policy = iam.role(
            f"{name}-task-role", trust,
            [*args.runtime_statements(),
             iam.Statement(["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"], [tasks_of_cluster],
                           sid="ScaleInProtection")],
            child, "Runtime tasks: their DynamoDB tables, the Nova Sonic model, their own scale-in protection")

        workers = str(max(1, task_cpu // 1024))  # one worker process per vCPU (README "Scaling")
        runtime_env = args.container_environment({"WORKERS": workers, "AWS_REGION": args.region,
                                                  "TASK_PROTECTION_MINUTES": str(TASK_PROTECTION_MINUTES)})
        runtime_containers = pulumi.Output.all(
            image=args.image_ref, env=pulumi.Output.all(**runtime_env), secrets=pulumi.Output.all(**args.secret_arns),
            logs=args.runtime_log_group_name,
        ).apply(lambda v: json.dumps([{
            "name": RUNTIME_CONTAINER, "image": v["image"], "essential": True,
            "portMappings": [{"containerPort": APP_PORT, "protocol": "tcp"}],
            "environment": _pairs(v["env"], "value"),
            "secrets": _pairs(v["secrets"], "valueFrom"),
            "logConfiguration": _log_config(v["logs"], args.region, "runtime"),
            "stopTimeout": 120,  # Fargate's maximum: calls get two minutes to finish after SIGTERM
            "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        }]))
        self.runtime_task = aws.ecs.TaskDefinition(
            f"{name}-runtime-task", family=f"{args.name}-runtime", cpu=str(task_cpu), memory=str(task_memory),
            network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn, task_role_arn=task_role.arn,
            container_definitions=runtime_containers, opts=child)
        self.runtime_service = aws.ecs.Service(
            f"{name}-runtime", name=args.service_name, cluster=self.cluster.arn,
            task_definition=self.runtime_task.arn, desired_count=args.desired_capacity, launch_type="FARGATE",
            network_configuration={"subnets": args.private_subnet_ids,
                                   "security_groups": [args.app_security_group_id], "assign_public_ip": False},
            load_balancers=[{"target_group_arn": args.api_target_group_arn, "container_name": RUNTIME_CONTAINER,
                             "container_port": APP_PORT}],
            deployment_circuit_breaker={"enable": True, "rollback": True},
            # A crash-looping first deploy must fail `pulumi up`, not report success.
            wait_for_steady_state=True,
            health_check_grace_period_seconds=60, propagate_tags="SERVICE", enable_ecs_managed_tags=True,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[execution_policy, task_policy, *args.api_listeners],
                # A fixed name: a replacement must delete first (create-first would fail "already exists").
                delete_before_replace=True,
                ignore_changes=["desired_count"]),  # owned by autoscaling
        )
        resource_id = pulumi.Output.concat("service/", self.cluster.name, "/", self.runtime_service.name)
        self.scaling_target = aws.appautoscaling.Target(
            f"{name}-runtime-scaling", min_capacity=args.min_capacity, max_capacity=args.max_capacity,
            resource_id=resource_id, scalable_dimension="ecs:service:DesiredCount", service_namespace="ecs",
            opts=child)
        self.scaling_policy = aws.appautoscaling.Policy(
            f"{name}-runtime-cpu", policy_type="TargetTrackingScaling", resource_id=self.scaling_target.resource_id,
            scalable_dimension=self.scaling_target.scalable_dimension,
            service_namespace=self.scaling_target.service_namespace,
            target_tracking_scaling_policy_configuration={
                "target_value": args.cpu_target_percent,
                "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"},
                "scale_in_cooldown": 300, "scale_out_cooldown": 60,
            },
            opts=child)

        # --- coturn -------------------------------------------------------------------------------
        # Two containers in one task (one network namespace), one protocol each: ECS refuses a container port
        # in two port mappings, so UDP 3478 and TCP 3479 are separate processes with disjoint relay ranges.
        def turn_containers(v: dict[str, Any]) -> str:
            return json.dumps([{
                "name": TURN_CONTAINERS[t], "image": v["image"], "essential": True,
                "entryPoint": ["sh", "-c"], "command": [CONTAINER_COMMAND],
                "portMappings": [{"containerPort": LISTEN_PORTS[t], "protocol": t}],
                "environment": [{"name": "TURNSERVER_CONF_B64", "value": args.turn_conf_b64[t]}],
                "secrets": [{"name": "TURN_SECRET", "valueFrom": v["secret"]}],
                "logConfiguration": _log_config(v["logs"], args.region, TURN_CONTAINERS[t]),
                "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
            } for t in TRANSPORTS])

        turn_definitions = pulumi.Output.all(
            secret=args.secret_arns["TURN_SECRET"], logs=args.turn_log_group_name, image=args.turn_image_ref,
        ).apply(turn_containers)
        self.turn_task = aws.ecs.TaskDefinition(
            f"{name}-turn-task", family=f"{args.name}-coturn", cpu=str(turn_cpu), memory=str(turn_memory),
            network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=turn_execution_role.arn, container_definitions=turn_definitions, opts=child)
        turn_listeners = [lst for lsts in args.turn_listeners.values() for lst in lsts]
        self.turn_service = aws.ecs.Service(
            f"{name}-turn", name=f"{args.service_name}-turn", cluster=self.cluster.arn,
            task_definition=self.turn_task.arn, desired_count=turn_count, launch_type="FARGATE",
            network_configuration={"subnets": args.private_subnet_ids,
                                   "security_groups": [args.turn_security_group_id], "assign_public_ip": False},
            load_balancers=[
                {"target_group_arn": args.turn_target_group_arns[t], "container_name": TURN_CONTAINERS[t],
                 "container_port": LISTEN_PORTS[t]}
                for t in TRANSPORTS
            ],
            deployment_circuit_breaker={"enable": True, "rollback": True},
            wait_for_steady_state=True,
            health_check_grace_period_seconds=30,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[turn_execution_policy, *turn_listeners],
                                        delete_before_replace=True),
        )
        self.register_outputs({"clusterName": self.cluster.name})
