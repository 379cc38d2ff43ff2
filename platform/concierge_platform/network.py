"""Network: a VPC over two Availability Zones with public and private subnets and ONE shared NAT gateway.

One NAT gateway (not one per AZ) is a deliberate cost choice: the private subnets only need egress
for Bedrock, ECR, Secrets Manager and CloudWatch Logs, and losing the NAT AZ degrades egress, not ingress.
DynamoDB and S3 (ECR image layers are served from S3) go through free gateway endpoints instead of the NAT,
which bills per GB processed: https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

AZ_COUNT = 2


GATEWAY_ENDPOINT_SERVICES: tuple[str, ...] = ("dynamodb", "s3")


@dataclass
class NetworkArgs:
    cidr: str
    name: str
    region: str = "us-east-1"


def plan_subnets(cidr: str, az_count: int = AZ_COUNT) -> tuple[list[str], list[str]]:
    """Carve the VPC block into /(n+4) public and private subnets, computed before deploy.

    The private CIDRs must be known at plan time because coturn's ``allowed-peer-ip`` is rendered from them.
    """
    net = ipaddress.ip_network(cidr)
    blocks = [str(b) for b in net.subnets(new_prefix=net.prefixlen + 4)]
    return blocks[:az_count], blocks[8 : 8 + az_count]


class Network(pulumi.ComponentResource):
    """VPC, subnets in two AZs, internet gateway, one NAT gateway and the route tables."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones(state="available")
        if len(zones.names) < AZ_COUNT:
            raise ValueError(f"the region offers {len(zones.names)} available AZs; {AZ_COUNT} are needed")
        self.availability_zones: list[str] = list(zones.names[:AZ_COUNT])
        public_cidrs, private_cidrs = plan_subnets(args.cidr)
        self.private_cidrs: list[str] = private_cidrs
        self.public_cidrs: list[str] = public_cidrs

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": args.name},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": args.name}, opts=child)

        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        for i, (az, pub, priv) in enumerate(zip(self.availability_zones, public_cidrs, private_cidrs, strict=True)):
            self.public_subnets.append(aws.ec2.Subnet(
                f"{name}-public-{i}", vpc_id=self.vpc.id, cidr_block=pub, availability_zone=az,
                map_public_ip_on_launch=False, tags={"Name": f"{args.name}-public-{az}"}, opts=child,
            ))
            self.private_subnets.append(aws.ec2.Subnet(
                f"{name}-private-{i}", vpc_id=self.vpc.id, cidr_block=priv, availability_zone=az,
                tags={"Name": f"{args.name}-private-{az}"}, opts=child,
            ))

        eip = aws.ec2.Eip(f"{name}-nat-eip", domain="vpc", tags={"Name": f"{args.name}-nat"}, opts=child)
        self.nat_gateway = aws.ec2.NatGateway(
            f"{name}-nat", allocation_id=eip.id, subnet_id=self.public_subnets[0].id,
            tags={"Name": args.name}, opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
        )

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{args.name}-public"}, opts=child,
        )
        private_rt = aws.ec2.RouteTable(
            f"{name}-private-rt", vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": self.nat_gateway.id}],
            tags={"Name": f"{args.name}-private"}, opts=child,
        )
        # Gateway endpoints are free and add a prefix-list route to the private route table.
        self.gateway_endpoints = {
            svc: aws.ec2.VpcEndpoint(
                f"{name}-{svc}-endpoint", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{args.region}.{svc}",
                vpc_endpoint_type="Gateway", route_table_ids=[private_rt.id],
                tags={"Name": f"{args.name}-{svc}"}, opts=child)
            for svc in GATEWAY_ENDPOINT_SERVICES
        }
        for i, subnet in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(f"{name}-public-rta-{i}", subnet_id=subnet.id,
                                          route_table_id=public_rt.id, opts=child)
        for i, subnet in enumerate(self.private_subnets):
            aws.ec2.RouteTableAssociation(f"{name}-private-rta-{i}", subnet_id=subnet.id,
                                          route_table_id=private_rt.id, opts=child)

        self.public_subnet_ids = [s.id for s in self.public_subnets]
        self.private_subnet_ids = [s.id for s in self.private_subnets]
        self.register_outputs({"vpcId": self.vpc.id})
