"""Stack configuration, read once and validated before any resource is declared.

A typo in ``Pulumi.<stack>.yaml`` should stop ``pulumi up`` with a sentence naming the key, not surface
as a half-created stack, so every value is checked here and the components receive plain typed values.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

import pulumi

Compute = Literal["ecs", "ec2"]
COMPUTE_CHOICES: tuple[str, ...] = ("ecs", "ec2")


class ConfigError(ValueError):
    """A stack setting is missing or out of range; the message names the key."""


@dataclass(frozen=True)
class StackConfig:
    """Everything the program reads from ``pulumi config``; see the README's deploy section."""

    project: str
    stack: str
    compute: Compute
    domain_name: str
    hosted_zone_name: str
    turn_domain_name: str
    vpc_cidr: str
    min_capacity: int
    max_capacity: int
    desired_capacity: int
    cpu_target_percent: float
    task_cpu: int
    task_memory: int
    instance_type: str
    turn_count: int
    turn_cpu: int
    turn_memory: int
    turn_image: str
    image_uri: str | None
    bedrock_region: str
    nova_sonic_model_id: str
    log_retention_days: int
    restaurant_timezone: str
    alarm_email: str | None
    deletion_protection: bool
    turn_secret: pulumi.Output[str]
    staff_token: pulumi.Output[str]
    session_secret: pulumi.Output[str]

    @property
    def prefix(self) -> str:
        """Short physical-name prefix; ALB/target-group names allow only 32 characters."""
        return f"concierge-{self.stack}"[:20]


def _positive(cfg: pulumi.Config, key: str, default: int, *, minimum: int = 1) -> int:
    value = cfg.get_int(key)
    value = default if value is None else value
    if value < minimum:
        raise ConfigError(f"config {key} must be >= {minimum}, got {value}")
    return value


def load(project: str | None = None, stack: str | None = None) -> StackConfig:
    """Read and check the stack's settings. Secrets stay Outputs so they are never printed."""
    cfg = pulumi.Config()
    compute = cfg.get("compute") or "ecs"
    if compute not in COMPUTE_CHOICES:
        raise ConfigError(f"config compute must be one of {', '.join(COMPUTE_CHOICES)}, got {compute!r}")
    domain = cfg.require("domainName").strip().rstrip(".").lower()
    zone = (cfg.get("hostedZoneName") or domain.split(".", 1)[-1]).strip().rstrip(".").lower()
    if domain != zone and not domain.endswith("." + zone):
        raise ConfigError(f"config domainName {domain!r} is not inside hostedZoneName {zone!r}")
    turn_domain = (cfg.get("turnDomainName") or f"turn.{domain}").strip().rstrip(".").lower()
    if turn_domain != zone and not turn_domain.endswith("." + zone):
        raise ConfigError(f"config turnDomainName {turn_domain!r} is not inside hostedZoneName {zone!r}")
    vpc_cidr = cfg.get("vpcCidr") or "10.40.0.0/16"
    try:
        net = ipaddress.ip_network(vpc_cidr)
    except ValueError as exc:
        raise ConfigError(f"config vpcCidr {vpc_cidr!r} is not a CIDR block") from exc
    if not isinstance(net, ipaddress.IPv4Network) or not 16 <= net.prefixlen <= 20:
        raise ConfigError(f"config vpcCidr must be an IPv4 block between /16 and /20, got {vpc_cidr}")
    min_cap = _positive(cfg, "minCapacity", 1)
    max_cap = _positive(cfg, "maxCapacity", 2)
    desired = _positive(cfg, "desiredCapacity", min_cap)
    if not min_cap <= desired <= max_cap:
        raise ConfigError(f"need minCapacity <= desiredCapacity <= maxCapacity, got {min_cap}/{desired}/{max_cap}")
    cpu_target = cfg.get_float("cpuTargetPercent") or 60.0
    if not 10 <= cpu_target <= 90:
        raise ConfigError(f"config cpuTargetPercent must be within 10..90, got {cpu_target}")
    retention = _positive(cfg, "logRetentionDays", 30)
    image_uri = (cfg.get("imageUri") or "").strip() or None
    return StackConfig(
        project=project or pulumi.get_project(),
        stack=stack or pulumi.get_stack(),
        compute=compute,  # type: ignore[arg-type]  # checked against COMPUTE_CHOICES above
        domain_name=domain,
        hosted_zone_name=zone,
        turn_domain_name=turn_domain,
        vpc_cidr=str(net),
        min_capacity=min_cap,
        max_capacity=max_cap,
        desired_capacity=desired,
        cpu_target_percent=float(cpu_target),
        task_cpu=_positive(cfg, "taskCpu", 1024, minimum=256),
        task_memory=_positive(cfg, "taskMemory", 2048, minimum=512),
        instance_type=cfg.get("instanceType") or "c7i.large",
        turn_count=_positive(cfg, "turnCount", 1),
        turn_cpu=_positive(cfg, "turnCpu", 512, minimum=256),
        turn_memory=_positive(cfg, "turnMemory", 1024, minimum=512),
        turn_image=cfg.get("turnImage") or "coturn/coturn:4.6.3",
        image_uri=image_uri,
        bedrock_region=cfg.get("bedrockRegion") or "us-east-1",
        nova_sonic_model_id=cfg.get("novaSonicModelId") or "amazon.nova-2-sonic-v1:0",
        log_retention_days=retention,
        restaurant_timezone=cfg.get("restaurantTimezone") or "UTC",
        alarm_email=(cfg.get("alarmEmail") or "").strip() or None,
        deletion_protection=cfg.get_bool("deletionProtection") or False,
        turn_secret=cfg.require_secret("turnSecret"),
        staff_token=cfg.require_secret("staffToken"),
        session_secret=cfg.require_secret("sessionSecret"),
    )
