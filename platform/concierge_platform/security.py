"""Security groups: only the load-balancer listeners face the Internet; everything else is SG-to-SG.

There is no separate web-app group: the built web app is static files served by the runtime itself
(`webapp/dist` inside the image), so it is reached through the API load balancer and the API service
group like the API.

The runtime's UDP (aiortc picks random ephemeral ports) is open only
to the TURN relays' group: browsers never send media to the runtime directly, coturn relays it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

APP_PORT = 8000
# One protocol per port end to end: ECS refuses one container port in two port mappings
# (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_PortMapping.html), and an NLB cannot hold a
# UDP and a TCP listener on one port except as TCP_UDP, which forwards both to ONE target port. So TURN/UDP
# is 3478 and TURN/TCP 3479 on the load balancer and on the relays, each served by its own coturn process.
TURN_PORT = 3478  # UDP
TURN_TCP_PORT = 3479  # TCP (plain TURN over TCP, and the TLS listener's target)
TURN_TLS_PORT = 443
RELAY_MIN_PORT = 49152
RELAY_MAX_PORT = 65535
EPHEMERAL_MIN_PORT = 1024
WORLD = "0.0.0.0/0"


@dataclass
class SecurityGroupsArgs:
    vpc_id: pulumi.Input[str]
    name: str
    # CDN mode: the CloudFront origin-facing managed prefix list; the ALB then admits HTTPS from it only.
    alb_prefix_list_id: pulumi.Input[str] | None = None


class SecurityGroups(pulumi.ComponentResource):
    """Four groups: API load balancer, API service, TURN load balancer, TURN relays."""

    def __init__(self, name: str, args: SecurityGroupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:SecurityGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._name = name
        self._child = child

        def group(key: str, description: str) -> aws.ec2.SecurityGroup:
            # EC2 refuses group names starting with "sg-" (the provider would auto-name "sg-alb-1a2b3c4"), so the
            # physical name is an explicit prefix: create-before-delete replacements still get a fresh name.
            # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
            return aws.ec2.SecurityGroup(
                f"{name}-{key}", name_prefix=f"{args.name}-{key}-", vpc_id=args.vpc_id, description=description,
                tags={"Name": f"{args.name}-{key}"}, opts=child,
            )

        self.alb = group("alb", "API load balancer: HTTPS from CloudFront only" if args.alb_prefix_list_id is not None
                         else "API load balancer: HTTPS and HTTP (redirect) from the Internet")
        self.app = group("app", "API service (runtime): HTTP from the ALB, media UDP from the TURN relays")
        self.turn_lb = group("turn-lb", "TURN load balancer: TURN UDP 3478, TCP 3479 and TURN-over-TLS 443")
        self.turn = group("turn", "TURN relays (coturn): TURN from the NLB, relayed media from the runtime")

        # Internet -> load balancers: the only world-open ingress, one listener port each. Behind CloudFront the ALB
        # admits its origin-facing servers only (the prefix list counts as its weight against the group's rule
        # quota: https://docs.aws.amazon.com/vpc/latest/userguide/working-with-aws-managed-prefix-lists.html).
        if args.alb_prefix_list_id is not None:
            self._ingress("alb-https-cloudfront", self.alb, "tcp", 443, 443, prefix_list=args.alb_prefix_list_id)
        else:
            self._ingress("alb-https", self.alb, "tcp", 443, 443, cidr=WORLD)
            self._ingress("alb-http", self.alb, "tcp", 80, 80, cidr=WORLD)
        self._ingress("turn-lb-udp", self.turn_lb, "udp", TURN_PORT, TURN_PORT, cidr=WORLD)
        self._ingress("turn-lb-tcp", self.turn_lb, "tcp", TURN_TCP_PORT, TURN_TCP_PORT, cidr=WORLD)
        self._ingress("turn-lb-tls", self.turn_lb, "tcp", TURN_TLS_PORT, TURN_TLS_PORT, cidr=WORLD)

        # Load balancers -> targets.
        self._egress("alb-to-app", self.alb, "tcp", APP_PORT, APP_PORT, peer=self.app)
        self._ingress("app-from-alb", self.app, "tcp", APP_PORT, APP_PORT, peer=self.alb)
        for proto, port in (("udp", TURN_PORT), ("tcp", TURN_TCP_PORT)):  # TCP 3479 also carries the health checks
            self._egress(f"turn-lb-to-turn-{proto}", self.turn_lb, proto, port, port, peer=self.turn)
            self._ingress(f"turn-from-lb-{proto}", self.turn, proto, port, port, peer=self.turn_lb)

        # Media between relay and runtime, never from anywhere else.
        self._ingress("app-media-from-turn", self.app, "udp", EPHEMERAL_MIN_PORT, 65535, peer=self.turn)
        self._ingress("turn-relay-from-app", self.turn, "udp", RELAY_MIN_PORT, RELAY_MAX_PORT, peer=self.app)

        # Egress: the runtime needs Bedrock, ECR, Secrets Manager (through the NAT), DynamoDB and S3 (gateway
        # endpoints) and the relays. coturn needs HTTPS for its image pull and logs, and UDP to the runtime.
        self._egress("app-out", self.app, "-1", None, None, cidr=WORLD)
        self._egress("turn-out-https", self.turn, "tcp", 443, 443, cidr=WORLD)
        self._egress("turn-out-media", self.turn, "udp", EPHEMERAL_MIN_PORT, 65535, peer=self.app)
        self.register_outputs({})

    def _ingress(self, key: str, sg: aws.ec2.SecurityGroup, proto: str, lo: int | None, hi: int | None, *,
                 cidr: str | None = None, peer: aws.ec2.SecurityGroup | None = None,
                 prefix_list: pulumi.Input[str] | None = None) -> None:
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-in-{key}", security_group_id=sg.id, ip_protocol=proto, from_port=lo, to_port=hi,
            cidr_ipv4=cidr, referenced_security_group_id=peer.id if peer else None, prefix_list_id=prefix_list,
            opts=self._child,
        )

    def _egress(self, key: str, sg: aws.ec2.SecurityGroup, proto: str, lo: int | None, hi: int | None, *,
                cidr: str | None = None, peer: aws.ec2.SecurityGroup | None = None) -> None:
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-out-{key}", security_group_id=sg.id, ip_protocol=proto, from_port=lo, to_port=hi,
            cidr_ipv4=cidr, referenced_security_group_id=peer.id if peer else None, opts=self._child,
        )
