"""Log archive: one S3 bucket for the ALB access logs and the VPC flow logs, and the flow log itself.

Both services write with their own delivery principals, so the bucket policy grants exactly those, on their
own prefixes, for this account only. The bucket uses SSE-S3, the encryption the ALB access-log documentation
names for the bucket
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html), and
BucketOwnerEnforced ownership (no ACLs; both deliveries still send ``bucket-owner-full-control``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

ALB_PREFIX = "alb"
FLOW_LOG_PREFIX = "flow-logs"
# Elastic Load Balancing's log-writing account per Region, for Regions available before August 2022; newer
# Regions use the logdelivery.elasticloadbalancing.amazonaws.com service principal instead (same page as above).
ELB_ACCOUNTS: dict[str, str] = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580", "ap-south-1": "718504428378", "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-south-1": "635631232127",
    "eu-west-3": "009996457667", "eu-north-1": "897822967062", "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}


@dataclass
class LogArchiveArgs:
    name: str
    region: str
    account_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    retention_days: int
    protect: bool = False


def bucket_policy(bucket_arn: str, region: str, account: str) -> str:
    """ELB and VPC flow log delivery, each on its own prefix of this account; TLS only."""
    alb_objects = f"{bucket_arn}/{ALB_PREFIX}/AWSLogs/{account}/*"
    if region in ELB_ACCOUNTS:
        elb: dict[str, Any] = {"Sid": "AlbAccessLogs", "Effect": "Allow",
                               "Principal": {"AWS": f"arn:aws:iam::{ELB_ACCOUNTS[region]}:root"},
                               "Action": "s3:PutObject", "Resource": alb_objects}
    else:
        elb = {"Sid": "AlbAccessLogs", "Effect": "Allow",
               "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
               "Action": "s3:PutObject", "Resource": alb_objects,
               "Condition": {"StringEquals": {"aws:SourceAccount": account}}}
    source = {"StringEquals": {"aws:SourceAccount": account},
              "ArnLike": {"aws:SourceArn": f"arn:aws:logs:{region}:{account}:*"}}
    return json.dumps({"Version": "2012-10-17", "Statement": [
        elb,
        {"Sid": "FlowLogsWrite", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"{bucket_arn}/{FLOW_LOG_PREFIX}/AWSLogs/{account}/*",
         "Condition": {"StringEquals": {**source["StringEquals"], "s3:x-amz-acl": "bucket-owner-full-control"},
                       "ArnLike": source["ArnLike"]}},
        {"Sid": "FlowLogsAclCheck", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": bucket_arn, "Condition": source},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}, sort_keys=True)


class LogArchive(pulumi.ComponentResource):
    """Private, encrypted, expiring log bucket + the VPC flow log into it."""

    def __init__(self, name: str, args: LogArchiveArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:LogArchive", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket", bucket_prefix=f"{args.name}-logs-", force_destroy=False,
            tags={"Name": f"{args.name}-logs"}, opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        public = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-expiry", bucket=self.bucket.id,
            rules=[{"id": "expire-logs", "status": "Enabled", "filter": {},
                    "expiration": {"days": args.retention_days}}], opts=child)
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, args.account_id).apply(
                lambda v: bucket_policy(v[0], args.region, v[1])),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public, ownership]))
        self.flow_log = aws.ec2.FlowLog(
            f"{name}-flow-log", vpc_id=args.vpc_id, traffic_type="ALL", log_destination_type="s3",
            log_destination=pulumi.Output.concat(self.bucket.arn, f"/{FLOW_LOG_PREFIX}/"),
            max_aggregation_interval=600, tags={"Name": f"{args.name}-vpc"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy]))
        self.register_outputs({"bucket": self.bucket.bucket})
