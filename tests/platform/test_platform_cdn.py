"""The CDN edge (cdn true): private web bucket + upload, OAC, distribution, us-east-1 certificate and WAF, ALB
origin lock; each security property also broken in a copy of the recording to show the check refuses it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import aws_api_shapes as shapes
import aws_rules
import edge_invariants as edge
import iam_lint
import pytest
from conftest import legacy_run
from pulumi_harness import WEB_DIST_FIXTURE, Recorded, Run, cached_run
from test_platform_config_and_parts import _error_of
from test_platform_wiring import runtime_environment

DIST = "aws:cloudfront/distribution:Distribution"
CHECKS: dict[str, Callable[[Run], list[str]]] = {
    "web_bucket": edge.web_bucket, "origin_access": edge.origin_access, "distribution": edge.distribution,
    "origin_lock": edge.origin_lock, "cloudfront_regions": aws_rules.cloudfront_regions,
    "security_group_quota": aws_rules.security_group_quota,
    "cloudfront_documented_rules": shapes.cloudfront_documented_rules,
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_edge_properties_hold(deployed: Run, check: str) -> None:
    assert CHECKS[check](deployed) == []


def test_runtime_allows_the_site_origin(deployed: Run) -> None:
    env, _ = runtime_environment(deployed)
    assert edge.cdn_environment(deployed, env) == []
    broken = (("ALLOWED_ORIGINS", "", "lacks https://"), ("PUBLIC_ORIGIN", "https://x.org", "is not"),
              ("TRUSTED_PROXY_HOPS", "1", "2 hops in"))
    for key, value, expected in broken:
        assert any(expected in v for v in edge.cdn_environment(deployed, {**env, key: value}))


def _dist(r: Run) -> dict[str, Any]:
    return r.one(DIST).inputs


def _policy_edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Run], None]:
    def edit(r: Run) -> None:
        policy = r.one("aws:s3/bucketPolicy:BucketPolicy", "cdn-web-policy")
        doc = json.loads(policy.inputs["policy"])
        change(doc)
        policy.inputs["policy"] = json.dumps(doc)
    return edit


def _origin(r: Run, origin_id: str) -> dict[str, Any]:
    return next(o for o in _dist(r)["origins"] if o["originId"] == origin_id)


def _drop_prefix_list(r: Run) -> None:
    rule = r.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "security-in-alb-https-cloudfront")
    rule.inputs.pop("prefixListId")
    rule.inputs["cidrIpv4"] = "0.0.0.0/0"


BROKEN: list[tuple[str, Callable[[Run], None], str]] = [
    ("web_bucket", lambda r: r.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                                   "cdn-web-public-access").inputs.update(restrictPublicBuckets=False),
     "public access not blocked"),
    ("web_bucket", lambda r: r.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                                   "cdn-web-ownership").inputs["rule"].update(objectOwnership="ObjectWriter"),
     "BucketOwnerEnforced"),
    ("web_bucket", _policy_edit(lambda d: d["Statement"][0].update(Condition={})), "does not pin this distribution"),
    ("web_bucket", _policy_edit(lambda d: d["Statement"][0]["Condition"]["StringEquals"].update(
        {"AWS:SourceArn": "arn:aws:cloudfront::123456789012:distribution/EOTHER"})), "does not pin this distribution"),
    ("web_bucket", _policy_edit(lambda d: d["Statement"][0].update(Principal="*")), "not the CloudFront service"),
    ("web_bucket", _policy_edit(lambda d: d["Statement"][0].update(Action=["s3:GetObject", "s3:ListBucket"])),
     "expected s3:GetObject only"),
    ("web_bucket", _policy_edit(lambda d: d["Statement"].pop(1)), "without TLS are not denied"),
    ("origin_access", lambda r: r.one("aws:cloudfront/originAccessControl:OriginAccessControl").inputs.update(
        signingBehavior="no-override"), "expected always/sigv4"),
    ("origin_access", lambda r: _origin(r, "web").pop("originAccessControlId"), "does not use the stack's origin"),
    ("origin_access", lambda r: _origin(r, "web").update(
        s3OriginConfig={"originAccessIdentity": "origin-access-identity/cloudfront/E1"}), "legacy origin access"),
    ("distribution", lambda r: _dist(r)["viewerCertificate"].update(minimumProtocolVersion="TLSv1"),
     "expected TLSv1.2_2021"),
    ("distribution", lambda r: _dist(r)["defaultCacheBehavior"].update(viewerProtocolPolicy="allow-all"),
     "redirect-to-https"),
    ("distribution", lambda r: _dist(r).update(aliases=["other.example.com"]), "distribution aliases"),
    ("distribution", lambda r: _dist(r)["orderedCacheBehaviors"][0].update(
        cachePolicyId=edge.CACHING_OPTIMIZED), "behaviour /api/*: cached"),
    ("distribution", lambda r: _dist(r)["orderedCacheBehaviors"][1].update(originRequestPolicyId="x"),
     "behaviour /ws/*: does not forward"),
    ("distribution", lambda r: _dist(r)["orderedCacheBehaviors"].pop(2), "API behaviours"),
    ("distribution", lambda r: _origin(r, "api")["customOriginConfig"].update(originProtocolPolicy="match-viewer"),
     "expected https-only"),
    ("distribution", lambda r: _dist(r).update(customErrorResponses=[
        {"errorCode": 404, "responseCode": 200, "responsePagePath": "/index.html"}]), "the API's too"),
    ("origin_lock", _drop_prefix_list, "CloudFront origin-facing prefix list only"),
    ("origin_lock", lambda r: r.one("aws:lb/listener:Listener", "edge-https").inputs.update(
        defaultActions=[{"type": "forward", "targetGroupArn": "x"}]), "expected a 403 fixed response"),
    ("origin_lock", lambda r: r.one("aws:lb/listenerRule:ListenerRule").inputs["conditions"][0]["httpHeader"].update(
        values=["something-else-entirely-but-long-enough"]), "not exactly the distribution's origin header"),
    ("origin_lock", lambda r: r.one(DIST).secret_inputs.discard("origins"), "is not a secret"),
    ("origin_lock", lambda r: r.config.update({"nova-concierge:plainHeader": _origin(r, "api")["customHeaders"][0][
        "value"]}), "plain stack config"),
    ("cloudfront_regions", lambda r: r.one("aws:wafv2/webAcl:WebAcl").inputs.update(scope="REGIONAL"),
     "must have scope CLOUDFRONT"),
    ("cloudfront_documented_rules", lambda r: _dist(r).update(webAclId=r.one("aws:wafv2/webAcl:WebAcl").id),
     "must be the WAFv2 web ACL's ARN"),
    ("cloudfront_documented_rules", lambda r: _origin(r, "api")["customHeaders"][0].update(name="X-Forwarded-For"),
     "refuses custom origin header"),
]


@pytest.mark.parametrize(("check", "edit", "expected"), BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_broken_edge_properties_are_refused(check: str, edit: Callable[[Run], None], expected: str) -> None:
    run = cached_run("prod", compute="ecs")
    assert CHECKS[check](run) == []
    found = CHECKS[check](run.mutated(edit))
    assert any(expected in v for v in found), found


def _default_provider(typ: str, name: str) -> Callable[[Run], None]:
    """Re-register a resource as if it had no explicit provider: it lands in the stack's region."""
    def edit(r: Run) -> None:
        r.one(typ, name).provider = ""
    return edit


EU = {"aws:region": "eu-west-1"}


def test_cloudfront_resources_are_in_us_east_1_whatever_the_stack_region() -> None:
    run = cached_run("prod", compute="ecs", **EU)
    assert run.region_of(run.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb")) == "eu-west-1"
    assert run.one("aws:acm/certificate:Certificate", "edge-api").arn.startswith("arn:aws:acm:eu-west-1:")
    assert run.one("aws:acm/certificate:Certificate", "cdn-cert").arn.startswith("arn:aws:acm:us-east-1:")
    assert run.one("aws:wafv2/webAcl:WebAcl").arn.startswith("arn:aws:wafv2:us-east-1:123456789012:global/webacl/")
    provider = run.provider_of(run.one("aws:wafv2/webAcl:WebAcl"))
    assert provider is not None
    assert provider.inputs["region"] == "us-east-1"
    assert aws_rules.cloudfront_regions(run) == []
    assert run.one("aws:cognito/userPool:UserPool").id.startswith("eu-west-1_")


@pytest.mark.parametrize(("typ", "name", "expected"), [
    ("aws:wafv2/webAcl:WebAcl", "cdn-waf", "CLOUDFRONT web ACL created in eu-west-1"),
    ("aws:acm/certificate:Certificate", "cdn-cert", "is in eu-west-1, not us-east-1"),
    ("aws:acm/certificateValidation:CertificateValidation", "cdn-cert-validated", "from eu-west-1"),
    ("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "obs-waf-logging",
     "logging of a CLOUDFRONT web ACL configured in eu-west-1"),
    ("aws:cloudwatch/logGroup:LogGroup", "obs-waf-logs", "logs only to us-east-1 log groups"),
])
def test_cloudfront_resource_in_the_stack_region_is_refused(typ: str, name: str, expected: str) -> None:
    found = aws_rules.cloudfront_regions(cached_run("prod", compute="ecs", **EU).mutated(_default_provider(typ, name)))
    assert any(expected in v for v in found), found


def test_the_prefix_list_counts_by_its_weight() -> None:
    """A second prefix-list rule on the ALB group (2 x 55 > 60) would fail with RulesPerSecurityGroupLimitExceeded."""
    def edit(r: Run) -> None:
        rule = r.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "security-in-alb-https-cloudfront")
        r.resources.append(Recorded(rule.typ, "second", dict(rule.inputs), dict(rule.state), "second-id"))

    found = aws_rules.security_group_quota(cached_run("dev", compute="ec2").mutated(edit))
    assert found == ["security-alb: 110 ingress rules (prefix lists by weight), quota 60"]


def test_waf_rules_match_the_regional_acl() -> None:
    """The CloudFront ACL has the same managed rules and rate limit as the ALB's had (cdn false)."""
    cdn_acl = cached_run("prod", compute="ecs").one("aws:wafv2/webAcl:WebAcl").inputs
    alb_acl = legacy_run("ecs").one("aws:wafv2/webAcl:WebAcl").inputs
    assert (cdn_acl["scope"], alb_acl["scope"]) == ("CLOUDFRONT", "REGIONAL")
    assert cdn_acl["rules"] == alb_acl["rules"]
    assert cdn_acl["defaultAction"] == alb_acl["defaultAction"] == {"allow": {}}


def test_the_alb_is_the_site_without_the_cdn(legacy: Run) -> None:
    """cdn false keeps today's layout: no distribution, no bucket upload, the site name on the ALB, open 80/443."""
    assert legacy.of_type(DIST) == []
    assert legacy.of_type("aws:s3/bucketObjectv2:BucketObjectv2") == []
    https = legacy.one("aws:lb/listener:Listener", "edge-https")
    assert https.inputs["defaultActions"][0]["type"] == "forward"
    assert legacy.of_type("aws:lb/listenerRule:ListenerRule") == []
    ingress = {(r.inputs.get("cidrIpv4"), r.inputs["fromPort"]) for r in legacy.of_type(edge.INGRESS)
               if r.inputs["securityGroupId"] == legacy.one("aws:ec2/securityGroup:SecurityGroup", "security-alb").id}
    assert ingress == {("0.0.0.0/0", 443), ("0.0.0.0/0", 80)}
    env, _ = runtime_environment(legacy)
    assert "ALLOWED_ORIGINS" not in env
    assert "TRUSTED_PROXY_HOPS" not in env  # the ALB is the only proxy
    assert env["PUBLIC_ORIGIN"] == f"https://{legacy.config['nova-concierge:domainName']}"


def test_build_upload_types_and_cache_headers() -> None:
    objects = {o.inputs["key"]: o.inputs for o in cached_run("prod", compute="ecs").of_type(
        "aws:s3/bucketObjectv2:BucketObjectv2")}
    files = sorted(p.relative_to(WEB_DIST_FIXTURE).as_posix() for p in WEB_DIST_FIXTURE.rglob("*") if p.is_file())
    assert sorted(objects) == files
    year = "public, max-age=31536000, immutable"
    assert {k: (v["contentType"], v["cacheControl"]) for k, v in objects.items()} == {
        "index.html": ("text/html; charset=utf-8", "no-cache"),
        "favicon.svg": ("image/svg+xml", "no-cache"),
        "pcm-capture.js": ("text/javascript; charset=utf-8", "no-cache"),
        "assets/pcm-capture.js": ("text/javascript; charset=utf-8", "no-cache"),  # unhashed, though in assets/
        "assets/index-Bll0fVF5.js": ("text/javascript; charset=utf-8", year),
        "assets/index-Bll0fVF5.js.map": ("application/json", year),
        "assets/index-QvaFC_vZ.css": ("text/css; charset=utf-8", year),
    }


@pytest.mark.parametrize(("key", "hashed"), [
    ("assets/index-Bll0fVF5.js", True), ("assets/vendor-a_b-C9dE.js", True), ("assets/analyser.js", False),
    ("assets/audio-analyser.js", False), ("index-Bll0fVF5.js", False), ("assets/x-Bll0fVF.js", False)])
def test_only_content_hashed_assets_are_immutable(key: str, hashed: bool) -> None:
    from concierge_platform.cdn import IMMUTABLE, cache_control

    assert (cache_control(key) == IMMUTABLE) is hashed


def test_index_html_waits_for_the_hashed_assets() -> None:
    """A deploy switches index.html to the new build only once every file it names is in the bucket."""
    run = cached_run("prod", compute="ecs")
    objects = {o.inputs["key"]: o for o in run.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    before = run.created_after(objects["index.html"])
    assert {o.urn for k, o in objects.items() if o.inputs["cacheControl"] != "no-cache"} <= before


SPA_CASES = {"/": "/index.html", "/staff": "/index.html", "/staff/bookings/42": "/index.html",
             "/assets/index-Bll0fVF5.js": "/assets/index-Bll0fVF5.js", "/favicon.svg": "/favicon.svg"}


def test_spa_route_function_in_node() -> None:
    """The CloudFront Function (cloudfront-js-2.0, ECMAScript 5.1 plus some ES6) run on sample viewer requests."""
    from concierge_platform.cdn import SPA_ROUTES_JS

    script = SPA_ROUTES_JS + "\nconst cases = " + json.dumps(list(SPA_CASES)) + ";\n" + \
        "console.log(JSON.stringify(cases.map(u => handler({request: {uri: u}}).uri)));\n"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True, timeout=30).stdout
    assert json.loads(out) == list(SPA_CASES.values())


def test_bucket_policy_passes_iam_lint() -> None:
    run = cached_run("prod", compute="ecs")
    docs = [d for d in iam_lint.documents(run) if d.resource == "cdn-web-policy"]
    assert len(docs) == 1
    assert docs[0].kind == "resource"
    assert iam_lint.parliament_findings(docs[0]) == []
    assert "cdn-web-policy" in {d.resource for d in iam_lint.documents(run)}  # so iam_lint.lint covers it too

    def edit(r: Run) -> None:
        _policy_edit(lambda d: d["Statement"][0].update(Action=["s3:GetObjekt"]))(r)

    broken = [d for d in iam_lint.documents(run.mutated(edit)) if d.resource == "cdn-web-policy"]
    assert any(issue == "UNKNOWN_ACTION" for issue, _ in iam_lint.parliament_findings(broken[0]))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"originSecret": None}, "config originSecret is required with cdn true"),
    ({"webDistDir": "/nonexistent/dist"}, "holds no index.html: build the web app first"),
    ({"originDomainName": "concierge-dev.example.com"}, "must differ from domainName"),
    ({"cdnPriceClass": "PriceClass_Cheap"}, "config cdnPriceClass must be"),
])
def test_bad_cdn_config_stops_with_a_named_key(overrides: dict[str, str | None], message: str) -> None:
    assert message in _error_of("dev", overrides)


def test_short_origin_secret_is_refused() -> None:
    assert "config originSecret must be 32..128 characters" in _error_of("dev", {"originSecret": "short"})
