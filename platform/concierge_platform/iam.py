"""Least-privilege IAM helpers: every policy in the stack is built here, from explicit action lists.

Refusing wildcard actions at declaration time (not only in tests) means a hurried edit fails
``pulumi preview`` instead of widening a role.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass
class Statement:
    actions: Sequence[str]
    resources: Sequence[pulumi.Input[str]]
    sid: str | None = None
    conditions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for action in self.actions:
            if "*" in action or ":" not in action:
                raise ValueError(f"IAM action {action!r} must be one explicit service:Action")
        if not self.resources:
            raise ValueError("an IAM statement needs explicit resources")


def policy_document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """Resolve the resource ARNs and render one JSON policy."""
    def render(resolved: list[list[str]]) -> str:
        body = []
        for stmt, resources in zip(statements, resolved, strict=True):
            entry: dict[str, Any] = {"Effect": "Allow", "Action": sorted(set(stmt.actions)),
                                     "Resource": sorted(set(resources))}
            if stmt.sid:
                entry["Sid"] = stmt.sid
            if stmt.conditions:
                entry["Condition"] = stmt.conditions
            body.append(entry)
        return json.dumps({"Version": "2012-10-17", "Statement": body}, sort_keys=True)

    return pulumi.Output.all(*[pulumi.Output.all(*s.resources) for s in statements]).apply(
        lambda lists: render([list(x) for x in lists])
    )


@dataclass(frozen=True)
class Trust:
    """Who may assume a role, with the confused-deputy guard where the service sends it.

    ``source_account``/``source_arn`` become ``aws:SourceAccount`` / ``aws:SourceArn`` conditions
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html). ECS tasks and AppSync document
    them for their roles; EC2 instance profiles and Lambda execution roles do not send them, so those
    trusts stay unconditioned (a condition the service never sends would make the role unusable).
    """

    service: str
    source_account: pulumi.Input[str] | None = None
    source_arn: pulumi.Input[str] | None = None


def assume_role_policy(trust: Trust | str) -> pulumi.Output[str]:
    if isinstance(trust, str):
        trust = Trust(trust)

    def render(account: str | None, arn: str | None) -> str:
        stmt: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": trust.service},
                                "Action": "sts:AssumeRole"}
        cond: dict[str, dict[str, str]] = {}
        if account:
            cond["StringEquals"] = {"aws:SourceAccount": account}
        if arn:
            cond["ArnLike"] = {"aws:SourceArn": arn}
        if cond:
            stmt["Condition"] = cond
        return json.dumps({"Version": "2012-10-17", "Statement": [stmt]}, sort_keys=True)

    return pulumi.Output.all(trust.source_account, trust.source_arn).apply(lambda v: render(v[0], v[1]))


def role(name: str, service: Trust | str, statements: Sequence[Statement], opts: pulumi.ResourceOptions,
         description: str) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """A role with exactly one inline policy; no managed policies (they carry wildcard actions).

    The policy is returned too so dependants (event source mappings, services) can wait for it.
    """
    r = aws.iam.Role(name, assume_role_policy=assume_role_policy(service), description=description, opts=opts)
    p = aws.iam.RolePolicy(f"{name}-policy", role=r.id, policy=policy_document(statements), opts=opts)
    return r, p


def log_statement(log_group_arns: Sequence[pulumi.Input[str]]) -> Statement:
    """Write to the named log groups' streams only."""
    streams = [pulumi.Output.concat(arn, ":log-stream:*") for arn in log_group_arns]
    return Statement(["logs:CreateLogStream", "logs:PutLogEvents"], [*log_group_arns, *streams], sid="Logs")


def dynamodb_table_statement(table_arns: Sequence[pulumi.Input[str]]) -> Statement:
    """Item-level access to the given tables (and their indexes): what runtime/stores/dynamodb.py calls
    (get/put/query, and TransactWriteItems, which IAM authorises per Put/Update/Delete/ConditionCheck)."""
    indexes = [pulumi.Output.concat(arn, "/index/*") for arn in table_arns]
    return Statement(
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
         "dynamodb:ConditionCheckItem"],
        [*table_arns, *indexes], sid="Tables",
    )


def bedrock_model_arn(region: str, model_id: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def bedrock_statement(region: str, model_id: str) -> Statement:
    """Invoke only the configured Nova Sonic model (bidirectional stream for speech)."""
    return Statement(["bedrock:InvokeModelWithBidirectionalStream", "bedrock:InvokeModel"],
                     [bedrock_model_arn(region, model_id)], sid="NovaSonic")


def secrets_statement(secret_arns: Sequence[pulumi.Input[str]]) -> Statement:
    return Statement(["secretsmanager:GetSecretValue"], list(secret_arns), sid="Secrets")


def ecs_trust(region: str, account_id: pulumi.Input[str]) -> Trust:
    """ECS tasks of this account and region only (task and execution roles alike)."""
    return Trust("ecs-tasks.amazonaws.com", source_account=account_id,
                 source_arn=pulumi.Output.concat("arn:aws:ecs:", region, ":", account_id, ":*"))
