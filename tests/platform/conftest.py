"""Platform fixtures: the real Pulumi program, run once per (stack, compute) under recording mocks."""

from __future__ import annotations

import pytest
from pulumi_harness import Run, cached_run

COMBOS = [("dev", "ecs"), ("dev", "ec2"), ("prod", "ecs"), ("prod", "ec2")]


@pytest.fixture(params=COMBOS, ids=[f"{s}-{c}" for s, c in COMBOS])
def deployed(request: pytest.FixtureRequest) -> Run:
    stack, compute = request.param
    return cached_run(stack, compute=compute)


@pytest.fixture(params=["dev", "prod"])
def ecs_run(request: pytest.FixtureRequest) -> Run:
    return cached_run(request.param, compute="ecs")


@pytest.fixture(params=["dev", "prod"])
def ec2_run(request: pytest.FixtureRequest) -> Run:
    return cached_run(request.param, compute="ec2")
