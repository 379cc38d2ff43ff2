"""The mock harness itself refuses the two ways Pulumi unit tests pass vacuously or wrongly."""

from __future__ import annotations

import pulumi_aws as aws
import pytest
from pulumi_harness import run_program


def test_a_run_that_records_nothing_fails() -> None:
    with pytest.raises(AssertionError, match="mocks are not active"):
        run_program("dev", program=lambda: None)


def test_duplicate_urns_fail_like_the_real_engine() -> None:
    def program() -> None:
        aws.sqs.Queue("same")
        aws.sqs.Queue("same")

    with pytest.raises(AssertionError, match="Duplicate resource URN"):
        run_program("dev", program=program)


def test_a_component_runs_alone() -> None:
    from concierge_platform.network import Network, NetworkArgs

    run = run_program("dev", program=lambda: Network("unit", NetworkArgs(cidr="10.9.0.0/20", name="unit")))
    cidrs = sorted(s.inputs["cidrBlock"] for s in run.of_type("aws:ec2/subnet:Subnet"))
    assert cidrs == ["10.9.0.0/24", "10.9.1.0/24", "10.9.8.0/24", "10.9.9.0/24"]
    assert run.one("aws:ec2/natGateway:NatGateway").inputs["subnetId"] == run.one(
        "aws:ec2/subnet:Subnet", "unit-public-0").id


def test_resource_options_and_urns_are_recorded() -> None:
    import pulumi

    def program() -> None:
        first = aws.sqs.Queue("kept", opts=pulumi.ResourceOptions(protect=True))
        aws.sqs.Queue("later", opts=pulumi.ResourceOptions(depends_on=[first], delete_before_replace=True))

    run = run_program("dev", program=program)
    kept, later = run.one("aws:sqs/queue:Queue", "kept"), run.one("aws:sqs/queue:Queue", "later")
    assert kept.urn.endswith("::kept")
    assert (kept.protect, kept.delete_before_replace) == (True, False)
    assert (later.protect, later.delete_before_replace) == (False, True)
    assert later.dependencies == {kept.urn}
    assert kept.arn == f"arn:aws:sqs:us-east-1:123456789012:{kept.physical_name}"
