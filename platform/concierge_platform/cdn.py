"""CDN edge (stack setting ``cdn``): the built web app on a private S3 bucket and one CloudFront distribution
in front of it and of the ALB, with a CLOUDFRONT-scope WAF web ACL and a us-east-1 certificate.

The site name (``domainName``) points at CloudFront; the ALB keeps its own name (``originDomainName``) and
answers only requests that carry the secret origin header CloudFront adds (edge.py, security.py). Every
choice and its AWS documentation: docs/edge-cdn.md.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

# CloudFront's ACM certificates and CLOUDFRONT-scope web ACLs live in us-east-1, whatever the stack's region:
# https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cnames-and-https-requirements.html
# https://docs.aws.amazon.com/waf/latest/developerguide/how-aws-waf-works-resources.html
CLOUDFRONT_REGION = "us-east-1"
# Managed policies, by the IDs AWS documents for them:
# https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-cache-policies.html
# https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-origin-request-policies.html
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
# Route 53 alias target zone of every CloudFront distribution:
# https://docs.aws.amazon.com/Route53/latest/APIReference/API_AliasTarget.html
CLOUDFRONT_ZONE_ID = "Z2FDTNDATAQYW2"
# The header CloudFront adds on the way to the ALB; the ALB's listener rule forwards only requests carrying it.
ORIGIN_HEADER = "X-Origin-Verify"
# What the runtime serves (runtime/app.py routes); everything else is the web app from S3.
API_PATHS: tuple[str, ...] = ("/api/*", "/ws/*", "/event*", "/healthz", "/readyz")
ALL_METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
WEB_ORIGIN = "web"
API_ORIGIN = "api"
# Cache-Control for the uploaded build: content-hashed names never change content (a new build gets new names),
# everything else (index.html, unhashed public files) is revalidated on every load so a deploy shows at once.
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# Vite names bundled files <name>-<8 base64url characters>.<ext> under assets/. An 8-letter lower-case word
# ("-analyser.js") would look the same, so a hash must contain a digit, an upper-case letter, "_" or "-";
# a hash made only of lower-case letters (odds ~1/1500) is merely served no-cache, the safe side.
HASHED_ASSET = re.compile(r"^assets/(?:.*/)?[^/]+-(?=[A-Za-z0-9_-]*[0-9A-Z_-])[A-Za-z0-9_-]{8}\.[A-Za-z0-9.]+$")
# Content types that must not depend on the build machine's /etc/mime.types (mimetypes.MimeTypes() below reads
# only Python's built-in table): module scripts need a JavaScript type or browsers refuse them.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json", ".wasm": "application/wasm", ".txt": "text/plain; charset=utf-8",
    ".ico": "image/x-icon", ".png": "image/png", ".woff2": "font/woff2", ".wav": "audio/wav",
}
_BUILTIN_TYPES = mimetypes.MimeTypes()  # the built-in table only, no system files: same result on every machine
# Single-page-app routes (a path whose last segment has no "."): the app shell, rewritten at the viewer on the
# S3 behaviour only. Distribution-wide custom error responses would also turn the API's 403/404 into index.html.
SPA_ROUTES_JS = """\
function handler(event) {
  var request = event.request;
  var uri = request.uri;
  var last = uri.substring(uri.lastIndexOf('/') + 1);
  if (last === '' || last.indexOf('.') === -1) {
    request.uri = '/index.html';
  }
  return request;
}
"""


@dataclass(frozen=True)
class WebFile:
    key: str
    path: Path
    content_type: str
    cache_control: str


def content_type(key: str) -> str:
    suffix = Path(key).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = _BUILTIN_TYPES.guess_type(key, strict=False)
    return guessed or "application/octet-stream"


def cache_control(key: str) -> str:
    return IMMUTABLE if HASHED_ASSET.match(key) else NO_CACHE


def web_files(dist: Path) -> list[WebFile]:
    """Every file of the build, keyed by its path below ``dist`` (sorted: stable resource names)."""
    found = []
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        key = path.relative_to(dist).as_posix()
        found.append(WebFile(key, path, content_type(key), cache_control(key)))
    return found


def bucket_policy(bucket_arn: str, distribution_arn: str) -> str:
    """Only this distribution (through its OAC) may read objects; nothing reaches the bucket without TLS.

    https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-s3.html
    """
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "CloudFrontReadsThroughOac", "Effect": "Allow",
         "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}}},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}, sort_keys=True)


@dataclass
class CdnArgs:
    name: str
    domain_name: str
    zone_id: str
    origin_domain_name: str  # the ALB's own name (edge.py), covered by the ALB's certificate
    origin_secret: pulumi.Input[str]
    dist_dir: Path
    waf_rules: Callable[[], list[dict[str, object]]]
    waf_visibility: Callable[[str], dict[str, object]]
    price_class: str = "PriceClass_100"


class Cdn(pulumi.ComponentResource):
    """Web bucket + build upload, OAC, SPA-route function, us-east-1 certificate and WAF, distribution, DNS."""

    def __init__(self, name: str, args: CdnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Cdn", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.us_east_1 = aws.Provider(f"{name}-us-east-1", region=CLOUDFRONT_REGION, opts=child)
        global_opts = pulumi.ResourceOptions(parent=self, provider=self.us_east_1)

        # --- the private bucket and the build -----------------------------------------------------------
        self.bucket = aws.s3.Bucket(f"{name}-web", bucket_prefix=f"{args.name}-web-", opts=child)
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-web-ownership", bucket=self.bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-web-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        # SSE-S3: OAC reads SSE-KMS objects only with an extra key policy for CloudFront, for no gain on public
        # web assets (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-s3.html#oac-permission-to-access-aws-kms).
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-web-sse", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=child)
        files = web_files(args.dist_dir)
        uploaded = pulumi.ResourceOptions(parent=self, depends_on=[ownership, encryption])

        def upload(f: WebFile, resource_opts: pulumi.ResourceOptions) -> aws.s3.BucketObjectv2:
            return aws.s3.BucketObjectv2(
                f"{name}-file-{f.key}", bucket=self.bucket.id, key=f.key, source=pulumi.FileAsset(str(f.path)),
                content_type=f.content_type, cache_control=f.cache_control, opts=resource_opts)

        hashed = [upload(f, uploaded) for f in files if f.cache_control == IMMUTABLE]
        # index.html names the new hashed files: it changes only once they are all in the bucket.
        shell_opts = pulumi.ResourceOptions(parent=self, depends_on=[ownership, encryption, *hashed])
        self.objects = [*hashed, *(upload(f, shell_opts) for f in files if f.cache_control != IMMUTABLE)]

        self.oac = aws.cloudfront.OriginAccessControl(
            f"{name}-oac", name=f"{args.name}-web", description="CloudFront signs every request to the web bucket",
            origin_access_control_origin_type="s3", signing_behavior="always", signing_protocol="sigv4",
            opts=child)
        self.spa_routes = aws.cloudfront.Function(
            f"{name}-spa-routes", name=f"{args.name}-spa-routes", runtime="cloudfront-js-2.0", publish=True,
            comment="app routes (no file extension) load index.html", code=SPA_ROUTES_JS, opts=child)

        # --- certificate and WAF, both in us-east-1 ------------------------------------------------------
        cert = aws.acm.Certificate(f"{name}-cert", domain_name=args.domain_name, validation_method="DNS",
                                   opts=global_opts)
        option = cert.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-cert-validation", zone_id=args.zone_id, name=option.resource_record_name,
            type=option.resource_record_type, records=[option.resource_record_value], ttl=60, allow_overwrite=True,
            opts=child)
        self.certificate = aws.acm.CertificateValidation(
            f"{name}-cert-validated", certificate_arn=cert.arn, validation_record_fqdns=[record.fqdn],
            opts=global_opts)
        self.web_acl = aws.wafv2.WebAcl(
            f"{name}-waf", scope="CLOUDFRONT", default_action={"allow": {}}, rules=args.waf_rules(),
            visibility_config=args.waf_visibility(f"{args.name}-cdn-waf"), opts=global_opts)

        # --- the distribution ----------------------------------------------------------------------------
        api_behaviour = {
            "target_origin_id": API_ORIGIN, "viewer_protocol_policy": "https-only",
            "allowed_methods": ALL_METHODS, "cached_methods": ["GET", "HEAD"], "compress": False,
            "cache_policy_id": CACHING_DISABLED, "origin_request_policy_id": ALL_VIEWER_EXCEPT_HOST_HEADER,
        }
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-distribution", enabled=True, is_ipv6_enabled=True, http_version="http2and3",
            price_class=args.price_class, aliases=[args.domain_name], default_root_object="index.html",
            comment=f"{args.name}: web app (S3) and API (ALB)", web_acl_id=self.web_acl.arn,
            origins=[
                {"origin_id": WEB_ORIGIN, "domain_name": self.bucket.bucket_regional_domain_name,
                 "origin_access_control_id": self.oac.id},
                {"origin_id": API_ORIGIN, "domain_name": args.origin_domain_name,
                 "custom_origin_config": {"http_port": 80, "https_port": 443, "origin_protocol_policy": "https-only",
                                          "origin_ssl_protocols": ["TLSv1.2"], "origin_read_timeout": 60,
                                          "origin_keepalive_timeout": 60},
                 "custom_headers": [{"name": ORIGIN_HEADER, "value": args.origin_secret}]},
            ],
            default_cache_behavior={
                "target_origin_id": WEB_ORIGIN, "viewer_protocol_policy": "redirect-to-https",
                "allowed_methods": ["GET", "HEAD"], "cached_methods": ["GET", "HEAD"], "compress": True,
                "cache_policy_id": CACHING_OPTIMIZED,
                "function_associations": [{"event_type": "viewer-request", "function_arn": self.spa_routes.arn}],
            },
            ordered_cache_behaviors=[{"path_pattern": path, **api_behaviour} for path in API_PATHS],
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate={"acm_certificate_arn": self.certificate.certificate_arn,
                                "ssl_support_method": "sni-only", "minimum_protocol_version": "TLSv1.2_2021"},
            opts=child,
        )
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-web-policy", bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, self.distribution.arn).apply(lambda a: bucket_policy(*a)),
            # S3 refuses concurrent changes to one bucket's configuration; the public access block goes first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block, ownership]))
        for record_type in ("A", "AAAA"):
            aws.route53.Record(
                f"{name}-alias-{record_type.lower()}", zone_id=args.zone_id, name=args.domain_name,
                type=record_type,
                aliases=[{"name": self.distribution.domain_name, "zone_id": self.distribution.hosted_zone_id,
                          "evaluate_target_health": False}],  # CloudFront alias targets cannot be health-checked
                opts=child)
        self.register_outputs({"distributionId": self.distribution.id,
                               "distributionDomainName": self.distribution.domain_name,
                               "webBucket": self.bucket.bucket})
