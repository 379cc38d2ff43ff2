"""Every IAM policy document in the stack, linted with parliament (duo-labs) and checked per action.

parliament knows each action's resource types and ARN formats (its bundled copy of the AWS Service
Authorization Reference), so with the harness's real-format ARNs it catches a policy that scopes an action
to ARNs the action cannot take (a grant that silently authorises nothing) and unknown or misspelt actions.
A finding is accepted only from ALLOWED_FINDINGS, each with the reason it is harmless.

One parliament limitation is worked around, not allowed: it splits a resource ARN on every ":", and real
resource IDs can contain colons (a DynamoDB stream ARN ends in a label like 2026-01-01T00:00:00.000), which
it then reports as RESOURCE_MISMATCH. So each document is linted twice, as is and with the colons inside
the resource-ID part (after the fifth) replaced by "_" (:func:`_without_id_colons`), and a RESOURCE_MISMATCH
counts when both report it: formats with colons of their own (log streams, Auto Scaling groups) match the
first, stream labels the second, and an action on the wrong kind of resource fails both.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

from pulumi_harness import Run, as_list

with warnings.catch_warnings():  # parliament imports pkg_resources, which warns on import
    warnings.simplefilter("ignore")
    import parliament
    from parliament import analyze_policy_string


@dataclass(frozen=True)
class Document:
    resource: str  # logical name of the resource holding it
    kind: str  # "identity", "trust" or "resource"
    text: str
    typ: str = ""


# Resource types whose inputs hold a policy document: type -> (input, kind).
POLICY_INPUTS: dict[str, tuple[str, str]] = {
    "aws:iam/rolePolicy:RolePolicy": ("policy", "identity"),
    "aws:iam/policy:Policy": ("policy", "identity"),
    "aws:iam/role:Role": ("assumeRolePolicy", "trust"),
    "aws:sns/topicPolicy:TopicPolicy": ("policy", "resource"),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy", "resource"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", "resource"),
    "aws:kms/key:Key": ("policy", "resource"),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("policy", "resource"),
    "aws:ecr/registryPolicy:RegistryPolicy": ("policy", "resource"),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": ("policyDocument", "resource"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("policy", "resource"),
}

# (parliament issue, holder type or "" for any, action) -> why the finding is accepted.
ALLOWED_FINDINGS: dict[tuple[str, str, str], str] = {
    ("UNKNOWN_ACTION", "", "bedrock:InvokeModelWithBidirectionalStream"): (
        "Nova Sonic's streaming action (2025) is newer than parliament 1.6.4's bundled IAM definition; AWS lists it "
        "with the foundation-model resource type: "
        "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html"),
    # "*" as the action: any action of the statement.
    ("RESOURCE_STAR", "aws:kms/key:Key", "*"): (
        'in a key policy Resource "*" means this key and nothing else: '
        "https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html"),
}
_ARN_ID_COLONS = re.compile(r"^(arn:[^:]*:[^:]*:[^:]*:[^:]*:)(.*)$")


def _without_id_colons(text: str) -> str:
    """The document with colons inside ARN resource IDs replaced (see the module docstring)."""
    body = json.loads(text)

    def fix(value: Any) -> Any:
        if isinstance(value, str) and (m := _ARN_ID_COLONS.match(value)):
            return m.group(1) + m.group(2).replace(":", "_")
        return value

    for stmt in as_list(body.get("Statement", [])):
        for key in ("Resource", "NotResource"):
            if key in stmt:
                stmt[key] = [fix(v) for v in stmt[key]] if isinstance(stmt[key], list) else fix(stmt[key])
    return json.dumps(body)


def documents(run: Run) -> list[Document]:
    found = []
    for r in run.resources:
        spec = POLICY_INPUTS.get(r.typ)
        if spec and r.inputs.get(spec[0]):
            text = r.inputs[spec[0]]
            found.append(Document(r.name, spec[1], text if isinstance(text, str) else json.dumps(text), r.typ))
    return found


def _findings(text: str) -> list[tuple[str, str]]:
    policy = analyze_policy_string(text, include_community_auditors=False)
    found = []
    for f in policy.findings:
        items = f.detail if isinstance(f.detail, list) else [f.detail]
        for item in items:
            if isinstance(item, dict):
                item = item.get("action", json.dumps(item, sort_keys=True))
            found.append((f.issue, str(item).removeprefix("Unknown action ").strip()))
    return found


def parliament_findings(doc: Document) -> list[tuple[str, str]]:
    """(issue, action or detail) of each finding parliament reports, one per action a finding names."""
    found = _findings(doc.text)
    mismatches = {f for f in _findings(_without_id_colons(doc.text)) if f[0] == "RESOURCE_MISMATCH"}
    return [f for f in found if f[0] != "RESOURCE_MISMATCH" or f in mismatches]


def _allowed(issue: str, typ: str, detail: str) -> bool:
    return any(key in ALLOWED_FINDINGS for key in ((issue, "", detail), (issue, typ, detail), (issue, typ, "*")))


def lint(run: Run) -> list[str]:
    """Findings on identity and resource policies that no ALLOWED_FINDINGS entry explains.

    Trust policies are left to :func:`trust_conditions` (parliament audits permissions, not principals).
    """
    bad = []
    for doc in documents(run):
        if doc.kind == "trust":
            continue
        for issue, detail in parliament_findings(doc):
            if not _allowed(issue, doc.typ, detail):
                bad.append(f"{doc.resource}: parliament {issue}: {detail}")
    return bad


@cache
def _privileges() -> dict[str, dict[str, Any]]:
    """``service:action`` (lower case) -> parliament's record of the action (its resource types)."""
    with open(parliament.iam_definition_path) as fh:
        definition = json.load(fh)
    return {f"{svc['prefix']}:{p['privilege']}".lower(): p for svc in definition for p in svc["privileges"]}


def takes_only_star(action: str) -> bool | None:
    """True when the action has no resource-level permissions (AWS authorises it only on "*"); None if unknown."""
    record = _privileges().get(action.lower())
    if record is None:
        return None
    return all(not rt["resource_type"] for rt in record["resource_types"])


def _statements(doc: Document) -> list[dict[str, Any]]:
    body = json.loads(doc.text)
    return as_list(body.get("Statement", []))


def action_levels(run: Run) -> list[str]:
    """No wildcard actions, and Resource "*" exactly for the actions that take nothing else.

    An action without resource-level permissions scoped to ARNs is a grant that authorises nothing (e.g.
    dynamodb:ListStreams on stream ARNs); "*" for an action that has resource types is wider than needed.
    https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
    """
    bad = []
    for doc in documents(run):
        if doc.kind != "identity":
            continue
        for stmt in _statements(doc):
            if stmt.get("Effect") != "Allow":
                continue
            actions = as_list(stmt.get("Action", []))
            resources = as_list(stmt.get("Resource", []))
            if stmt.get("NotAction") or stmt.get("NotResource"):
                bad.append(f"{doc.resource}: NotAction/NotResource in {stmt.get('Sid')}")
            for action in actions:
                if "*" in action or "?" in action:
                    bad.append(f"{doc.resource}: wildcard action {action}")
                    continue
                only_star = takes_only_star(action)
                if only_star is None:
                    continue  # unknown to the definition: lint() reports it unless explained
                if only_star and resources != ["*"]:
                    bad.append(f"{doc.resource}: {action} has no resource-level permissions; "
                               f"scoped to {resources} it authorises nothing (use Resource \"*\")")
                if not only_star and "*" in resources:
                    bad.append(f"{doc.resource}: {action} supports resource ARNs but is granted on \"*\"")
    return bad


def trust_conditions(run: Run) -> list[str]:
    """Trust policies name one service principal and assume with sts:AssumeRole only."""
    bad = []
    for doc in documents(run):
        if doc.kind != "trust":
            continue
        for stmt in _statements(doc):
            principal = stmt.get("Principal", {})
            if principal == "*" or ("AWS" in principal and "*" in as_list(principal["AWS"])):
                bad.append(f"{doc.resource}: trust policy open to every principal")
            if set(as_list(stmt.get("Action"))) - {"sts:AssumeRole", "sts:TagSession"}:
                bad.append(f"{doc.resource}: trust policy allows {stmt.get('Action')}")
    return bad


ALL = {"lint": lint, "action_levels": action_levels, "trust_conditions": trust_conditions}
