"""Events: AppSync Events API (namespaces ``conversations``, ``restaurant-booking``), its Lambda authorizer,
and the DynamoDB-stream publisher Lambda that turns committed changes into events.

Publishing is IAM-only (just the publisher Lambda may publish); guests subscribe through the Lambda
authorizer with the same session token as the REST API (runtime.auth rules, one rule set everywhere). Staff
subscribe with their Cognito access token (AMAZON_COGNITO_USER_POOLS, staffAuth=cognito) or the shared staff
token through the authorizer (staffAuth=token). In cognito mode both namespaces run the ``onSubscribe``
handler in appsync/staff_only.js, which refuses pool users outside the staff group (AppSync's user-pool mode
checks the token, not the groups): https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from . import iam
from .lambda_code import AUTHORIZER_HANDLER, PUBLISHER_HANDLER

NAMESPACES: tuple[str, ...] = ("conversations", "restaurant-booking")
STAFF_ONLY_HANDLER = Path(__file__).with_name("appsync") / "staff_only.js"
# Who subscribes where with staffAuth=cognito: guests (Lambda) only to their own conversation, staff (Cognito)
# to both; nobody but staff to bookings.
COGNITO_SUBSCRIBE: dict[str, tuple[str, ...]] = {
    "conversations": ("AWS_LAMBDA", "AMAZON_COGNITO_USER_POOLS"),
    "restaurant-booking": ("AMAZON_COGNITO_USER_POOLS",),
}
LAMBDA_RUNTIME = "python3.12"
# Bounded retries and record age (the defaults retry a poison batch until it expires, blocking the shard:
# https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html);
# stale real-time events are useless after five minutes.
ESM_SETTINGS: dict[str, object] = {
    "starting_position": "LATEST",
    "batch_size": 50,
    "maximum_batching_window_in_seconds": 0,
    "function_response_types": ["ReportBatchItemFailures"],
    "bisect_batch_on_function_error": True,
    "maximum_retry_attempts": 5,
    "maximum_record_age_in_seconds": 300,
    "parallelization_factor": 1,
}


@dataclass
class CognitoAuth:
    """The staff user pool as AppSync's AMAZON_COGNITO_USER_POOLS provider sees it."""

    user_pool_id: pulumi.Input[str]
    client_id: pulumi.Input[str]
    region: str


def client_regex(client_id: str) -> str:
    """``appIdClientRegex`` accepting exactly this app client (anchored: a bare id would match as a substring)."""
    return f"^{client_id}$"


@dataclass
class EventsArgs:
    name: str
    tables: dict[str, aws.dynamodb.Table]
    table_environment: dict[str, pulumi.Output[str]]
    staff_token_secret_arn: pulumi.Input[str] | None  # None with staffAuth=cognito: the authorizer gets no token
    session_secret_arn: pulumi.Input[str]
    code: pulumi.Archive
    log_retention_days: int
    region: str = "us-east-1"
    account_id: pulumi.Input[str] = ""
    appsync_log_level: str = "ERROR"  # NONE | ERROR | INFO | DEBUG | ALL; ERROR keeps cost and payloads out
    cognito: CognitoAuth | None = None  # staffAuth=cognito


class Events(pulumi.ComponentResource):
    """AppSync Events API + authorizer + stream publisher with its event source mappings and DLQ."""

    def __init__(self, name: str, args: EventsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Events", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.authorizer_logs = aws.cloudwatch.LogGroup(
            f"{name}-authorizer-logs", name=f"/aws/lambda/{args.name}-events-authorizer",
            retention_in_days=args.log_retention_days, opts=child)
        self.publisher_logs = aws.cloudwatch.LogGroup(
            f"{name}-publisher-logs", name=f"/aws/lambda/{args.name}-stream-publisher",
            retention_in_days=args.log_retention_days, opts=child)

        # --- authorizer ---------------------------------------------------------------------------
        # In cognito mode the authorizer is for guests only: it is told so (STAFF_AUTH) and cannot read a staff
        # token, so no shared token can ever subscribe.
        readable = [arn for arn in (args.staff_token_secret_arn, args.session_secret_arn) if arn is not None]
        variables: dict[str, pulumi.Input[str]] = {"SESSION_SECRET_ARN": args.session_secret_arn}
        if args.cognito is not None:
            variables["STAFF_AUTH"] = "cognito"
        elif args.staff_token_secret_arn is not None:
            variables["STAFF_TOKEN_SECRET_ARN"] = args.staff_token_secret_arn
        auth_role, auth_policy = iam.role(
            f"{name}-authorizer-role", "lambda.amazonaws.com",
            [iam.log_statement([self.authorizer_logs.arn]), iam.secrets_statement(readable)],
            child, "AppSync Events Lambda authorizer: reads its secrets, writes its logs")
        self.authorizer = aws.lambda_.Function(
            f"{name}-authorizer", name=f"{args.name}-events-authorizer", runtime=LAMBDA_RUNTIME,
            handler=AUTHORIZER_HANDLER, code=args.code, role=auth_role.arn, timeout=5, memory_size=256,
            architectures=["arm64"],
            # By ARN, not value: the authorizer fetches and caches them, so no secret sits in the function config.
            environment={"variables": variables},
            logging_config={"log_format": "JSON", "log_group": self.authorizer_logs.name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[auth_policy]),
        )

        # --- the Events API -------------------------------------------------------------------------
        # AppSync writes its logs with this role into /aws/appsync/apis/<api id>; the trust is limited to this
        # account's APIs (https://docs.aws.amazon.com/appsync/latest/eventapi/monitoring.html).
        appsync_logs = pulumi.Output.concat("arn:aws:logs:", args.region, ":", args.account_id,
                                            ":log-group:/aws/appsync/apis/*")
        logs_role, logs_policy = iam.role(
            f"{name}-appsync-logs-role",
            iam.Trust("appsync.amazonaws.com", source_account=args.account_id,
                      source_arn=pulumi.Output.concat("arn:aws:appsync:", args.region, ":", args.account_id,
                                                      ":apis/*")),
            [iam.Statement(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                           [appsync_logs, pulumi.Output.concat(appsync_logs, ":log-stream:*")], sid="AppSyncLogs")],
            child, "AppSync Events: write the API's CloudWatch logs")
        iam_mode = [{"auth_type": "AWS_IAM"}]
        lambda_mode = [{"auth_type": "AWS_LAMBDA"}]
        providers: list[dict[str, object]] = [
            {"auth_type": "AWS_IAM"},
            {"auth_type": "AWS_LAMBDA",
             "lambda_authorizer_config": {"authorizer_uri": self.authorizer.arn,
                                          "authorizer_result_ttl_in_seconds": 60}},
        ]
        connection_modes = [*lambda_mode, *iam_mode]
        if args.cognito is not None:
            providers.append({"auth_type": "AMAZON_COGNITO_USER_POOLS", "cognito_config": {
                "user_pool_id": args.cognito.user_pool_id, "aws_region": args.cognito.region,
                "app_id_client_regex": pulumi.Output.from_input(args.cognito.client_id).apply(client_regex)}})
            connection_modes = [*lambda_mode, {"auth_type": "AMAZON_COGNITO_USER_POOLS"}, *iam_mode]
        self.api = aws.appsync.Api(
            f"{name}-api", name=f"{args.name}-events",
            event_config={
                "auth_providers": providers,
                "connection_auth_modes": connection_modes,
                "default_publish_auth_modes": iam_mode,
                "default_subscribe_auth_modes": lambda_mode,
                "log_config": {"cloudwatch_logs_role_arn": logs_role.arn, "log_level": args.appsync_log_level},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs_policy]),
        )
        aws.lambda_.Permission(
            f"{name}-authorizer-invoke", action="lambda:InvokeFunction", function=self.authorizer.name,
            principal="appsync.amazonaws.com", source_arn=self.api.api_arn, opts=child)
        handler = STAFF_ONLY_HANDLER.read_text() if args.cognito is not None else None
        self.namespaces = {
            ns: aws.appsync.ChannelNamespace(
                f"{name}-ns-{ns}", api_id=self.api.api_id, name=ns, publish_auth_modes=iam_mode,
                subscribe_auth_modes=([{"auth_type": m} for m in COGNITO_SUBSCRIBE[ns]] if args.cognito is not None
                                      else lambda_mode),
                code_handlers=handler, opts=child)
            for ns in NAMESPACES
        }
        self.http_domain = self.api.dns.apply(lambda dns: dns["HTTP"])
        self.realtime_domain = self.api.dns.apply(lambda dns: dns["REALTIME"])
        self.http_endpoint = pulumi.Output.concat("https://", self.http_domain, "/event")
        self.realtime_endpoint = pulumi.Output.concat("wss://", self.realtime_domain, "/event/realtime")

        # --- stream publisher -------------------------------------------------------------------------
        self.dlq = aws.sqs.Queue(
            # A prefix, not a fixed name: a create-before-delete replacement would collide with the old queue.
            f"{name}-publisher-dlq", name_prefix=f"{args.name}-publisher-dlq-", sqs_managed_sse_enabled=True,
            message_retention_seconds=14 * 24 * 3600, opts=child)
        stream_arns = [t.stream_arn for t in args.tables.values()]
        pub_role, pub_policy = iam.role(
            f"{name}-publisher-role", "lambda.amazonaws.com",
            [
                iam.log_statement([self.publisher_logs.arn]),
                iam.Statement(["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                              stream_arns, sid="ReadTableStreams"),
                # ListStreams has no resource-level permissions: AWS accepts only "*" for it
                # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html).
                iam.Statement(["dynamodb:ListStreams"], ["*"], sid="ListStreams"),
                iam.Statement(["sqs:SendMessage"], [self.dlq.arn], sid="DeadLetters"),
                iam.Statement(["appsync:EventPublish"],
                              [ns.channel_namespace_arn for ns in self.namespaces.values()], sid="Publish"),
            ],
            child, "DynamoDB stream -> AppSync Events publisher")
        self.publisher = aws.lambda_.Function(
            f"{name}-publisher", name=f"{args.name}-stream-publisher", runtime=LAMBDA_RUNTIME,
            handler=PUBLISHER_HANDLER, code=args.code, role=pub_role.arn, timeout=30, memory_size=256,
            architectures=["arm64"],
            environment={"variables": {"APPSYNC_ENDPOINT": self.http_endpoint,
                                       "APPSYNC_REALTIME_ENDPOINT": self.realtime_endpoint,
                                       **args.table_environment}},
            logging_config={"log_format": "JSON", "log_group": self.publisher_logs.name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pub_policy]),
        )
        # REMOVEs (TTL expiry, deletes) never become events (runtime.changes maps them to None): filter them
        # out before they cost an invocation.
        only_writes = json.dumps({"eventName": ["INSERT", "MODIFY"]})
        self.mappings = {
            key: aws.lambda_.EventSourceMapping(
                f"{name}-{key}-stream", event_source_arn=table.stream_arn, function_name=self.publisher.arn,
                filter_criteria={"filters": [{"pattern": only_writes}]},
                destination_config={"on_failure": {"destination_arn": self.dlq.arn}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[pub_policy]),
                **ESM_SETTINGS,
            )
            for key, table in args.tables.items()
        }
        self.register_outputs({"httpEndpoint": self.http_endpoint, "realtimeEndpoint": self.realtime_endpoint})
