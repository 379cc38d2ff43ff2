"""The whole deployment, wired from the components; ``platform/__main__.py`` calls :func:`build`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .compute_ec2 import Ec2Compute
from .compute_ecs import EcsCompute
from .config import StackConfig
from .coturn import conf_b64, render_turnserver_conf
from .data import Data, DataArgs
from .edge import Edge, EdgeArgs
from .events import Events, EventsArgs
from .images import Images, ImagesArgs
from .lambda_code import lambda_archive
from .network import Network, NetworkArgs
from .observability import Observability, ObservabilityArgs
from .secrets import AppSecrets, AppSecretsArgs
from .security import SecurityGroups, SecurityGroupsArgs
from .workload import WorkloadArgs


@dataclass
class Deployment:
    """Handles on the created components, for exports and for tests."""

    network: Network
    security: SecurityGroups
    edge: Edge
    data: Data
    events: Events
    images: Images
    observability: Observability
    compute: EcsCompute | Ec2Compute
    outputs: dict[str, pulumi.Input[str] | list[str]]


def build(cfg: StackConfig) -> Deployment:
    region = aws.get_region().region
    name = cfg.prefix
    network = Network("net", NetworkArgs(cidr=cfg.vpc_cidr, name=name))
    security = SecurityGroups("sg", SecurityGroupsArgs(vpc_id=network.vpc.id, name=name))
    secrets = AppSecrets("secrets", AppSecretsArgs(name=name, turn_secret=cfg.turn_secret,
                                                   staff_token=cfg.staff_token, session_secret=cfg.session_secret))
    data = Data("data", DataArgs(name=name, deletion_protection=cfg.deletion_protection))
    edge = Edge("edge", EdgeArgs(
        name=name, vpc_id=network.vpc.id, public_subnet_ids=network.public_subnet_ids,
        alb_security_group_id=security.alb.id, turn_lb_security_group_id=security.turn_lb.id,
        domain_name=cfg.domain_name, turn_domain_name=cfg.turn_domain_name, hosted_zone_name=cfg.hosted_zone_name,
        target_type="ip" if cfg.compute == "ecs" else "instance",
    ))
    events = Events("events", EventsArgs(
        name=name, tables=data.tables, table_environment=data.environment,
        staff_token_secret_arn=secrets.arns["STAFF_TOKEN"], session_secret_arn=secrets.arns["SESSION_SECRET"],
        code=lambda_archive(), log_retention_days=cfg.log_retention_days,
    ))
    images = Images("images", ImagesArgs(name=name, image_uri=cfg.image_uri))
    cluster_name = f"{name}-hosts" if cfg.compute == "ec2" else name
    service_name = f"{name}-runtime"
    observability = Observability("obs", ObservabilityArgs(
        name=name, region=region, compute=cfg.compute, cluster_name=cluster_name, service_name=service_name,
        log_retention_days=cfg.log_retention_days, alb_arn_suffix=edge.alb.arn_suffix,
        api_target_group_arn_suffix=edge.api_target_group.arn_suffix,
        lambda_function_names=[events.authorizer.name, events.publisher.name],
        table_names=[t.name for t in data.tables.values()], alarm_email=cfg.alarm_email,
    ))

    environment: dict[str, pulumi.Input[str]] = {
        **data.environment,
        "STORE": "dynamodb",
        "SPEECH_ENGINE": "nova-sonic",
        "BEDROCK_REGION": cfg.bedrock_region,
        "NOVA_SONIC_MODEL_ID": cfg.nova_sonic_model_id,
        "APPSYNC_ENDPOINT": events.http_endpoint,
        "APPSYNC_REALTIME_ENDPOINT": events.realtime_endpoint,
        "TURN_URLS": ",".join(edge.turn_urls),
        "TRUST_PROXY_HEADERS": "true",
        "RESTAURANT_TIMEZONE": cfg.restaurant_timezone,
        "LOG_LEVEL": "info",
    }
    workload = WorkloadArgs(
        name=name, region=region, image_ref=images.image_ref, repository_arn=images.repository.arn,
        turn_image=cfg.turn_image,
        turn_conf_b64=conf_b64(render_turnserver_conf(cfg.turn_domain_name, network.private_cidrs)),
        environment=environment, secret_arns=secrets.arns, private_subnet_ids=network.private_subnet_ids,
        app_security_group_id=security.app.id, turn_security_group_id=security.turn.id,
        api_target_group_arn=edge.api_target_group.arn, turn_target_group_arn=edge.turn_target_group.arn,
        turn_tls_target_group_arn=edge.turn_tls_target_group.arn,
        table_arns=[t.arn for t in data.tables.values()], bedrock_region=cfg.bedrock_region,
        model_id=cfg.nova_sonic_model_id, runtime_log_group_name=observability.runtime_logs.name,
        runtime_log_group_arn=observability.runtime_logs.arn, turn_log_group_name=observability.turn_logs.name,
        turn_log_group_arn=observability.turn_logs.arn, min_capacity=cfg.min_capacity,
        max_capacity=cfg.max_capacity, desired_capacity=cfg.desired_capacity,
        cpu_target_percent=cfg.cpu_target_percent, cluster_name=cluster_name, service_name=service_name,
    )
    compute: EcsCompute | Ec2Compute
    if cfg.compute == "ecs":
        compute = EcsCompute("ecs", workload, task_cpu=cfg.task_cpu, task_memory=cfg.task_memory,
                             turn_count=cfg.turn_count, turn_cpu=cfg.turn_cpu, turn_memory=cfg.turn_memory)
    else:
        compute = Ec2Compute("ec2", workload, instance_type=cfg.instance_type)

    outputs: dict[str, pulumi.Input[str] | list[str]] = {
        "url": edge.url,
        "compute": cfg.compute,
        "albDnsName": edge.alb.dns_name,
        "turnUrls": edge.turn_urls,
        "eventsHttpEndpoint": events.http_endpoint,
        "eventsRealtimeEndpoint": events.realtime_endpoint,
        "imageRef": images.image_ref,
        "ecrRepositoryUrl": images.repository.repository_url,
        "dashboardName": observability.dashboard.dashboard_name,
        "alarmTopicArn": observability.topic.arn,
        "publisherDlqUrl": events.dlq.url,
        **{f"{key}Table": table.name for key, table in data.tables.items()},
    }
    return Deployment(network=network, security=security, edge=edge, data=data, events=events, images=images,
                      observability=observability, compute=compute, outputs=outputs)
