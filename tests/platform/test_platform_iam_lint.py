"""Every policy document linted with parliament, plus action-level checks from its IAM definition.

The harness gives each resource an ARN in its service's real format, so a policy scoping an action to
a resource type the action does not take (a grant that authorises nothing) shows up here.
"""

from __future__ import annotations

import json

import iam_lint
import pytest
from conftest import COMBOS
from pulumi_harness import Run, cached_run

POLICY = "aws:iam/rolePolicy:RolePolicy"


@pytest.mark.parametrize("check", sorted(iam_lint.ALL))
def test_policies_pass(deployed: Run, check: str) -> None:
    assert iam_lint.ALL[check](deployed) == []


def test_every_policy_is_linted(deployed: Run) -> None:
    kinds = {d.kind for d in iam_lint.documents(deployed)}
    assert {"identity", "trust"} <= kinds
    assert len([d for d in iam_lint.documents(deployed) if d.typ == POLICY]) == len(deployed.of_type(POLICY))


def test_every_allowed_finding_is_still_needed() -> None:
    """An allow-list entry no stack produces any more is removed, not kept as a silent exception."""
    seen = set()
    for stack, compute in COMBOS:
        for doc in iam_lint.documents(cached_run(stack, compute=compute)):
            for issue, detail in iam_lint.parliament_findings(doc):
                seen |= {k for k in ((issue, "", detail), (issue, doc.typ, detail), (issue, doc.typ, "*"))
                         if k in iam_lint.ALLOWED_FINDINGS}
    assert seen == set(iam_lint.ALLOWED_FINDINGS)


def _with_statement(stmt: dict) -> Run:
    def edit(r: Run) -> None:
        policy = r.of_type(POLICY)[0]
        doc = json.loads(policy.inputs["policy"])
        doc["Statement"].append(stmt)
        policy.inputs["policy"] = json.dumps(doc)

    return cached_run("dev", compute="ecs").mutated(edit)


def test_list_streams_scoped_to_stream_arns_is_caught() -> None:
    """Finding 10: dynamodb:ListStreams takes only "*"."""
    stream = cached_run("dev", compute="ecs").of_type("aws:dynamodb/table:Table")[0].state["streamArn"]
    run = _with_statement({"Effect": "Allow", "Action": ["dynamodb:ListStreams"], "Resource": [stream]})
    assert any("RESOURCE_MISMATCH: dynamodb:ListStreams" in v for v in iam_lint.lint(run))
    assert any("dynamodb:ListStreams has no resource-level permissions" in v for v in iam_lint.action_levels(run))


def test_stream_arns_with_colons_are_not_mismatches() -> None:
    stream = cached_run("dev", compute="ecs").of_type("aws:dynamodb/table:Table")[0].state["streamArn"]
    assert ":" in stream.split("/stream/")[1]
    run = _with_statement({"Effect": "Allow", "Action": ["dynamodb:GetRecords"], "Resource": [stream]})
    assert set(iam_lint.lint(run)) == set(iam_lint.lint(cached_run("dev", compute="ecs")))


@pytest.mark.parametrize(("stmt", "check", "expected"), [
    ({"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": ["*"]}, "action_levels", "wildcard action"),
    ({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}, "action_levels", "granted on \"*\""),
    ({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
      "Resource": ["arn:aws:ecr:us-east-1:123456789012:repository/x"]}, "action_levels", "authorises nothing"),
    ({"Effect": "Allow", "Action": ["dynamodb:GetItemz"], "Resource": ["*"]}, "lint", "UNKNOWN_ACTION"),
    ({"Effect": "Allow", "Action": ["sqs:SendMessage"],
      "Resource": ["arn:aws:sns:us-east-1:123456789012:alarms"]}, "lint", "RESOURCE_MISMATCH: sqs:SendMessage"),
    ({"Effect": "Allow", "NotAction": ["iam:PassRole"], "Resource": ["*"]}, "action_levels", "NotAction"),
])
def test_broken_statements_are_caught(stmt: dict, check: str, expected: str) -> None:
    found = iam_lint.ALL[check](_with_statement(stmt))
    assert any(expected in v for v in found), found


def test_open_trust_policy_is_caught() -> None:
    def edit(r: Run) -> None:
        role = r.of_type("aws:iam/role:Role")[0]
        role.inputs["assumeRolePolicy"] = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["sts:AssumeRole", "iam:PassRole"]}]})

    found = iam_lint.trust_conditions(cached_run("dev", compute="ecs").mutated(edit))
    assert any("open to every principal" in v for v in found)
    assert any("allows" in v for v in found)
