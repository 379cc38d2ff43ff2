"""Contract between the platform and the runtime: what the platform sets is what the runtime reads.

pydantic-settings ignores unknown variables (``extra="ignore"``), so a misspelt or renamed variable is
silently dropped and the runtime falls back to its standalone default. These checks compare the
environment of the ECS task definition and of the EC2 user data with runtime/settings.py, the target
group's health check with the runtime's routes, and uvicorn's keep-alive with the ALB idle timeout.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest
from pulumi_harness import TEST_SECRETS, Run, cached_run, cognito_on
from starlette.routing import Route
from test_platform_wiring import runtime_environment

# Variables the AWS SDKs (botocore, the CRT-based Bedrock client) read themselves, not Settings.
# https://docs.aws.amazon.com/sdkref/latest/guide/settings-reference.html#EVSettings
SDK_VARIABLES = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_MAX_ATTEMPTS",
                 "AWS_RETRY_MODE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_EC2_METADATA_DISABLED"}
# What the deployed mode needs set explicitly: every default of these is the standalone (offline) value.
REQUIRED_DEPLOYED = {"STORE", "SPEECH_ENGINE", "BOOKING_TABLE", "CHAT_HISTORY_TABLE", "SESSION_TABLE",
                     "APPSYNC_ENDPOINT", "APPSYNC_REALTIME_ENDPOINT", "TURN_URLS", "TURN_SECRET",
                     "SESSION_SECRET", "TRUST_PROXY_HEADERS", "HOST", "PORT", "BEDROCK_REGION",
                     "NOVA_SONIC_MODEL_ID", "AWS_REGION"}
# How staff authenticate decides what else must be set: the pool and client with Cognito, the token without.
REQUIRED_COGNITO = {"STAFF_AUTH", "COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_REGION"}
REQUIRED_TOKEN = {"STAFF_TOKEN"}
UVICORN_DEFAULT_KEEP_ALIVE = 5  # uvicorn.Config(timeout_keep_alive=5)


def settings_variables() -> set[str]:
    """Every environment variable name runtime.settings.Settings reads (field names or aliases)."""
    from runtime.settings import Settings

    names = set()
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names.add((alias or field_name).upper())
    return names


def unknown_variables(env: dict[str, str], secrets: dict[str, str]) -> list[str]:
    known = settings_variables() | SDK_VARIABLES
    return sorted(f"{name} is set by the platform but read by nobody" for name in {*env, *secrets} - known)


def missing_variables(env: dict[str, str], secrets: dict[str, str], *, cognito: bool = False) -> list[str]:
    required = REQUIRED_DEPLOYED | (REQUIRED_COGNITO if cognito else REQUIRED_TOKEN)
    return sorted(f"{name} is required in the deployed mode but not set" for name in required - {*env, *secrets})


def _settings_values(env: dict[str, str]) -> dict[str, str]:
    values = dict(env)
    values.update({"TURN_SECRET": TEST_SECRETS["turnSecret"], "SESSION_SECRET": TEST_SECRETS["sessionSecret"]})
    if values.get("STAFF_AUTH") != "cognito":
        values["STAFF_TOKEN"] = TEST_SECRETS["staffToken"]
    return values


def health_check_problems(run: Run) -> list[str]:
    """The API target group's health check path is a GET route of the runtime app built from the deployed env."""
    from runtime.app import create_app
    from runtime.settings import Settings

    env, _ = runtime_environment(run)
    values: dict[str, Any] = {k.lower(): v for k, v in _settings_values(env).items() if k != "AWS_REGION"}
    app = create_app(Settings(**values))
    routes = {r.path: r.methods or set() for r in app.routes if isinstance(r, Route)}
    bad = []
    port = int(env["PORT"])
    for tg in run.of_type("aws:lb/targetGroup:TargetGroup"):
        check = tg.inputs.get("healthCheck") or {}
        if tg.inputs.get("port") != port or check.get("protocol", "HTTP") not in {"HTTP", "HTTPS"}:
            continue
        path = check.get("path", "/")
        if "GET" not in routes.get(path, set()):
            bad.append(f"{tg.name}: health check GET {path} is not a runtime route ({sorted(routes)})")
    return bad


def served_keep_alive(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> float:
    """The keep-alive uvicorn gets when ``python -m runtime serve`` starts with the deployed environment."""
    import uvicorn

    from runtime import __main__ as entry

    captured: dict[str, Any] = {}
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.upper() in settings_variables():
                monkeypatch.delenv(key)
        for key, value in _settings_values(env).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: captured.update(kw))
        monkeypatch.setattr(entry, "configure_logging", lambda *a, **kw: None)
        if hasattr(entry, "task_protection"):
            monkeypatch.setattr(entry.task_protection, "start", lambda *a, **kw: None)
        assert entry._serve(argparse.Namespace(host=None, port=None, workers=None)) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return float(captured.get("timeout_keep_alive", UVICORN_DEFAULT_KEEP_ALIVE))


def keep_alive_problems(run: Run, keep_alive: float) -> list[str]:
    """https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html
    (the target's keep-alive must be longer than the load balancer's idle timeout)."""
    idle = run.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb").inputs.get("idleTimeout", 60)
    return [] if keep_alive > idle else [f"runtime keep-alive {keep_alive:g} s <= ALB idle timeout {idle:g} s: "
                                          "the runtime closes connections the ALB reuses (502)"]


def test_every_variable_is_read_by_the_runtime(layout: Run) -> None:
    assert unknown_variables(*runtime_environment(layout)) == []


def test_every_required_variable_is_set(layout: Run) -> None:
    assert missing_variables(*runtime_environment(layout), cognito=cognito_on(layout)) == []


def test_health_check_path_is_a_runtime_route(deployed: Run) -> None:
    assert health_check_problems(deployed) == []


def test_keep_alive_exceeds_the_alb_idle_timeout(deployed: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    env, _ = runtime_environment(deployed)
    assert keep_alive_problems(deployed, served_keep_alive(env, monkeypatch)) == []


def test_cognito_mode_without_the_pool_is_caught() -> None:
    env, secrets = runtime_environment(cached_run("dev", compute="ecs"))
    env = {k: v for k, v in env.items() if k != "COGNITO_USER_POOL_ID"}
    assert missing_variables(env, secrets, cognito=True) == [
        "COGNITO_USER_POOL_ID is required in the deployed mode but not set"]
    assert "STAFF_TOKEN is required in the deployed mode but not set" in missing_variables(env, secrets)


def test_misspelt_and_missing_variables_are_caught() -> None:
    env, secrets = runtime_environment(cached_run("dev", compute="ecs", cdn="false", staffAuth="token"))
    env = {("BOOKINGS_TABLE" if k == "BOOKING_TABLE" else k): v for k, v in env.items()}
    assert unknown_variables(env, secrets) == ["BOOKINGS_TABLE is set by the platform but read by nobody"]
    assert missing_variables(env, secrets) == ["BOOKING_TABLE is required in the deployed mode but not set"]


def test_health_check_on_a_missing_route_is_caught() -> None:
    def edit(r: Run) -> None:
        r.one("aws:lb/targetGroup:TargetGroup", "edge-api-tg").inputs["healthCheck"]["path"] = "/ready"

    run = cached_run("dev", compute="ecs").mutated(edit)
    assert any("GET /ready is not a runtime route" in v for v in health_check_problems(run))


def test_short_keep_alive_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    run = cached_run("dev", compute="ecs")
    env, _ = runtime_environment(run)
    assert keep_alive_problems(run, UVICORN_DEFAULT_KEEP_ALIVE) != []
    if "KEEP_ALIVE_SECONDS" in settings_variables():  # the served value follows the setting
        assert served_keep_alive({**env, "KEEP_ALIVE_SECONDS": "30"}, monkeypatch) == 30
