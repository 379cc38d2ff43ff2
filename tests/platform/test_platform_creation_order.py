"""The order a first ``pulumi up`` creates things in, from the dependencies each registration waited for.

The engine creates a resource once every URN in its RegisterResourceRequest's dependencies exists (explicit
``depends_on``, component dependencies expanded to their children, and the resources behind every Output
input). The harness records them from the monitor, so the transitive closure is the creation order.
"""

from __future__ import annotations

import aws_rules
import pulumi
import pulumi_aws as aws
from pulumi_harness import Run, cached_run, run_program

SERVICE = "aws:ecs/service:Service"
LISTENER = "aws:lb/listener:Listener"


def test_creation_order(deployed: Run) -> None:
    assert aws_rules.creation_order(deployed) == []


def test_recorded_dependencies_are_the_real_ones() -> None:
    """depends_on, an Output input and a component in depends_on all order; unrelated resources do not."""

    class Box(pulumi.ComponentResource):
        def __init__(self, name: str) -> None:
            super().__init__("test:index:Box", name)
            self.inner = aws.sqs.Queue(f"{name}-inner", opts=pulumi.ResourceOptions(parent=self))
            self.register_outputs({})

    def program() -> None:
        first = aws.sqs.Queue("first")
        aws.sqs.Queue("unrelated")
        second = aws.sqs.Queue("second", opts=pulumi.ResourceOptions(depends_on=[first]))
        aws.sns.Topic("third", name=second.name.apply(lambda n: f"{n}-topic"))
        box = Box("box")
        aws.sqs.Queue("after-box", opts=pulumi.ResourceOptions(depends_on=[box]))

    run = run_program("dev", program=program)
    urn = {r.name: r.urn for r in run.resources}
    after = {r.name: run.created_after(r) for r in run.resources}
    assert urn["first"] in after["second"]
    assert {urn["first"], urn["second"]} <= after["third"]  # transitive, through the Output input
    assert urn["box-inner"] in after["after-box"]  # a component dependency waits for its children
    assert urn["unrelated"] not in after["third"] | after["second"]
    assert after["first"] == set()


def _drop_edges_to(r: Run, dropped_type: str) -> None:
    """Remove every dependency on resources of ``dropped_type`` (as if nothing waited for them)."""
    dropped = {x.urn for x in r.of_type(dropped_type)}
    for x in r.resources:
        x.dependencies -= dropped


def test_service_racing_its_listener_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(lambda r: _drop_edges_to(r, LISTENER))
    found = aws_rules.creation_order(run)
    assert any("ecs-runtime is not created after listener edge-https" in v for v in found), found


def test_asg_racing_its_listeners_is_caught() -> None:
    run = cached_run("prod", compute="ec2").mutated(lambda r: _drop_edges_to(r, LISTENER))
    found = aws_rules.creation_order(run)
    assert any("ec2-asg is not created after listener edge-https" in v for v in found), found


def test_target_group_without_listener_is_caught() -> None:
    def edit(r: Run) -> None:
        for lst in r.of_type(LISTENER):
            if lst.name == "edge-https":
                r.resources.remove(lst)

    found = aws_rules.creation_order(cached_run("dev", compute="ecs").mutated(edit))
    assert any("has no listener" in v for v in found), found


def test_listener_before_certificate_validation_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(
        lambda r: _drop_edges_to(r, "aws:acm/certificateValidation:CertificateValidation"))
    found = aws_rules.creation_order(run)
    assert any("edge-https: TLS listener is not created after the validation" in v for v in found), found


def test_mapping_before_its_role_policy_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(
        lambda r: _drop_edges_to(r, "aws:iam/rolePolicy:RolePolicy"))
    found = aws_rules.creation_order(run)
    assert any("-stream: not created after events-publisher-role-policy" in v for v in found), found
