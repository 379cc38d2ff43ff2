"""Platform fixtures: the real Pulumi program, run once per (stack, compute) under recording mocks."""

from __future__ import annotations

import pytest
from pulumi_harness import Run, cached_run

COMBOS = [("dev", "ecs"), ("dev", "ec2"), ("prod", "ecs"), ("prod", "ec2")]
# Today's layout, kept by `cdn: false` + `staffAuth: token`: every generic check runs on it too, per backend.
LEGACY = {"cdn": "false", "staffAuth": "token"}
ALL_COMBOS = [*((s, c, "") for s, c in COMBOS), ("dev", "ecs", "legacy"), ("dev", "ec2", "legacy")]


def legacy_run(compute: str) -> Run:
    return cached_run("dev", compute=compute, **LEGACY)


@pytest.fixture(params=COMBOS, ids=[f"{s}-{c}" for s, c in COMBOS])
def deployed(request: pytest.FixtureRequest) -> Run:
    """The stacks as configured (CDN and Cognito on), for both backends."""
    stack, compute = request.param
    return cached_run(stack, compute=compute)


@pytest.fixture(params=ALL_COMBOS, ids=[f"{s}-{c}" + (f"-{m}" if m else "") for s, c, m in ALL_COMBOS])
def layout(request: pytest.FixtureRequest) -> Run:
    """Both layouts: the stacks as configured, and cdn false + staffAuth token (tests that branch on them)."""
    stack, compute, mode = request.param
    return cached_run(stack, compute=compute, **(LEGACY if mode == "legacy" else {}))


@pytest.fixture(params=["ecs", "ec2"])
def legacy(request: pytest.FixtureRequest) -> Run:
    """cdn false, staffAuth token: the ALB serves everything, staff use the shared token."""
    return legacy_run(request.param)


@pytest.fixture(params=["dev", "prod"])
def ecs_run(request: pytest.FixtureRequest) -> Run:
    return cached_run(request.param, compute="ecs")


@pytest.fixture(params=["dev", "prod"])
def ec2_run(request: pytest.FixtureRequest) -> Run:
    return cached_run(request.param, compute="ec2")
