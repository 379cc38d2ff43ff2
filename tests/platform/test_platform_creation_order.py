"""The order a first ``pulumi up`` creates things in, from the dependencies each registration waited for.

The engine creates a resource once every URN in its RegisterResourceRequest's dependencies exists (explicit
``depends_on``, component dependencies expanded to their children, and the resources behind every Output
input). The harness records them from the monitor, so the transitive closure is the creation order.
"""

from __future__ import annotations

import aws_rules
import pulumi
import pulumi_aws as aws
from conftest import legacy_run
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


RULE = "aws:lb/listenerRule:ListenerRule"


def _drop_edges_to(r: Run, *dropped_types: str) -> None:
    """Remove every dependency on resources of ``dropped_types`` (as if nothing waited for them)."""
    dropped = {x.urn for t in dropped_types for x in r.of_type(t)}
    for x in r.resources:
        x.dependencies -= dropped


def test_service_racing_its_listener_is_caught() -> None:
    run = legacy_run("ecs").mutated(lambda r: _drop_edges_to(r, LISTENER))
    found = aws_rules.creation_order(run)
    assert any("ecs-runtime is not created after listener edge-https" in v for v in found), found


def test_service_racing_the_origin_rule_is_caught() -> None:
    """Behind CloudFront the runtime's traffic arrives through the listener rule: the service waits for it too."""
    run = cached_run("dev", compute="ecs").mutated(lambda r: _drop_edges_to(r, RULE))
    found = aws_rules.creation_order(run)
    assert found == ["ecs-runtime is not created after listener edge-from-cloudfront of its target group "
                     "edge-api-tg: a first up races CreateListener"], found


def test_asg_racing_its_listeners_is_caught() -> None:
    run = legacy_run("ec2").mutated(lambda r: _drop_edges_to(r, LISTENER))
    found = aws_rules.creation_order(run)
    assert any("ec2-asg is not created after listener edge-https" in v for v in found), found
    run = cached_run("prod", compute="ec2").mutated(lambda r: _drop_edges_to(r, LISTENER, RULE))
    found = aws_rules.creation_order(run)
    assert any("ec2-asg is not created after listener edge-from-cloudfront" in v for v in found), found


def test_target_group_without_listener_is_caught() -> None:
    def edit(r: Run) -> None:
        for lst in [*r.of_type(LISTENER), *r.of_type(RULE)]:
            if lst.name in ("edge-https", "edge-from-cloudfront"):
                r.resources.remove(lst)

    found = aws_rules.creation_order(cached_run("dev", compute="ecs").mutated(edit))
    assert any("has no listener" in v for v in found), found


def test_listener_before_certificate_validation_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(
        lambda r: _drop_edges_to(r, "aws:acm/certificateValidation:CertificateValidation"))
    found = aws_rules.creation_order(run)
    assert any("edge-https: TLS listener is not created after the validation" in v for v in found), found


def test_distribution_before_certificate_validation_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(
        lambda r: _drop_edges_to(r, "aws:acm/certificateValidation:CertificateValidation"))
    found = aws_rules.creation_order(run)
    assert any("cdn-distribution: distribution is not created after the validation" in v for v in found), found


def test_mapping_before_its_role_policy_is_caught() -> None:
    run = cached_run("dev", compute="ecs").mutated(
        lambda r: _drop_edges_to(r, "aws:iam/rolePolicy:RolePolicy"))
    found = aws_rules.creation_order(run)
    assert any("-stream: not created after events-publisher-role-policy" in v for v in found), found
