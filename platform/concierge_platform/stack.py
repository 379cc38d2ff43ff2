"""The whole deployment, wired from the components; ``platform/__main__.py`` calls :func:`build`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .cdn import Cdn, CdnArgs
from .compute_ec2 import Ec2Compute
from .compute_ecs import EcsCompute
from .config import STAFF_MFA, StackConfig
from .coturn import conf_b64, deployed_confs
from .data import Data, DataArgs
from .edge import Edge, EdgeArgs, waf_rules, waf_visibility
from .events import CognitoAuth, Events, EventsArgs
from .images import Images, ImagesArgs
from .lambda_code import lambda_archive
from .logs import LogArchive, LogArchiveArgs
from .network import Network, NetworkArgs
from .observability import Observability, ObservabilityArgs
from .secrets import AppSecrets, AppSecretsArgs
from .security import SecurityGroups, SecurityGroupsArgs
from .staff_pool import StaffPool, StaffPoolArgs
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
    cdn: Cdn | None = None
    staff_pool: StaffPool | None = None


def build(cfg: StackConfig) -> Deployment:
    region = aws.get_region().region
    name = cfg.prefix
    network = Network("net", NetworkArgs(cidr=cfg.vpc_cidr, name=name, region=region))
    # The account id, read off a resource ARN instead of an extra get_caller_identity call.
    account_id = network.vpc.arn.apply(lambda arn: arn.split(":")[4])
    # CloudFront's origin-facing servers, the only clients the ALB has behind the CDN (a regional list):
    # https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/LocationsOfEdgeServers.html
    cloudfront_prefix_list = (aws.ec2.get_managed_prefix_list(name="com.amazonaws.global.cloudfront.origin-facing")
                              if cfg.cdn else None)
    security = SecurityGroups("security", SecurityGroupsArgs(
        vpc_id=network.vpc.id, name=name,
        alb_prefix_list_id=cloudfront_prefix_list.id if cloudfront_prefix_list is not None else None))
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
        origin_domain_name=cfg.origin_domain_name if cfg.cdn else None,
        origin_secret=cfg.origin_secret if cfg.cdn else None,
    ))
    cdn: Cdn | None = None
    if cfg.cdn:
        assert cfg.origin_secret is not None  # config.load requires it with cdn
        cdn = Cdn("cdn", CdnArgs(
            name=name, domain_name=cfg.domain_name, zone_id=edge.zone_id, origin_domain_name=cfg.origin_domain_name,
            origin_secret=cfg.origin_secret, dist_dir=cfg.web_dist_dir, waf_rules=waf_rules,
            waf_visibility=waf_visibility, price_class=cfg.price_class))
    staff_pool: StaffPool | None = None
    cognito: CognitoAuth | None = None
    if cfg.staff_auth == "cognito":
        staff_pool = StaffPool("staff", StaffPoolArgs(name=name, mfa=STAFF_MFA[cfg.staff_mfa], protect=cfg.protect))
        cognito = CognitoAuth(user_pool_id=staff_pool.pool.id, client_id=staff_pool.client.id, region=region)
    events = Events("events", EventsArgs(
        name=name, tables=data.tables, table_environment=data.environment,
        staff_token_secret_arn=secrets.arns.get("STAFF_TOKEN"), session_secret_arn=secrets.arns["SESSION_SECRET"],
        code=lambda_archive(), log_retention_days=cfg.log_retention_days, region=region, account_id=account_id,
        cognito=cognito,
    ))
    web_acl = cdn.web_acl if cdn is not None else edge.web_acl
    assert web_acl is not None  # the ALB has its own web ACL exactly when there is no CDN
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
        dlq_name=events.dlq.name, publisher_function_name=events.publisher.name, web_acl_arn=web_acl.arn,
        waf_provider=cdn.us_east_1 if cdn is not None else None,
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
    # The site's public origin, whatever Host reaches the runtime (/api/config builds URLs from it).
    environment["PUBLIC_ORIGIN"] = f"https://{cfg.domain_name}"
    if cdn is not None:
        # Browsers open the runtime's WebSockets from the site's origin, while the Host CloudFront sends the ALB is
        # the origin's own name (AllViewerExceptHostHeader): the site must be allowed explicitly (runtime/origin.py).
        environment["ALLOWED_ORIGINS"] = f"https://{cfg.domain_name}"
        # CloudFront writes the viewer's address into X-Forwarded-For and the ALB appends CloudFront's: the client
        # is the second entry from the right (anything further left came from the client itself).
        environment["TRUSTED_PROXY_HOPS"] = "2"
    if staff_pool is not None:
        environment.update({
            "STAFF_AUTH": "cognito",
            "COGNITO_USER_POOL_ID": staff_pool.pool.id,
            "COGNITO_CLIENT_ID": staff_pool.client.id,
            "COGNITO_REGION": region,
            "COGNITO_STAFF_GROUP": staff_pool.group.name,
        })
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
        "cdn": "true" if cdn is not None else "false",
        "staffAuth": cfg.staff_auth,
    }
    if cdn is not None:
        outputs.update({"originUrl": f"https://{cfg.origin_domain_name}", "distributionId": cdn.distribution.id,
                        "distributionDomainName": cdn.distribution.domain_name, "webBucket": cdn.bucket.bucket})
    if staff_pool is not None:
        outputs.update({"staffUserPoolId": staff_pool.pool.id, "staffUserPoolClientId": staff_pool.client.id})
    return Deployment(network=network, security=security, edge=edge, data=data, events=events, images=images,
                      observability=observability, logs=logs, compute=compute, outputs=outputs, cdn=cdn,
                      staff_pool=staff_pool)
