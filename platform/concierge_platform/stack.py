"""The whole deployment, wired from the components; ``platform/__main__.py`` calls :func:`build`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .compute_ec2 import Ec2Compute
from .compute_ecs import EcsCompute
from .config import StackConfig
from .coturn import conf_b64, deployed_confs
from .data import Data, DataArgs
from .edge import Edge, EdgeArgs
from .events import Events, EventsArgs
from .images import Images, ImagesArgs
from .lambda_code import lambda_archive
from .logs import LogArchive, LogArchiveArgs
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
    logs: LogArchive
    compute: EcsCompute | Ec2Compute
    outputs: dict[str, pulumi.Input[str] | list[str]]


def build(cfg: StackConfig) -> Deployment:
    region = aws.get_region().region
    name = cfg.prefix
    network = Network("net", NetworkArgs(cidr=cfg.vpc_cidr, name=name, region=region))
    # The account id, read off a resource ARN instead of an extra get_caller_identity call.
    account_id = network.vpc.arn.apply(lambda arn: arn.split(":")[4])
    security = SecurityGroups("security", SecurityGroupsArgs(vpc_id=network.vpc.id, name=name))
    logs = LogArchive("logs", LogArchiveArgs(name=name, region=region, account_id=account_id,
                                             vpc_id=network.vpc.id, retention_days=cfg.log_retention_days,
                                             protect=cfg.protect))
    secrets = AppSecrets("secrets", AppSecretsArgs(name=name, turn_secret=cfg.turn_secret,
                                                   staff_token=cfg.staff_token, session_secret=cfg.session_secret,
                                                   protect=cfg.protect))
    data = Data("data", DataArgs(name=name, deletion_protection=cfg.deletion_protection, protect=cfg.protect))
    edge = Edge("edge", EdgeArgs(
        name=name, vpc_id=network.vpc.id, public_subnet_ids=network.public_subnet_ids,
        alb_security_group_id=security.alb.id, turn_lb_security_group_id=security.turn_lb.id,
        domain_name=cfg.domain_name, turn_domain_name=cfg.turn_domain_name, hosted_zone_name=cfg.hosted_zone_name,
        target_type="ip" if cfg.compute == "ecs" else "instance",
        log_bucket=logs.bucket.bucket, log_bucket_ready=logs.policy, idle_timeout=cfg.alb_idle_timeout,
        deletion_protection=cfg.deletion_protection,
    ))
    events = Events("events", EventsArgs(
        name=name, tables=data.tables, table_environment=data.environment,
        staff_token_secret_arn=secrets.arns["STAFF_TOKEN"], session_secret_arn=secrets.arns["SESSION_SECRET"],
        code=lambda_archive(), log_retention_days=cfg.log_retention_days, region=region, account_id=account_id,
    ))
    images = Images("images", ImagesArgs(name=name, image_uri=cfg.image_uri, turn_image=cfg.turn_image,
                                         turn_image_uri=cfg.turn_image_uri, protect=cfg.protect))
    cluster_name = f"{name}-hosts" if cfg.compute == "ec2" else name
    service_name = f"{name}-runtime"
    observability = Observability("obs", ObservabilityArgs(
        name=name, region=region, compute=cfg.compute, cluster_name=cluster_name, service_name=service_name,
        log_retention_days=cfg.log_retention_days, alb_arn_suffix=edge.alb.arn_suffix,
        api_target_group_arn_suffix=edge.api_target_group.arn_suffix,
        lambda_function_names=[events.authorizer.name, events.publisher.name],
        table_names=[t.name for t in data.tables.values()], alarm_email=cfg.alarm_email,
        account_id=account_id, nlb_arn_suffix=edge.nlb.arn_suffix,
        turn_target_group_arn_suffixes={t: tg.arn_suffix for t, tg in edge.turn_target_groups.items()},
        dlq_name=events.dlq.name, publisher_function_name=events.publisher.name, web_acl_arn=edge.web_acl.arn,
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
        # Set from the same config as the ALB's idle timeout, always above it (config.keep_alive_seconds).
        "KEEP_ALIVE_SECONDS": str(cfg.keep_alive_seconds),
    }
    workload = WorkloadArgs(
        name=name, region=region, account_id=account_id, image_ref=images.image_ref,
        repository_arn=images.repository.arn, turn_image_ref=images.turn_image_ref,
        turn_repository_arn=images.turn_repository.arn if images.turn_repository is not None else None,
        turn_conf_b64={t: conf_b64(c) for t, c in deployed_confs(cfg.turn_domain_name,
                                                                  network.private_cidrs).items()},
        environment=environment, secret_arns=secrets.arns, private_subnet_ids=network.private_subnet_ids,
        app_security_group_id=security.app.id, turn_security_group_id=security.turn.id,
        api_target_group_arn=edge.api_target_group.arn,
        turn_target_group_arns={t: tg.arn for t, tg in edge.turn_target_groups.items()},
        table_arns=[t.arn for t in data.tables.values()], bedrock_region=cfg.bedrock_region,
        model_id=cfg.nova_sonic_model_id, runtime_log_group_name=observability.runtime_logs.name,
        runtime_log_group_arn=observability.runtime_logs.arn, turn_log_group_name=observability.turn_logs.name,
        turn_log_group_arn=observability.turn_logs.arn, min_capacity=cfg.min_capacity,
        max_capacity=cfg.max_capacity, desired_capacity=cfg.desired_capacity,
        cpu_target_percent=cfg.cpu_target_percent, cluster_name=cluster_name, service_name=service_name,
        drain_minutes=cfg.drain_minutes, api_listeners=edge.listeners_of["api"],
        turn_listeners={t: edge.listeners_of[t] for t in ("udp", "tcp")},
    )
    compute: EcsCompute | Ec2Compute
    if cfg.compute == "ecs":
        compute = EcsCompute("ecs", workload, task_cpu=cfg.task_cpu, task_memory=cfg.task_memory,
                             turn_count=cfg.turn_count, turn_cpu=cfg.turn_cpu, turn_memory=cfg.turn_memory)
    else:
        compute = Ec2Compute("ec2", workload, instance_type=cfg.instance_type, ami_id=cfg.ami_id)

    outputs: dict[str, pulumi.Input[str] | list[str]] = {
        "url": edge.url,
        "compute": cfg.compute,
        "albDnsName": edge.alb.dns_name,
        "turnUrls": edge.turn_urls,
        "eventsHttpEndpoint": events.http_endpoint,
        "eventsRealtimeEndpoint": events.realtime_endpoint,
        "imageRef": images.image_ref,
        "turnImageRef": images.turn_image_ref,
        "ecrRepositoryUrl": images.repository.repository_url,
        "dashboardName": observability.dashboard.dashboard_name,
        "alarmTopicArn": observability.topic.arn,
        "publisherDlqUrl": events.dlq.url,
        "logBucket": logs.bucket.bucket,
        **{f"{key}Table": table.name for key, table in data.tables.items()},
    }
    return Deployment(network=network, security=security, edge=edge, data=data, events=events, images=images,
                      observability=observability, logs=logs, compute=compute, outputs=outputs)
