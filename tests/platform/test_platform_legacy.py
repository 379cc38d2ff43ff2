"""The generic AWS checks (naming, API shapes, creation order, IAM lint, invariants) on the other layout:
cdn false + staffAuth token, the ALB serving everything with the shared staff token, for both backends."""

from __future__ import annotations

from collections.abc import Callable

import aws_api_shapes
import aws_rules
import iam_lint
import platform_invariants
import pytest
from pulumi_harness import Run

CHECKS: dict[str, Callable[[Run], list[str]]] = {
    **{f"rules.{k}": v for k, v in aws_rules.ALL.items()},
    **{f"shapes.{k}": v for k, v in aws_api_shapes.ALL.items()},
    **{f"iam.{k}": v for k, v in iam_lint.ALL.items()},
    **{f"invariants.{k}": v for k, v in platform_invariants.ALL.items()},
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_generic_checks_hold_without_cdn_and_cognito(legacy: Run, check: str) -> None:
    assert CHECKS[check](legacy) == []
