"""The staff user pool (staffAuth cognito): pool, group, public SRP client, AppSync's user-pool mode and the
runtime's settings; each security property also broken in a copy of the recording to show the check refuses it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import edge_invariants as edge
import pytest
from pulumi_harness import Run, cached_run
from test_platform_config_and_parts import _error_of
from test_platform_wiring import runtime_environment

POOL = "aws:cognito/userPool:UserPool"
CLIENT = "aws:cognito/userPoolClient:UserPoolClient"
NAMESPACE = "aws:appsync/channelNamespace:ChannelNamespace"


def _wiring(run: Run) -> list[str]:
    return edge.staff_events_and_runtime(run, *runtime_environment(run))


CHECKS: dict[str, Callable[[Run], list[str]]] = {
    "user_pool": edge.user_pool, "app_client": edge.app_client, "wiring": _wiring}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_staff_properties_hold(deployed: Run, check: str) -> None:
    assert CHECKS[check](deployed) == []


def test_mfa_follows_the_stack() -> None:
    assert cached_run("dev", compute="ecs").one(POOL).inputs["mfaConfiguration"] == "OPTIONAL"
    assert cached_run("prod", compute="ecs").one(POOL).inputs["mfaConfiguration"] == "ON"


def test_the_group_is_the_handlers() -> None:
    """appsync/staff_only.js (the onSubscribe handler) refuses identities outside the group the program creates."""
    run = cached_run("prod", compute="ecs")
    assert edge.staff_group_in_handler() == run.one("aws:cognito/userGroup:UserGroup").inputs["name"] == "staff"


def _client(r: Run) -> dict[str, Any]:
    return r.one(CLIENT).inputs


def _namespace(r: Run, name: str) -> dict[str, Any]:
    return next(n.inputs for n in r.of_type(NAMESPACE) if n.inputs["name"] == name)


def _cognito_provider(r: Run) -> dict[str, Any]:
    providers = r.one("aws:appsync/api:Api").inputs["eventConfig"]["authProviders"]
    return next(p for p in providers if p["authType"] == "AMAZON_COGNITO_USER_POOLS")


def _edit_runtime_env(change: Callable[[dict[str, str]], None]) -> Callable[[Run], None]:
    import json

    def edit(r: Run) -> None:
        task = r.one("aws:ecs/taskDefinition:TaskDefinition", "ecs-runtime-task")
        containers = json.loads(task.inputs["containerDefinitions"])
        env = {e["name"]: e["value"] for e in containers[0]["environment"]}
        change(env)
        containers[0]["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        task.inputs["containerDefinitions"] = json.dumps(containers)
    return edit


BROKEN: list[tuple[str, Callable[[Run], None], str]] = [
    ("user_pool", lambda r: r.one(POOL).inputs["adminCreateUserConfig"].update(allowAdminCreateUserOnly=False),
     "anyone may sign up"),
    ("user_pool", lambda r: r.one(POOL).inputs["passwordPolicy"].update(minimumLength=8), "need >= 12"),
    ("user_pool", lambda r: r.one(POOL).inputs["passwordPolicy"].update(requireSymbols=False), "requireSymbols"),
    ("user_pool", lambda r: r.one(POOL).inputs.update(mfaConfiguration="OPTIONAL"), "the stack asks for ON"),
    ("user_pool", lambda r: r.one(POOL).inputs.update(softwareTokenMfaConfiguration={"enabled": False}),
     "TOTP (software token) MFA is not enabled"),
    ("user_pool", lambda r: r.one(POOL).inputs.update(smsConfiguration={"externalId": "x", "snsCallerArn": "y"}),
     "SMS is configured"),
    ("user_pool", lambda r: r.one(POOL).inputs.update(deletionProtection="INACTIVE"), "deletion protection"),
    ("app_client", lambda r: _client(r).update(generateSecret=True), "has a secret"),
    ("app_client", lambda r: _client(r)["explicitAuthFlows"].append("ALLOW_USER_PASSWORD_AUTH"),
     "expected SRP + refresh only"),
    ("app_client", lambda r: _client(r).update(allowedOauthFlowsUserPoolClient=True, allowedOauthFlows=["code"]),
     "OAuth flows enabled"),
    ("app_client", lambda r: _client(r).update(preventUserExistenceErrors="LEGACY"), "reveals whether a user exists"),
    ("app_client", lambda r: _client(r).update(accessTokenValidity=1440), "access tokens live 1440"),
    ("app_client", lambda r: _client(r).update(refreshTokenValidity=720), "refresh tokens live 720"),
    ("wiring", lambda r: _cognito_provider(r)["cognitoConfig"].update(
        appIdClientRegex=_cognito_provider(r)["cognitoConfig"]["appIdClientRegex"].strip("^$")),
     "does not accept exactly this pool and client"),
    ("wiring", lambda r: _namespace(r, "restaurant-booking").update(
        subscribeAuthModes=[{"authType": "AWS_LAMBDA"}, {"authType": "AMAZON_COGNITO_USER_POOLS"}]),
     "namespace restaurant-booking subscribes with"),
    ("wiring", lambda r: _namespace(r, "conversations").pop("codeHandlers"), "group membership unchecked"),
    ("wiring", lambda r: r.one("aws:lambda/function:Function", "events-authorizer").inputs["environment"][
        "variables"].pop("STAFF_AUTH"), "may still accept a shared staff token"),
    ("wiring", lambda r: r.one("aws:cognito/userGroup:UserGroup").inputs.update(name="staff-members"),
     "is not the handler's STAFF_GROUP"),
    ("wiring", _edit_runtime_env(lambda env: env.update(COGNITO_CLIENT_ID="someotherclient")),
     "runtime environment"),
    ("wiring", _edit_runtime_env(lambda env: env.update(STAFF_TOKEN="x")), "still receives STAFF_TOKEN"),
]


@pytest.mark.parametrize(("check", "edit", "expected"), BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_broken_staff_properties_are_refused(check: str, edit: Callable[[Run], None], expected: str) -> None:
    run = cached_run("prod", compute="ecs")
    assert CHECKS[check](run) == []
    found = CHECKS[check](run.mutated(edit))
    assert any(expected in v for v in found), found


def test_token_mode_keeps_todays_staff_token(legacy: Run) -> None:
    """staffAuth token: no pool, the shared token in Secrets Manager for the runtime and the authorizer."""
    assert legacy.of_type(POOL) == []
    env, secrets = runtime_environment(legacy)
    assert "STAFF_TOKEN" in secrets
    assert "STAFF_AUTH" not in env
    authorizer = legacy.one("aws:lambda/function:Function", "events-authorizer").inputs["environment"]["variables"]
    assert authorizer["STAFF_TOKEN_SECRET_ARN"] == secrets["STAFF_TOKEN"]
    for ns in legacy.of_type(NAMESPACE):
        assert ns.inputs["subscribeAuthModes"] == [{"authType": "AWS_LAMBDA"}]
        assert "codeHandlers" not in ns.inputs


@pytest.mark.parametrize(("overrides", "message"), [
    ({"staffAuth": "oidc"}, "config staffAuth must be one of cognito, token, got 'oidc'"),
    ({"staffMfa": "sms"}, "config staffMfa must be one of optional, required, got 'sms'"),
])
def test_bad_staff_config_stops_with_a_named_key(overrides: dict[str, str], message: str) -> None:
    assert message in _error_of("dev", overrides)


def test_token_mode_requires_the_staff_token() -> None:
    assert "staffToken" in _error_of("dev", {"staffAuth": "token", "staffToken": None})
