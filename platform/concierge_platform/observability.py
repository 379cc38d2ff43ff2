"""Observability: the application log groups, one dashboard and the alarms an operator is paged on.

Names of the compute resources are fixed in config (not read back), so the dashboard can be declared
before the compute backend exists and the backend can log into groups that already carry retention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

ALB_5XX_THRESHOLD = 10  # per 5 minutes
TARGET_LATENCY_P95_S = 1.0  # REST/signaling; media does not go through the ALB
ITERATOR_AGE_MS = 60_000  # stream publisher a minute behind: real-time events are already stale
WAF_LOG_PREFIX = "aws-waf-logs-"  # WAF refuses a CloudWatch log group whose name does not start with this


@dataclass
class ObservabilityArgs:
    name: str
    region: str
    compute: str
    cluster_name: str
    service_name: str
    log_retention_days: int
    alb_arn_suffix: pulumi.Input[str]
    api_target_group_arn_suffix: pulumi.Input[str]
    lambda_function_names: list[pulumi.Input[str]]
    table_names: list[pulumi.Input[str]]
    alarm_email: str | None = None
    account_id: pulumi.Input[str] = ""
    nlb_arn_suffix: pulumi.Input[str] | None = None
    turn_target_group_arn_suffixes: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    dlq_name: pulumi.Input[str] | None = None
    publisher_function_name: pulumi.Input[str] | None = None
    web_acl_arn: pulumi.Input[str] | None = None
    # The CloudFront web ACL's logging configuration and log group must be in us-east-1 with it (cdn.py):
    # https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html
    waf_provider: pulumi.ProviderResource | None = None


def alarm_key_policy(region: str, account: str) -> str:
    """The alarm topic's key: administered by the account (IAM decides who), usable by CloudWatch alarms of
    this account only. The AWS-managed SNS key cannot be used: its policy does not let CloudWatch encrypt
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        # Without this statement nobody could ever change or delete the key (KMS key policy default).
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account},
                       "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{region}:{account}:alarm:*"}}},
    ]}, sort_keys=True)


class Observability(pulumi.ComponentResource):
    """Log groups (with retention), a CloudWatch dashboard, alarms (Lambda errors, ALB 5xx, latency)."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.runtime_logs = aws.cloudwatch.LogGroup(
            f"{name}-runtime-logs", name=f"/concierge/{args.name}/runtime",
            retention_in_days=args.log_retention_days, opts=child)
        self.turn_logs = aws.cloudwatch.LogGroup(
            f"{name}-turn-logs", name=f"/concierge/{args.name}/coturn",
            retention_in_days=args.log_retention_days, opts=child)

        self.alarm_key = aws.kms.Key(
            f"{name}-alarms-key", description=f"{args.name}: encrypts the alarm topic", enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(lambda a: alarm_key_policy(args.region, a)),
            opts=child)
        self.topic = aws.sns.Topic(f"{name}-alarms", name_prefix=f"{args.name}-alarms-",
                                   kms_master_key_id=self.alarm_key.arn, opts=child)
        self.waf_logs: aws.cloudwatch.LogGroup | None = None
        if args.web_acl_arn is not None:
            waf_opts = pulumi.ResourceOptions(parent=self, provider=args.waf_provider)
            self.waf_logs = aws.cloudwatch.LogGroup(
                f"{name}-waf-logs", name=f"{WAF_LOG_PREFIX}{args.name}", retention_in_days=args.log_retention_days,
                opts=waf_opts)
            aws.wafv2.WebAclLoggingConfiguration(
                f"{name}-waf-logging", resource_arn=args.web_acl_arn, log_destination_configs=[self.waf_logs.arn],
                # Staff bearer tokens and guest session tokens travel in this header.
                redacted_fields=[{"single_header": {"name": "authorization"}}], opts=waf_opts)
        if args.alarm_email:
            aws.sns.TopicSubscription(f"{name}-alarms-email", topic=self.topic.arn, protocol="email",
                                      endpoint=args.alarm_email, opts=child)
        actions = [self.topic.arn]

        def alarm(key: str, description: str, **kwargs: Any) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key}", name=f"{args.name}-{key}", alarm_description=description,
                alarm_actions=actions, ok_actions=actions,
                treat_missing_data=kwargs.pop("treat_missing_data", "notBreaching"),
                evaluation_periods=kwargs.pop("evaluation_periods", 1), opts=child, **kwargs)

        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        for i, fn in enumerate(args.lambda_function_names):
            self.alarms.append(alarm(
                f"lambda-errors-{i}", "an events Lambda (authorizer or stream publisher) is failing",
                namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": fn},
                statistic="Sum", period=300, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold"))
        self.alarms.append(alarm(
            "alb-5xx", "the API load balancer or its targets return 5xx",
            metric_queries=[
                {"id": "elb", "metric": {"namespace": "AWS/ApplicationELB", "metric_name": "HTTPCode_ELB_5XX_Count",
                                         "dimensions": {"LoadBalancer": args.alb_arn_suffix},
                                         "period": 300, "stat": "Sum"}},
                {"id": "target", "metric": {"namespace": "AWS/ApplicationELB",
                                            "metric_name": "HTTPCode_Target_5XX_Count",
                                            "dimensions": {"LoadBalancer": args.alb_arn_suffix},
                                            "period": 300, "stat": "Sum"}},
                {"id": "total", "expression": "FILL(elb, 0) + FILL(target, 0)", "label": "5xx",
                 "return_data": True},
            ],
            threshold=ALB_5XX_THRESHOLD, comparison_operator="GreaterThanOrEqualToThreshold"))
        self.alarms.append(alarm(
            "target-latency", "API p95 response time is high",
            namespace="AWS/ApplicationELB", metric_name="TargetResponseTime", extended_statistic="p95",
            dimensions={"LoadBalancer": args.alb_arn_suffix, "TargetGroup": args.api_target_group_arn_suffix},
            period=300, evaluation_periods=3, threshold=TARGET_LATENCY_P95_S,
            comparison_operator="GreaterThanThreshold"))
        self.alarms.append(alarm(
            "unhealthy-targets", "no healthy runtime behind the API load balancer",
            namespace="AWS/ApplicationELB", metric_name="HealthyHostCount", statistic="Minimum",
            dimensions={"LoadBalancer": args.alb_arn_suffix, "TargetGroup": args.api_target_group_arn_suffix},
            period=60, evaluation_periods=3, threshold=1, comparison_operator="LessThanThreshold"))

        if args.nlb_arn_suffix is not None:
            for transport, tg in sorted(args.turn_target_group_arn_suffixes.items()):
                # No healthy relay means no call can connect (browsers are relay-only).
                self.alarms.append(alarm(
                    f"turn-unhealthy-{transport}", f"no healthy coturn ({transport}) behind the TURN load balancer",
                    namespace="AWS/NetworkELB", metric_name="HealthyHostCount", statistic="Minimum",
                    dimensions={"LoadBalancer": args.nlb_arn_suffix, "TargetGroup": tg}, period=60,
                    evaluation_periods=2, threshold=1, comparison_operator="LessThanThreshold",
                    treat_missing_data="breaching"))
        if args.dlq_name is not None:
            self.alarms.append(alarm(
                "publisher-dlq", "stream records the publisher gave up on (events were lost)",
                namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": args.dlq_name}, statistic="Maximum", period=300, threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold"))
        if args.publisher_function_name is not None:
            self.alarms.append(alarm(
                "stream-iterator-age", "the stream publisher is falling behind the table streams",
                namespace="AWS/Lambda", metric_name="IteratorAge",
                dimensions={"FunctionName": args.publisher_function_name}, statistic="Maximum", period=60,
                evaluation_periods=3, threshold=ITERATOR_AGE_MS, comparison_operator="GreaterThanThreshold"))

        body = pulumi.Output.all(
            alb=args.alb_arn_suffix, tg=args.api_target_group_arn_suffix,
            fns=pulumi.Output.all(*args.lambda_function_names), tables=pulumi.Output.all(*args.table_names),
        ).apply(lambda v: json.dumps(self._dashboard(args, v["alb"], v["tg"], v["fns"], v["tables"])))
        self.dashboard = aws.cloudwatch.Dashboard(f"{name}-dashboard", dashboard_name=args.name,
                                                  dashboard_body=body, opts=child)
        self.register_outputs({"dashboard": self.dashboard.dashboard_name})

    @staticmethod
    def _dashboard(args: ObservabilityArgs, alb: str, tg: str, fns: list[str], tables: list[str]) -> dict[str, Any]:
        def widget(title: str, metrics: list[list[Any]], stat: str = "Sum") -> dict[str, Any]:
            return {"type": "metric", "width": 12, "height": 6,
                    "properties": {"title": title, "region": args.region, "stat": stat, "period": 60,
                                   "metrics": metrics}}

        if args.compute == "ecs":
            cpu = [["AWS/ECS", "CPUUtilization", "ClusterName", args.cluster_name, "ServiceName", args.service_name]]
        else:
            cpu = [["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", args.cluster_name]]
        return {"widgets": [
            widget("API requests and errors", [
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", alb],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", alb],
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", alb]]),
            widget("API latency p95", [["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", alb,
                                        "TargetGroup", tg]], stat="p95"),
            widget("Runtime CPU %", cpu, stat="Average"),
            widget("Events Lambdas", [["AWS/Lambda", m, "FunctionName", f] for f in fns
                                      for m in ("Invocations", "Errors")]),
            widget("Stream publisher iterator age (ms)",
                   [["AWS/Lambda", "IteratorAge", "FunctionName", f] for f in fns], stat="Maximum"),
            widget("DynamoDB throttles", [["AWS/DynamoDB", "ThrottledRequests", "TableName", t] for t in tables]),
        ]}
