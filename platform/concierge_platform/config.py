"""Stack configuration, read once and validated before any resource is declared.

A typo in ``Pulumi.<stack>.yaml`` should stop ``pulumi up`` with a sentence naming the key, not surface
as a half-created stack, so every value is checked here and the components receive plain typed values.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pulumi

Compute = Literal["ecs", "ec2"]
COMPUTE_CHOICES: tuple[str, ...] = ("ecs", "ec2")
StaffAuth = Literal["cognito", "token"]
STAFF_AUTH_CHOICES: tuple[str, ...] = ("cognito", "token")
# staffMfa -> the user pool's MfaConfiguration (TOTP software tokens only, never SMS):
# https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-settings-mfa.html
STAFF_MFA: dict[str, str] = {"optional": "OPTIONAL", "required": "ON"}
ROOT = Path(__file__).resolve().parents[2]  # the repository (platform/concierge_platform/config.py)
DEFAULT_WEB_DIST = "webapp/dist"  # `npm run build` in webapp/ (vite.config.ts outDir)
# The CloudFront origin header's value goes into an ALB listener rule condition: at most 128 characters, and
# '*' and '?' would be wildcards there (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/rule-condition-types.html).
ORIGIN_SECRET_RE = re.compile(r"[A-Za-z0-9+/=_-]{32,128}")

# The ALB closes a connection idle this long; the runtime's HTTP keep-alive is set above it (KEEP_ALIVE_SECONDS)
# so the ALB, never the runtime, closes an idle connection (a runtime-side close races the ALB's next request
# on that connection: a 502). https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html
ALB_IDLE_TIMEOUT_S = 3600
KEEP_ALIVE_MARGIN_S = 15
# Physical-name prefix: it starts ECR repository names (lower case, separators only between alphanumerics,
# https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html) and ALB/target group
# names (32 characters, no leading/trailing "-"), so 20 lower-case characters without a trailing separator.
NAME_PREFIX_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
NAME_PREFIX_MAX = 20
# Fargate's CPU units -> allowed memory (MiB), Linux platform version 1.4:
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
AMI_ID_RE = re.compile(r"ami-[0-9a-f]{8}(?:[0-9a-f]{9})?")
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")


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
    turn_image_uri: str | None
    image_uri: str | None
    ami_id: str | None
    bedrock_region: str
    nova_sonic_model_id: str
    log_retention_days: int
    restaurant_timezone: str
    alarm_email: str | None
    deletion_protection: bool
    protect: bool
    name_prefix: str
    alb_idle_timeout: int
    drain_minutes: int
    turn_secret: pulumi.Output[str]
    staff_token: pulumi.Output[str] | None  # only with staffAuth=token: in cognito mode no one accepts it
    session_secret: pulumi.Output[str]
    # CDN (docs/edge-cdn.md): web app on S3 behind CloudFront, the ALB only behind CloudFront.
    cdn: bool
    web_dist_dir: Path  # the build `pulumi up` uploads
    origin_domain_name: str  # the ALB's own name behind CloudFront
    origin_secret: pulumi.Output[str] | None  # the header value CloudFront sends and the ALB requires (cdn only)
    price_class: str
    # Staff sign-in: Cognito user pool or the shared STAFF_TOKEN.
    staff_auth: StaffAuth
    staff_mfa: str  # a STAFF_MFA key

    @property
    def prefix(self) -> str:
        """Short physical-name prefix (validated in :func:`load`); ALB/target-group names allow only 32 characters."""
        return self.name_prefix

    @property
    def keep_alive_seconds(self) -> int:
        """The runtime's HTTP keep-alive: always above the ALB idle timeout (see ALB_IDLE_TIMEOUT_S)."""
        return self.alb_idle_timeout + KEEP_ALIVE_MARGIN_S


def _positive(cfg: pulumi.Config, key: str, default: int, *, minimum: int = 1) -> int:
    value = cfg.get_int(key)
    value = default if value is None else value
    if value < minimum:
        raise ConfigError(f"config {key} must be >= {minimum}, got {value}")
    return value


def check_name_prefix(prefix: str) -> str:
    if len(prefix) > NAME_PREFIX_MAX or not NAME_PREFIX_RE.fullmatch(prefix):
        raise ConfigError(
            f"config namePrefix {prefix!r} must be at most {NAME_PREFIX_MAX} characters of lower-case letters, "
            "digits and single '-' between them, starting with a letter (ECR and load balancer naming rules)")
    return prefix


def default_name_prefix(stack: str) -> str:
    """``concierge-<stack>`` made valid: lower case, other characters -> '-', cut to 20, no trailing '-'."""
    raw = re.sub(r"[^a-z0-9]+", "-", f"concierge-{stack}".lower())[:NAME_PREFIX_MAX]
    return raw.strip("-")


def check_fargate_size(cpu_key: str, cpu: int, memory_key: str, memory: int) -> None:
    allowed = FARGATE_SIZES.get(cpu)
    if allowed is None:
        raise ConfigError(f"config {cpu_key} must be one of the Fargate CPU sizes "
                          f"{', '.join(map(str, FARGATE_SIZES))}, got {cpu}")
    if memory not in allowed:
        raise ConfigError(f"config {memory_key}={memory} is not a Fargate memory size for {cpu_key}={cpu}; "
                          f"allowed: {allowed[0]}..{allowed[-1]} in steps of {allowed[1] - allowed[0]} MiB")


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
    stack_name = stack or pulumi.get_stack()
    name_prefix = check_name_prefix((cfg.get("namePrefix") or "").strip() or default_name_prefix(stack_name))
    task_cpu = _positive(cfg, "taskCpu", 1024, minimum=256)
    task_memory = _positive(cfg, "taskMemory", 2048, minimum=512)
    turn_cpu = _positive(cfg, "turnCpu", 512, minimum=256)
    turn_memory = _positive(cfg, "turnMemory", 1024, minimum=512)
    if compute == "ecs":
        check_fargate_size("taskCpu", task_cpu, "taskMemory", task_memory)
        check_fargate_size("turnCpu", turn_cpu, "turnMemory", turn_memory)
    ami_id = (cfg.get("amiId") or "").strip() or None
    if ami_id is not None and not AMI_ID_RE.fullmatch(ami_id):
        raise ConfigError(f"config amiId must look like ami-0123456789abcdef0, got {ami_id!r}")
    turn_image_uri = (cfg.get("turnImageUri") or "").strip() or None
    if turn_image_uri is not None and not DIGEST_RE.search(turn_image_uri):
        raise ConfigError(f"config turnImageUri must be pinned by digest (...@sha256:<64 hex>), got {turn_image_uri!r}")
    idle = _positive(cfg, "albIdleTimeoutSeconds", ALB_IDLE_TIMEOUT_S)
    if not 60 <= idle <= 4000:  # the ALB's own range is 1..4000; below 60 s idle WebSockets would drop
        raise ConfigError(f"config albIdleTimeoutSeconds must be within 60..4000, got {idle}")
    drain = _positive(cfg, "drainMinutes", 60)
    if drain > 120:  # bounded: a scale-in should not wait on a stuck call for longer than two hours
        raise ConfigError(f"config drainMinutes must be within 1..120, got {drain}")
    deletion_protection = cfg.get_bool("deletionProtection") or False
    protect = cfg.get_bool("protect")
    cdn = cfg.get_bool("cdn")
    cdn = True if cdn is None else cdn
    staff_auth = cfg.get("staffAuth") or "cognito"
    if staff_auth not in STAFF_AUTH_CHOICES:
        raise ConfigError(f"config staffAuth must be one of {', '.join(STAFF_AUTH_CHOICES)}, got {staff_auth!r}")
    staff_mfa = (cfg.get("staffMfa") or "optional").lower()
    if staff_mfa not in STAFF_MFA:
        raise ConfigError(f"config staffMfa must be one of {', '.join(STAFF_MFA)}, got {staff_mfa!r}")
    origin_domain = (cfg.get("originDomainName") or f"origin.{domain}").strip().rstrip(".").lower()
    if cdn and origin_domain == domain:
        raise ConfigError("config originDomainName must differ from domainName: the site name points at CloudFront")
    if origin_domain != zone and not origin_domain.endswith("." + zone):
        raise ConfigError(f"config originDomainName {origin_domain!r} is not inside hostedZoneName {zone!r}")
    web_dist = Path(cfg.get("webDistDir") or DEFAULT_WEB_DIST)
    web_dist = web_dist if web_dist.is_absolute() else ROOT / web_dist
    if cdn and not (web_dist / "index.html").is_file():
        raise ConfigError(f"config webDistDir {web_dist} holds no index.html: build the web app first "
                          "(cd webapp && npm ci && npm run build), or set cdn false")
    price_class = cfg.get("cdnPriceClass") or "PriceClass_100"
    if price_class not in ("PriceClass_100", "PriceClass_200", "PriceClass_All"):
        raise ConfigError(f"config cdnPriceClass must be PriceClass_100, PriceClass_200 or PriceClass_All, "
                          f"got {price_class!r}")
    turn_secret = cfg.require_secret("turnSecret")
    staff_token = cfg.require_secret("staffToken") if staff_auth == "token" else None
    session_secret = cfg.require_secret("sessionSecret")
    # Read plainly only to check it here, before any resource exists (get_secret is Output.secret(get(...))); it
    # leaves as a secret Output, so Pulumi encrypts it in state and never prints it.
    origin_raw = cfg.get("originSecret") if cdn else None
    if cdn and origin_raw is None:
        raise ConfigError("config originSecret is required with cdn true: "
                          "pulumi config set --secret originSecret \"$(openssl rand -hex 32)\"")
    if origin_raw is not None and not ORIGIN_SECRET_RE.fullmatch(origin_raw):
        raise ConfigError("config originSecret must be 32..128 characters of letters, digits and + / = _ - "
                          "(e.g. openssl rand -hex 32)")
    origin_secret = pulumi.Output.secret(origin_raw) if origin_raw is not None else None
    return StackConfig(
        project=project or pulumi.get_project(),
        stack=stack_name,
        compute=compute,  # type: ignore[arg-type]  # checked against COMPUTE_CHOICES above
        domain_name=domain,
        hosted_zone_name=zone,
        turn_domain_name=turn_domain,
        vpc_cidr=str(net),
        min_capacity=min_cap,
        max_capacity=max_cap,
        desired_capacity=desired,
        cpu_target_percent=float(cpu_target),
        task_cpu=task_cpu,
        task_memory=task_memory,
        instance_type=cfg.get("instanceType") or "c7i.large",
        turn_count=_positive(cfg, "turnCount", 1),
        turn_cpu=turn_cpu,
        turn_memory=turn_memory,
        turn_image=cfg.get("turnImage") or "coturn/coturn:4.6.3",
        turn_image_uri=turn_image_uri,
        image_uri=image_uri,
        ami_id=ami_id,
        bedrock_region=cfg.get("bedrockRegion") or "us-east-1",
        nova_sonic_model_id=cfg.get("novaSonicModelId") or "amazon.nova-2-sonic-v1:0",
        log_retention_days=retention,
        restaurant_timezone=cfg.get("restaurantTimezone") or "UTC",
        alarm_email=(cfg.get("alarmEmail") or "").strip() or None,
        deletion_protection=deletion_protection,
        protect=deletion_protection if protect is None else protect,
        name_prefix=name_prefix,
        alb_idle_timeout=idle,
        drain_minutes=drain,
        turn_secret=turn_secret,
        staff_token=staff_token,
        session_secret=session_secret,
        cdn=cdn,
        web_dist_dir=web_dist,
        origin_domain_name=origin_domain,
        origin_secret=origin_secret,
        price_class=price_class,
        staff_auth=staff_auth,  # type: ignore[arg-type]  # checked against STAFF_AUTH_CHOICES above
        staff_mfa=staff_mfa,
    )
