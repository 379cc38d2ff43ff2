"""Security properties of the CDN edge and the staff user pool, as checks over a recorded program run.

Like platform_invariants.py, each check returns the violations it found (empty list = fine), so a test can show
both sides: none in the real stacks, and the right one once a copy of the recording is mutated to break a
property (docs/edge-cdn.md says why each property matters).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pulumi_harness import PROJECT, ROOT, TEST_SECRETS, Recorded, Run, as_list

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
RULE = "aws:lb/listenerRule:ListenerRule"
# AWS's documented IDs (cdn.py has its own copy: a wrong constant there fails here).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
API_PATHS = ["/api/*", "/ws/*", "/event*", "/healthz", "/readyz"]
ALL_METHODS = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
STAFF_ONLY_JS = ROOT / "platform" / "concierge_platform" / "appsync" / "staff_only.js"


def _web_bucket(run: Run) -> Recorded:
    return run.one("aws:s3/bucket:Bucket", "cdn-web")


def _of_bucket(run: Run, typ: str, bucket: Recorded) -> list[Recorded]:
    return [r for r in run.of_type(typ) if r.inputs.get("bucket") == bucket.id]


def _origins(dist: Recorded) -> dict[str, dict[str, Any]]:
    return {o["originId"]: o for o in dist.inputs.get("origins", [])}


def web_bucket(run: Run) -> list[str]:
    """Private, owner-enforced, encrypted, and readable by this distribution only, over TLS only."""
    bad = []
    bucket = _web_bucket(run)
    blocks = _of_bucket(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket)
    if len(blocks) != 1 or not all(blocks[0].inputs.get(k) is True for k in (
            "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")):
        bad.append("web bucket: public access not blocked in all four ways")
    owners = _of_bucket(run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", bucket)
    if [o.inputs.get("rule", {}).get("objectOwnership") for o in owners] != ["BucketOwnerEnforced"]:
        bad.append("web bucket: object ownership not BucketOwnerEnforced (ACLs stay usable)")
    sse = _of_bucket(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                     bucket)
    if not sse or not sse[0].inputs["rules"][0]["applyServerSideEncryptionByDefault"].get("sseAlgorithm"):
        bad.append("web bucket: no default encryption")
    policies = _of_bucket(run, "aws:s3/bucketPolicy:BucketPolicy", bucket)
    if len(policies) != 1:
        return [*bad, f"web bucket: {len(policies)} bucket policies"]
    dist = run.one(DISTRIBUTION)
    statements = as_list(json.loads(policies[0].inputs["policy"])["Statement"])
    allows = [s for s in statements if s.get("Effect") == "Allow"]
    if len(allows) != 1:
        bad.append(f"web bucket policy: {len(allows)} Allow statements, expected only CloudFront's")
    for allow in allows:
        if allow.get("Principal") != {"Service": "cloudfront.amazonaws.com"}:
            bad.append(f"web bucket policy: grants {allow.get('Principal')}, not the CloudFront service")
        if as_list(allow.get("Action")) != ["s3:GetObject"]:
            bad.append(f"web bucket policy: CloudFront may {allow.get('Action')}, expected s3:GetObject only")
        if as_list(allow.get("Resource")) != [f"{bucket.arn}/*"]:
            bad.append(f"web bucket policy: grants on {allow.get('Resource')}")
        if allow.get("Condition") != {"StringEquals": {"AWS:SourceArn": dist.arn}}:
            bad.append(f"web bucket policy: condition {allow.get('Condition')} does not pin this distribution")
    tls = [s for s in statements if s.get("Effect") == "Deny" and
           s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} and s.get("Principal") == "*"]
    if not tls or set(as_list(tls[0].get("Resource"))) != {bucket.arn, f"{bucket.arn}/*"}:
        bad.append("web bucket policy: requests without TLS are not denied on the bucket and its objects")
    return bad


def origin_access(run: Run) -> list[str]:
    """The S3 origin is reached only through an OAC that signs every request with SigV4 (no legacy OAI)."""
    bad = []
    dist = run.one(DISTRIBUTION)
    web = _origins(dist).get("web", {})
    oacs = run.of_type("aws:cloudfront/originAccessControl:OriginAccessControl")
    if len(oacs) != 1 or web.get("originAccessControlId") != oacs[0].id:
        return ["the web origin does not use the stack's origin access control"]
    oac = oacs[0].inputs
    if (oac.get("originAccessControlOriginType"), oac.get("signingBehavior"), oac.get("signingProtocol")) != (
            "s3", "always", "sigv4"):
        bad.append(f"origin access control signs {oac.get('signingBehavior')}/{oac.get('signingProtocol')} for "
                   f"{oac.get('originAccessControlOriginType')}, expected always/sigv4 for s3")
    if (web.get("s3OriginConfig") or {}).get("originAccessIdentity"):
        bad.append("the web origin still uses a legacy origin access identity")
    if web.get("domainName") != _web_bucket(run).state["bucketRegionalDomainName"]:
        bad.append("the web origin is not the web bucket's regional endpoint")
    return bad


def distribution(run: Run) -> list[str]:
    """Aliases, viewer TLS, behaviours (web from S3, the API uncached from the ALB), HTTPS to the origin."""
    bad = []
    dist = run.one(DISTRIBUTION).inputs
    domain = run.config[f"{PROJECT}:domainName"]
    if dist.get("aliases") != [domain]:
        bad.append(f"distribution aliases {dist.get('aliases')}, expected [{domain}]")
    viewer = dist.get("viewerCertificate", {})
    if viewer.get("minimumProtocolVersion") != "TLSv1.2_2021" or viewer.get("sslSupportMethod") != "sni-only" or \
            viewer.get("cloudfrontDefaultCertificate"):
        bad.append(f"viewer TLS {viewer.get('minimumProtocolVersion')}/{viewer.get('sslSupportMethod')}, "
                   "expected TLSv1.2_2021 with SNI and the ACM certificate")
    default = dist.get("defaultCacheBehavior", {})
    if default.get("targetOriginId") != "web" or default.get("viewerProtocolPolicy") != "redirect-to-https":
        bad.append("default behaviour: not the web origin with redirect-to-https")
    if default.get("cachePolicyId") != CACHING_OPTIMIZED or default.get("compress") is not True:
        bad.append("default behaviour: not CachingOptimized with compression")
    api_origin = _origins(run.one(DISTRIBUTION)).get("api", {})
    custom = api_origin.get("customOriginConfig", {})
    if custom.get("originProtocolPolicy") != "https-only" or custom.get("originSslProtocols") != ["TLSv1.2"]:
        bad.append(f"API origin: {custom.get('originProtocolPolicy')} {custom.get('originSslProtocols')}, "
                   "expected https-only with TLSv1.2 only")
    if api_origin.get("domainName") != f"origin.{domain}":
        bad.append(f"API origin {api_origin.get('domainName')} is not the ALB's own name origin.{domain}")
    behaviours = dist.get("orderedCacheBehaviors", [])
    if [b.get("pathPattern") for b in behaviours] != API_PATHS:
        bad.append(f"API behaviours {[b.get('pathPattern') for b in behaviours]}, expected {API_PATHS}")
    for b in behaviours:
        where = f"behaviour {b.get('pathPattern')}"
        if b.get("targetOriginId") != "api" or b.get("viewerProtocolPolicy") not in ("https-only", "redirect-to-https"):
            bad.append(f"{where}: not the API origin over HTTPS")
        if b.get("cachePolicyId") != CACHING_DISABLED:
            bad.append(f"{where}: cached (a staff response could be served to someone else)")
        if b.get("originRequestPolicyId") != ALL_VIEWER_EXCEPT_HOST_HEADER:
            bad.append(f"{where}: does not forward the viewer's headers, cookies and query strings")
        if set(b.get("allowedMethods", [])) != ALL_METHODS:
            bad.append(f"{where}: allows only {b.get('allowedMethods')}")
        if b.get("functionAssociations"):
            bad.append(f"{where}: the SPA route rewrite runs on an API path")
    # Custom error responses apply to every origin: a 403/404 -> index.html mapping would hide API errors.
    for response in dist.get("customErrorResponses", []) or []:
        if response.get("responsePagePath") and int(response.get("errorCode", 0)) in (403, 404):
            bad.append(f"custom error response turns every {int(response['errorCode'])} (the API's too) into "
                       f"{response['responsePagePath']}")
    functions = [f.get("functionArn") for f in default.get("functionAssociations", [])
                 if f.get("eventType") == "viewer-request"]
    spa = run.one("aws:cloudfront/function:Function")
    if functions != [spa.arn]:
        bad.append("the SPA route rewrite does not run at viewer request on the web behaviour")
    records = {r.inputs["type"]: r for r in run.of_type("aws:route53/record:Record") if r.inputs.get("name") == domain}
    for typ in ("A", "AAAA"):
        alias = ((records.get(typ) and records[typ].inputs.get("aliases")) or [{}])[0]
        if alias.get("name") != run.one(DISTRIBUTION).state["domainName"]:
            bad.append(f"{domain} {typ} is not an alias of the distribution")
    return bad


def origin_lock(run: Run) -> list[str]:
    """The ALB takes HTTPS from CloudFront's origin-facing prefix list only, and forwards only requests with the
    secret header the distribution adds; everything else gets a 403. The secret never travels as plain config."""
    bad = []
    alb_sg = run.one("aws:ec2/securityGroup:SecurityGroup", "security-alb")
    rules = [r for r in run.of_type(INGRESS) if r.inputs["securityGroupId"] == alb_sg.id]
    if [(r.inputs.get("prefixListId"), r.inputs.get("ipProtocol"), r.inputs.get("fromPort"), r.inputs.get("toPort"))
            for r in rules] != [("pl-3b927c52", "tcp", 443, 443)] or any(
            r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") for r in rules):
        bad.append(f"ALB ingress {[(r.name, r.inputs.get('cidrIpv4') or r.inputs.get('prefixListId')) for r in rules]}"
                   ", expected HTTPS from the CloudFront origin-facing prefix list only")
    https = run.one("aws:lb/listener:Listener", "edge-https")
    (default,) = https.inputs["defaultActions"]
    if default.get("type") != "fixed-response" or default.get("fixedResponse", {}).get("statusCode") != "403":
        bad.append(f"ALB HTTPS default action is {default.get('type')}, expected a 403 fixed response")
    header = _origins(run.one(DISTRIBUTION))["api"].get("customHeaders", [])
    listener_rules = [r for r in run.of_type(RULE) if r.inputs.get("listenerArn") == https.arn]
    forwarding = [r for r in listener_rules if any(a.get("type") == "forward" for a in r.inputs.get("actions", []))]
    if len(header) != 1 or len(forwarding) != 1:
        return [*bad, f"{len(header)} origin headers and {len(forwarding)} forwarding rules, expected one each"]
    conditions = forwarding[0].inputs.get("conditions", [])
    wanted = {"httpHeader": {"httpHeaderName": header[0]["name"], "values": [header[0]["value"]]}}
    if conditions != [wanted]:
        bad.append(f"the forwarding rule's conditions {conditions} are not exactly the distribution's origin header")
    if len(header[0]["value"]) < 32:
        bad.append("the origin header value is shorter than 32 characters")
    plain = [k for k, v in run.config.items() if v == header[0]["value"] and k not in _secret_keys()]
    if plain:
        bad.append(f"the origin header value is plain stack config ({', '.join(plain)})")
    if "origins" not in run.one(DISTRIBUTION).secret_inputs or "conditions" not in forwarding[0].secret_inputs:
        bad.append("the origin header value is not a secret in the distribution or the listener rule")
    return bad


def _secret_keys() -> set[str]:
    """The keys the harness passes as secret config, as `pulumi config set --secret` would."""
    return {f"{PROJECT}:{k}" for k in TEST_SECRETS}


def cdn_environment(run: Run, env: dict[str, str]) -> list[str]:
    """Behind CloudFront the runtime accepts WebSockets opened from the site although CloudFront sends it the
    origin's Host, knows its public origin, and takes the viewer's address from X-Forwarded-For two hops in
    (CloudFront writes it, the ALB appends CloudFront's own): one hop would rate-limit CloudFront's servers."""
    bad = []
    domain = run.config[f"{PROJECT}:domainName"]
    if f"https://{domain}" not in env.get("ALLOWED_ORIGINS", "").split(","):
        bad.append(f"ALLOWED_ORIGINS {env.get('ALLOWED_ORIGINS')!r} lacks https://{domain}")
    if env.get("PUBLIC_ORIGIN") != f"https://{domain}":
        bad.append(f"PUBLIC_ORIGIN {env.get('PUBLIC_ORIGIN')!r} is not https://{domain}")
    if env.get("TRUSTED_PROXY_HOPS") != "2" or env.get("TRUST_PROXY_HEADERS") != "true":
        bad.append(f"TRUSTED_PROXY_HOPS {env.get('TRUSTED_PROXY_HOPS')!r}: the client is 2 hops in behind CloudFront")
    return bad


# --- staff user pool ---------------------------------------------------------------------------------------

def staff_group_in_handler() -> str:
    match = re.search(r'^const STAFF_GROUP = "([^"]+)";$', STAFF_ONLY_JS.read_text(), flags=re.MULTILINE)
    assert match, f"{STAFF_ONLY_JS} has no `const STAFF_GROUP = \"...\";`"
    return match.group(1)


def user_pool(run: Run) -> list[str]:
    """Admin-created users only, strong passwords, TOTP MFA per staffMfa, no SMS, protected with the stack."""
    bad = []
    pool = run.one("aws:cognito/userPool:UserPool")
    p = pool.inputs
    if (p.get("adminCreateUserConfig") or {}).get("allowAdminCreateUserOnly") is not True:
        bad.append("user pool: anyone may sign up (allowAdminCreateUserOnly is not true)")
    policy = p.get("passwordPolicy") or {}
    if policy.get("minimumLength", 8) < 12:
        bad.append(f"user pool: passwords of {policy.get('minimumLength')} characters accepted, need >= 12")
    for kind in ("requireLowercase", "requireUppercase", "requireNumbers", "requireSymbols"):
        if policy.get(kind) is not True:
            bad.append(f"user pool: password policy lacks {kind}")
    mfa = {"optional": "OPTIONAL", "required": "ON"}[run.config.get(f"{PROJECT}:staffMfa", "optional")]
    if p.get("mfaConfiguration") != mfa:
        bad.append(f"user pool: MFA {p.get('mfaConfiguration')}, the stack asks for {mfa}")
    if (p.get("softwareTokenMfaConfiguration") or {}).get("enabled") is not True:
        bad.append("user pool: TOTP (software token) MFA is not enabled")
    if p.get("smsConfiguration") or "SMS_MFA" in str(p):
        bad.append("user pool: SMS is configured (MFA is TOTP only)")
    protect = run.config.get(f"{PROJECT}:protect", run.config.get(f"{PROJECT}:deletionProtection", "false"))
    if (p.get("deletionProtection") == "ACTIVE") != (protect == "true") or pool.protect != (protect == "true"):
        bad.append(f"user pool: deletion protection {p.get('deletionProtection')} / protect {pool.protect} "
                   f"does not follow protect={protect}")
    return bad


def app_client(run: Run) -> list[str]:
    """A public client: no secret, SRP and refresh only, no OAuth, no user-existence leaks, bounded tokens."""
    bad = []
    c = run.one("aws:cognito/userPoolClient:UserPoolClient").inputs
    if c.get("userPoolId") != run.one("aws:cognito/userPool:UserPool").id:
        bad.append("app client: not of the staff pool")
    if c.get("generateSecret"):
        bad.append("app client: has a secret (a browser cannot keep one)")
    flows = set(c.get("explicitAuthFlows") or [])
    if flows != {"ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}:
        bad.append(f"app client: auth flows {sorted(flows)}, expected SRP + refresh only")
    if c.get("allowedOauthFlowsUserPoolClient") or c.get("allowedOauthFlows") or c.get("callbackUrls"):
        bad.append("app client: OAuth flows enabled (the hosted UI is not used)")
    if c.get("preventUserExistenceErrors") != "ENABLED":
        bad.append("app client: reveals whether a user exists")
    units = c.get("tokenValidityUnits") or {}
    if (c.get("accessTokenValidity"), units.get("accessToken")) != (60, "minutes"):
        bad.append(f"app client: access tokens live {c.get('accessTokenValidity')} {units.get('accessToken')}")
    if units.get("refreshToken") != "hours" or not 1 <= c.get("refreshTokenValidity", 720) <= 24:
        bad.append(f"app client: refresh tokens live {c.get('refreshTokenValidity')} {units.get('refreshToken')}")
    return bad


def staff_events_and_runtime(run: Run, env: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """AppSync and the runtime take the pool's tokens of this client and group; no shared token anywhere."""
    bad = []
    pool = run.one("aws:cognito/userPool:UserPool")
    client = run.one("aws:cognito/userPoolClient:UserPoolClient")
    group = run.one("aws:cognito/userGroup:UserGroup")
    if group.inputs.get("name") != staff_group_in_handler() or group.inputs.get("userPoolId") != pool.id:
        bad.append(f"group {group.inputs.get('name')} is not the handler's STAFF_GROUP {staff_group_in_handler()}")
    event = run.one("aws:appsync/api:Api").inputs["eventConfig"]
    cognito = [p for p in event["authProviders"] if p["authType"] == "AMAZON_COGNITO_USER_POOLS"]
    if len(cognito) != 1 or cognito[0].get("cognitoConfig") != {
            "userPoolId": pool.id, "awsRegion": run.region_of(pool), "appIdClientRegex": f"^{client.id}$"}:
        bad.append(f"AppSync user-pool provider {cognito} does not accept exactly this pool and client")
    if {"authType": "AMAZON_COGNITO_USER_POOLS"} not in event.get("connectionAuthModes", []):
        bad.append("AppSync connections do not accept the user pool")
    wanted = {"restaurant-booking": [{"authType": "AMAZON_COGNITO_USER_POOLS"}],
              "conversations": [{"authType": "AWS_LAMBDA"}, {"authType": "AMAZON_COGNITO_USER_POOLS"}]}
    code = STAFF_ONLY_JS.read_text()
    for ns in run.of_type("aws:appsync/channelNamespace:ChannelNamespace"):
        name = ns.inputs["name"]
        if ns.inputs.get("subscribeAuthModes") != wanted[name]:
            bad.append(f"namespace {name} subscribes with {ns.inputs.get('subscribeAuthModes')}")
        if ns.inputs.get("codeHandlers") != code:
            bad.append(f"namespace {name} does not run appsync/staff_only.js (group membership unchecked)")
    authorizer = run.one("aws:lambda/function:Function", "events-authorizer")
    variables = authorizer.inputs["environment"]["variables"]
    if variables.get("STAFF_AUTH") != "cognito" or "STAFF_TOKEN_SECRET_ARN" in variables:
        bad.append("the Lambda authorizer may still accept a shared staff token")
    if run.of_type("aws:secretsmanager/secret:Secret") and any(
            "staff-token" in str(s.inputs.get("namePrefix")) for s in run.of_type("aws:secretsmanager/secret:Secret")):
        bad.append("a staff-token secret exists although staff sign in with Cognito")
    expected = {"STAFF_AUTH": "cognito", "COGNITO_USER_POOL_ID": pool.id, "COGNITO_CLIENT_ID": client.id,
                "COGNITO_REGION": run.region_of(pool), "COGNITO_STAFF_GROUP": group.inputs.get("name")}
    got = {k: env.get(k) for k in expected}
    if got != expected:
        bad.append(f"runtime environment {got}, expected {expected}")
    if "STAFF_TOKEN" in env or "STAFF_TOKEN" in secrets:
        bad.append("the runtime still receives STAFF_TOKEN")
    return bad

