"""Edge: what the Internet sees. HTTPS ALB (+WAF) for the API, web app and WebSockets; NLB for TURN.

With the CDN (cdn.py) the ALB is CloudFront's origin instead: it has its own name and certificate
(``originDomainName``), no HTTP listener and no regional WAF (the CloudFront web ACL holds the rules; here
every client address would be a CloudFront edge's), and its HTTPS listener answers 403 unless the request
carries CloudFront's secret origin header (docs/edge-cdn.md).

Certificates are validated through Route 53 using Output lifting on ``domain_validation_options[0]``
(one name per certificate), never by creating records inside an ``apply`` (invisible to previews).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from .cdn import ORIGIN_HEADER
from .config import ALB_IDLE_TIMEOUT_S
from .logs import ALB_PREFIX
from .security import APP_PORT, TURN_PORT, TURN_TCP_PORT, TURN_TLS_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
WEBSOCKET_IDLE_TIMEOUT_S = ALB_IDLE_TIMEOUT_S  # a call's WebSocket (audio fallback, events) idles between turns
WAF_RATE_LIMIT = 2000  # requests per IP per 5-minute window
WAF_RATE_WINDOW_S = 300


def waf_visibility(metric: str) -> dict[str, object]:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def _managed(rule: str, priority: int, count_only: tuple[str, ...] = ()) -> dict[str, object]:
    statement: dict[str, object] = {"name": rule, "vendor_name": "AWS"}
    if count_only:
        statement["rule_action_overrides"] = [{"name": r, "action_to_use": {"count": {}}} for r in count_only]
    return {"name": rule, "priority": priority, "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": statement}, "visibility_config": waf_visibility(rule)}


def waf_rules() -> list[dict[str, object]]:
    """The web ACL's rules, the same on the ALB (REGIONAL) and on CloudFront (CLOUDFRONT)."""
    return [
        # The common rule set blocks bodies over 8 KB; a non-trickle WebRTC offer carries every ICE
        # candidate and can exceed that, so that one rule only counts (the runtime caps bodies itself).
        _managed("AWSManagedRulesCommonRuleSet", 10, count_only=("SizeRestrictions_BODY",)),
        _managed("AWSManagedRulesKnownBadInputsRuleSet", 20),
        {"name": "rate-limit-per-ip", "priority": 30, "action": {"block": {}},
         "statement": {"rate_based_statement": {"limit": WAF_RATE_LIMIT, "aggregate_key_type": "IP",
                                                "evaluation_window_sec": WAF_RATE_WINDOW_S}},
         "visibility_config": waf_visibility("rate-limit-per-ip")},
    ]


@dataclass
class EdgeArgs:
    name: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    alb_security_group_id: pulumi.Input[str]
    turn_lb_security_group_id: pulumi.Input[str]
    domain_name: str
    turn_domain_name: str
    hosted_zone_name: str
    target_type: Literal["ip", "instance"]  # Fargate tasks register IPs, the ASG registers instances
    log_bucket: pulumi.Input[str] | None = None  # ALB access logs (logs.LogArchive)
    log_bucket_ready: pulumi.Resource | None = None  # its bucket policy: ELB checks write access at enable time
    idle_timeout: int = WEBSOCKET_IDLE_TIMEOUT_S
    deletion_protection: bool = False
    # CDN mode: the ALB's own host name and the header value CloudFront sends it (None: the ALB is the site).
    origin_domain_name: str | None = None
    origin_secret: pulumi.Input[str] | None = None


class Edge(pulumi.ComponentResource):
    """ACM + Route 53, ALB with redirect and HTTPS listeners, WAFv2 web ACL, TURN NLB."""

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Edge", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.get_zone(name=args.hosted_zone_name, private_zone=False)
        self.zone_id: str = zone.zone_id

        behind_cdn = args.origin_domain_name is not None
        alb_domain = args.origin_domain_name if args.origin_domain_name is not None else args.domain_name
        api_cert = self._certificate(f"{name}-api", alb_domain, child)
        turn_cert = self._certificate(f"{name}-turn", args.turn_domain_name, child)

        # --- API load balancer -----------------------------------------------------------------
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb", load_balancer_type="application", internal=False,
            subnets=args.public_subnet_ids, security_groups=[args.alb_security_group_id],
            idle_timeout=args.idle_timeout, drop_invalid_header_fields=True,
            enable_http2=True, enable_deletion_protection=args.deletion_protection,
            access_logs=({"bucket": args.log_bucket, "enabled": True, "prefix": ALB_PREFIX}
                         if args.log_bucket is not None else None),
            tags={"Name": f"{args.name}-api"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.log_bucket_ready] if args.log_bucket_ready
                                        else []),
        )
        self.api_target_group = aws.lb.TargetGroup(
            f"{name}-api-tg", port=APP_PORT, protocol="HTTP", target_type=args.target_type, vpc_id=args.vpc_id,
            deregistration_delay=120,  # let a call's WebSocket finish before the task goes away
            health_check={"path": "/readyz", "matcher": "200", "protocol": "HTTP", "port": "traffic-port",
                          "interval": 15, "timeout": 5, "healthy_threshold": 2, "unhealthy_threshold": 3},
            tags={"Name": f"{args.name}-api"}, opts=child,
        )
        self.http_listener: aws.lb.Listener | None = None
        if not behind_cdn:  # CloudFront talks HTTPS only; nobody else may reach the ALB at all
            self.http_listener = aws.lb.Listener(
                f"{name}-http", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                default_actions=[{"type": "redirect",
                                  "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}],
                opts=child,
            )
        forward = {"type": "forward", "target_group_arn": self.api_target_group.arn}
        refuse = {"type": "fixed-response",
                  "fixed_response": {"content_type": "text/plain", "message_body": "Forbidden", "status_code": "403"}}
        self.https_listener = aws.lb.Listener(
            f"{name}-https", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
            ssl_policy=TLS_POLICY, certificate_arn=api_cert.certificate_arn,
            default_actions=[refuse if behind_cdn else forward],
            opts=child,
        )
        self.origin_rule: aws.lb.ListenerRule | None = None
        if behind_cdn:
            # Only requests carrying CloudFront's secret header reach the runtime; the prefix list in the security
            # group admits every CloudFront distribution, this header only ours.
            # https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/restrict-access-to-load-balancer.html
            self.origin_rule = aws.lb.ListenerRule(
                f"{name}-from-cloudfront", listener_arn=self.https_listener.arn, priority=1,
                conditions=[{"http_header": {"http_header_name": ORIGIN_HEADER, "values": [args.origin_secret]}}],
                actions=[forward], opts=child,
            )

        # --- WAF on the ALB (without the CDN; with it the CloudFront web ACL, cdn.py, has these rules) -----
        self.web_acl: aws.wafv2.WebAcl | None = None
        if not behind_cdn:
            self.web_acl = aws.wafv2.WebAcl(
                f"{name}-waf", scope="REGIONAL", default_action={"allow": {}}, rules=waf_rules(),
                visibility_config=waf_visibility(f"{args.name}-waf"), opts=child,
            )
            aws.wafv2.WebAclAssociation(f"{name}-waf-alb", resource_arn=self.alb.arn,
                                        web_acl_arn=self.web_acl.arn, opts=child)

        # --- TURN load balancer --------------------------------------------------------------------
        # One protocol per port (security.TURN_TCP_PORT): UDP 3478 -> the UDP relay process, TCP 3479 and
        # TLS 443 (terminated here) -> the TCP relay process on 3479. Both health checks probe TCP 3479.
        self.nlb = aws.lb.LoadBalancer(
            f"{name}-nlb", load_balancer_type="network", internal=False, subnets=args.public_subnet_ids,
            security_groups=[args.turn_lb_security_group_id], enable_cross_zone_load_balancing=True,
            enable_deletion_protection=args.deletion_protection,
            tags={"Name": f"{args.name}-turn"}, opts=child,
        )
        tcp_health = {"protocol": "TCP", "port": str(TURN_TCP_PORT), "interval": 10,
                      "healthy_threshold": 2, "unhealthy_threshold": 2}
        self.turn_target_group = aws.lb.TargetGroup(
            f"{name}-turn-tg", port=TURN_PORT, protocol="UDP", target_type=args.target_type,
            vpc_id=args.vpc_id, health_check=tcp_health, deregistration_delay=60,
            tags={"Name": f"{args.name}-turn-udp"}, opts=child,
        )
        self.turn_tcp_target_group = aws.lb.TargetGroup(
            f"{name}-turns-tg", port=TURN_TCP_PORT, protocol="TCP", target_type=args.target_type,
            vpc_id=args.vpc_id, health_check=tcp_health, deregistration_delay=60,
            tags={"Name": f"{args.name}-turn-tcp"}, opts=child,
        )
        self.turn_target_groups = {"udp": self.turn_target_group, "tcp": self.turn_tcp_target_group}
        self.turn_listener = aws.lb.Listener(
            f"{name}-turn", load_balancer_arn=self.nlb.arn, port=TURN_PORT, protocol="UDP",
            default_actions=[{"type": "forward", "target_group_arn": self.turn_target_group.arn}], opts=child,
        )
        self.turn_tcp_listener = aws.lb.Listener(
            f"{name}-turn-tcp", load_balancer_arn=self.nlb.arn, port=TURN_TCP_PORT, protocol="TCP",
            default_actions=[{"type": "forward", "target_group_arn": self.turn_tcp_target_group.arn}], opts=child,
        )
        self.turn_tls_listener = aws.lb.Listener(
            f"{name}-turns", load_balancer_arn=self.nlb.arn, port=TURN_TLS_PORT, protocol="TLS",
            ssl_policy=TLS_POLICY, certificate_arn=turn_cert.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": self.turn_tcp_target_group.arn}], opts=child,
        )
        # What each target group's consumers (ECS services, the ASG) must wait for.
        self.listeners_of: dict[str, list[pulumi.Resource]] = {
            "api": [self.https_listener, *([self.origin_rule] if self.origin_rule is not None else [])],
            "udp": [self.turn_listener],
            "tcp": [self.turn_tcp_listener, self.turn_tls_listener],
        }

        # --- DNS ------------------------------------------------------------------------------------
        # With the CDN the site name is CloudFront's (cdn.py) and this record is the origin's name.
        for key, fqdn, lb in (("api", alb_domain, self.alb), ("turn", args.turn_domain_name, self.nlb)):
            aws.route53.Record(
                f"{name}-{key}-alias", zone_id=self.zone_id, name=fqdn, type="A",
                aliases=[{"name": lb.dns_name, "zone_id": lb.zone_id, "evaluate_target_health": True}],
                opts=child,
            )

        self.url = f"https://{args.domain_name}"
        self.turn_urls = [
            f"turn:{args.turn_domain_name}:{TURN_PORT}?transport=udp",
            f"turn:{args.turn_domain_name}:{TURN_TCP_PORT}?transport=tcp",
            f"turns:{args.turn_domain_name}:{TURN_TLS_PORT}?transport=tcp",
        ]
        self.register_outputs({"url": self.url, "albDnsName": self.alb.dns_name, "nlbDnsName": self.nlb.dns_name})

    def _certificate(self, name: str, domain: str, child: pulumi.ResourceOptions) -> aws.acm.CertificateValidation:
        cert = aws.acm.Certificate(name, domain_name=domain, validation_method="DNS", opts=child)
        option = cert.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-validation", zone_id=self.zone_id, name=option.resource_record_name,
            type=option.resource_record_type, records=[option.resource_record_value], ttl=60,
            allow_overwrite=True, opts=child,
        )
        return aws.acm.CertificateValidation(f"{name}-validated", certificate_arn=cert.arn,
                                             validation_record_fqdns=[record.fqdn], opts=child)
