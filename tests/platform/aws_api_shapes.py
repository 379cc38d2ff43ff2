"""The create call each resource becomes, validated against botocore's model of that AWS API call.

A resource's serialized Pulumi inputs (camelCase wire names, container definitions as JSON) are turned
into the request the provider sends (the structure differs: ``networkConfiguration`` becomes
``awsvpcConfiguration``, ``certificateArn`` becomes ``Certificates``, a table's ``hashKey`` becomes
``KeySchema``...). Keys are matched to the model's member names case-insensitively; a key that matches no
member and is not a known provider-only input is an error, so a new input must be classified here.

botocore's ParamValidator checks types, required members and minimums; it does not check maximums,
enums or patterns, which the services do, so :func:`strict_errors` walks the same shapes for those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator
from pulumi_harness import Recorded, Run

_COMMON_PROVIDER_ONLY = {"region", "tagsAll", "namePrefix"}


@cache
def operation(service: str, name: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(name)


def _member(shape: StructureShape, key: str) -> str | None:
    lowered = key.lower()
    return next((m for m in shape.members if m.lower() == lowered), None)


def to_shape(value: Any, shape: Shape, path: str, errors: list[str]) -> Any:
    """Pulumi wire value -> botocore parameter value for ``shape`` (names matched case-insensitively)."""
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return value  # the validator reports the type error
        out = {}
        for key, item in value.items():
            if item is None:
                continue
            member = _member(shape, key)
            if member is None:
                errors.append(f"{path}.{key}: no such member in {shape.name} (members: {', '.join(shape.members)})")
                continue
            out[member] = to_shape(item, shape.members[member], f"{path}.{member}", errors)
        return out
    if isinstance(shape, ListShape):
        member = shape.member
        if isinstance(value, dict) and isinstance(member, StructureShape) and {
                m.lower() for m in member.members} >= {"key", "value"}:  # Pulumi tag map -> [{Key, Value}]
            value = [{"key": k, "value": v} for k, v in value.items()]
        if not isinstance(value, list):
            return value
        return [to_shape(v, member, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return value
        return {k: to_shape(v, shape.value, f"{path}.{k}", errors) for k, v in value.items()}
    if shape.type_name in {"integer", "long"} and isinstance(value, float) and value.is_integer():
        return int(value)  # the Pulumi wire format carries every number as a float
    return value


def strict_errors(value: Any, shape: Shape, path: str) -> list[str]:
    """Maximum lengths/values, enums and patterns of the model, which ParamValidator leaves to the service."""
    errors = []
    meta = shape.metadata
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                errors += strict_errors(item, shape.members[key], f"{path}.{key}")
        return errors
    if isinstance(shape, ListShape) and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items, at most {meta['max']}")
        for i, item in enumerate(value):
            errors += strict_errors(item, shape.member, f"{path}[{i}]")
        return errors
    if isinstance(shape, MapShape) and isinstance(value, dict):
        for key, item in value.items():
            errors += strict_errors(item, shape.value, f"{path}.{key}")
        return errors
    if shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} characters, at most {meta['max']}")
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.enum}")
        pattern = meta.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:  # a Java-only construct (\p{...}); the service checks it, we cannot
                compiled = None
            if compiled is not None and not compiled.fullmatch(value) and not compiled.search(value):
                errors.append(f"{path}: {value!r} does not match {pattern}")
    if shape.type_name in {"integer", "long", "float", "double"} and isinstance(value, int | float) and \
            not isinstance(value, bool) and "max" in meta and value > meta["max"]:
        errors.append(f"{path}: {value} is above the maximum {meta['max']}")
    return errors


def validate_call(service: str, op: str, params: dict[str, Any], label: str) -> list[str]:
    """Errors AWS would answer ``op`` with for ``params`` (Pulumi-cased or API-cased keys)."""
    model = operation(service, op)
    errors: list[str] = []
    converted = to_shape(params, model.input_shape, op, errors)
    report = ParamValidator().validate(converted, model.input_shape)
    if report.has_errors():
        errors.append(report.generate_report())
    errors += strict_errors(converted, model.input_shape, op)
    return [f"{label}: {service}:{op}: {e}" for e in errors]


# --- Pulumi inputs -> request ------------------------------------------------------------------

def _without(inputs: dict[str, Any], *keys: str) -> dict[str, Any]:
    drop = {*keys, *_COMMON_PROVIDER_ONLY}
    return {k: v for k, v in inputs.items() if k not in drop and v is not None}


def _renamed(d: dict[str, Any], **names: str) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in d.items()}


def _task_definition(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs, "skipDestroy", "trackLatest")
    d["containerDefinitions"] = json.loads(d["containerDefinitions"])
    return d


def _service(r: Recorded) -> dict[str, Any]:
    d = _renamed(_without(r.inputs, "waitForSteadyState", "forceNewDeployment", "triggers", "forceDelete"),
                 name="serviceName", enableEcsManagedTags="enableECSManagedTags", iamRole="role",
                 capacityProviderStrategies="capacityProviderStrategy",
                 orderedPlacementStrategies="placementStrategy")
    if "networkConfiguration" in d:
        net = dict(d["networkConfiguration"])
        if isinstance(net.get("assignPublicIp"), bool):
            net["assignPublicIp"] = "ENABLED" if net["assignPublicIp"] else "DISABLED"
        d["networkConfiguration"] = {"awsvpcConfiguration": net}
    deployment = {}
    for key, api in (("deploymentCircuitBreaker", "deploymentCircuitBreaker"), ("deploymentAlarms", "alarms"),
                     ("deploymentMaximumPercent", "maximumPercent"),
                     ("deploymentMinimumHealthyPercent", "minimumHealthyPercent")):
        if key in d:
            deployment[api] = d.pop(key)
    if deployment:
        d["deploymentConfiguration"] = deployment
    return d


LB_ATTRIBUTES = {  # inputs the provider sends with ModifyLoadBalancerAttributes, not CreateLoadBalancer
    "idleTimeout", "dropInvalidHeaderFields", "enableHttp2", "enableCrossZoneLoadBalancing",
    "enableDeletionProtection", "accessLogs", "connectionLogs", "healthCheckLogs", "enableWafFailOpen",
    "desyncMitigationMode", "preserveHostHeader", "xffHeaderProcessingMode", "enableTlsVersionAndCipherSuiteHeaders",
    "enableXffClientPort", "clientKeepAlive", "enableZonalShift", "dnsRecordClientRoutingPolicy",
    "enforceSecurityGroupInboundRulesOnPrivateLinkTraffic", "secondaryIpsAutoAssignedPerSubnet",
    "minimumLoadBalancerCapacity",
}


def _load_balancer(r: Recorded) -> dict[str, Any]:
    d = _renamed(_without(r.inputs, *LB_ATTRIBUTES), loadBalancerType="type")
    if "internal" in d:
        d["scheme"] = "internal" if d.pop("internal") else "internet-facing"
    return d


TG_ATTRIBUTES = {
    "deregistrationDelay", "stickiness", "connectionTermination", "preserveClientIp", "proxyProtocolV2",
    "slowStart", "lambdaMultiValueHeadersEnabled", "loadBalancingAlgorithmType", "loadBalancingAnomalyMitigation",
    "loadBalancingCrossZoneEnabled", "targetHealthStates", "targetFailovers", "targetGroupHealth",
}
_HEALTH_CHECK = {"enabled": "HealthCheckEnabled", "path": "HealthCheckPath", "port": "HealthCheckPort",
                 "protocol": "HealthCheckProtocol", "interval": "HealthCheckIntervalSeconds",
                 "timeout": "HealthCheckTimeoutSeconds", "healthyThreshold": "HealthyThresholdCount",
                 "unhealthyThreshold": "UnhealthyThresholdCount"}


def _target_group(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs, *TG_ATTRIBUTES)
    health = dict(d.pop("healthCheck", None) or {})
    if "matcher" in health:
        key = "GrpcCode" if d.get("protocolVersion") == "GRPC" else "HttpCode"
        d["Matcher"] = {key: health.pop("matcher")}
    for key, value in health.items():
        d[_HEALTH_CHECK.get(key, key)] = value
    return d


def _action(action: dict[str, Any]) -> dict[str, Any]:
    a = _renamed(dict(action), redirect="RedirectConfig", forward="ForwardConfig",
                 fixedResponse="FixedResponseConfig", authenticateCognito="AuthenticateCognitoConfig",
                 authenticateOidc="AuthenticateOidcConfig")
    if "ForwardConfig" in a:
        fwd = dict(a["ForwardConfig"])
        fwd["targetGroups"] = [_renamed(tg, arn="TargetGroupArn") for tg in fwd.get("targetGroups", [])]
        if "stickiness" in fwd:
            fwd["TargetGroupStickinessConfig"] = _renamed(fwd.pop("stickiness"), duration="DurationSeconds")
        a["ForwardConfig"] = fwd
    return a


def _listener(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs, "tcpIdleTimeoutSeconds")
    d = {k: v for k, v in d.items() if not k.startswith("routingHttp")}  # listener attributes
    if "certificateArn" in d:
        d["Certificates"] = [{"CertificateArn": d.pop("certificateArn")}]
    if "alpnPolicy" in d:
        d["AlpnPolicy"] = [d.pop("alpnPolicy")]
    if "defaultActions" in d:
        d["defaultActions"] = [_action(a) for a in d["defaultActions"]]
    return d


def _web_acl(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs, "lockToken")
    if "ruleJson" in d:
        d["rules"] = json.loads(d.pop("ruleJson"))
    if "customResponseBodies" in d:
        d["customResponseBodies"] = {b["key"]: {"Content": b["content"], "ContentType": b["contentType"]}
                                     for b in d["customResponseBodies"]}
    return d


def _table(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs, "ttl", "pointInTimeRecovery", "restoreDateTime", "restoreSourceName",
                 "restoreSourceTableArn", "restoreToLatestTime", "replicas", "importTable")

    def keys(source: dict[str, Any]) -> list[dict[str, str]]:
        schema = [{"AttributeName": source.pop("hashKey"), "KeyType": "HASH"}] if source.get("hashKey") else []
        if source.get("rangeKey"):
            schema.append({"AttributeName": source.pop("rangeKey"), "KeyType": "RANGE"})
        source.pop("rangeKey", None)
        return schema

    def throughput(source: dict[str, Any]) -> None:
        if "readCapacity" in source or "writeCapacity" in source:
            source["ProvisionedThroughput"] = {"ReadCapacityUnits": source.pop("readCapacity", None),
                                               "WriteCapacityUnits": source.pop("writeCapacity", None)}

    def index(g: dict[str, Any]) -> dict[str, Any]:
        g = {k: v for k, v in g.items() if v is not None}
        out: dict[str, Any] = {"IndexName": g.pop("name"), "KeySchema": keys(g)}
        projection: dict[str, Any] = {"ProjectionType": g.pop("projectionType")}
        if g.get("nonKeyAttributes"):
            projection["NonKeyAttributes"] = g.pop("nonKeyAttributes")
        g.pop("nonKeyAttributes", None)
        out["Projection"] = projection
        throughput(g)
        return {**out, **g}

    out: dict[str, Any] = {"TableName": d.pop("name"), "KeySchema": keys(d),
                           "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]}
                                                    for a in d.pop("attributes", [])]}
    if d.get("globalSecondaryIndexes"):
        out["GlobalSecondaryIndexes"] = [index(dict(g)) for g in d.pop("globalSecondaryIndexes")]
    d.pop("globalSecondaryIndexes", None)
    if d.get("localSecondaryIndexes"):
        out["LocalSecondaryIndexes"] = [index(dict(g)) for g in d.pop("localSecondaryIndexes")]
    d.pop("localSecondaryIndexes", None)
    if "streamEnabled" in d:
        stream: dict[str, Any] = {"StreamEnabled": d.pop("streamEnabled")}
        if d.get("streamViewType"):
            stream["StreamViewType"] = d.pop("streamViewType")
        out["StreamSpecification"] = stream
    d.pop("streamViewType", None)
    if "serverSideEncryption" in d:
        sse = d.pop("serverSideEncryption")
        spec: dict[str, Any] = {"Enabled": sse.get("enabled", False)}
        if sse.get("enabled"):
            spec["SSEType"] = "KMS"
        if sse.get("kmsKeyArn"):
            spec["KMSMasterKeyId"] = sse["kmsKeyArn"]
        out["SSESpecification"] = spec
    throughput(d)
    return {**out, **d}


def _event_source_mapping(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs)
    if "destinationConfig" in d:
        on_failure = (d["destinationConfig"].get("onFailure") or {})
        d["destinationConfig"] = {"OnFailure": {"Destination": on_failure.get("destinationArn")}}
    return d


ASG_PROVIDER_ONLY = {"instanceRefresh", "enabledMetrics", "metricsGranularity", "waitForCapacityTimeout",
                     "waitForElbCapacity", "minElbCapacity", "forceDelete", "forceDeleteWarmPool",
                     "ignoreFailedScalingActivities", "suspendedProcesses", "warmPool", "launchConfiguration"}


def _autoscaling_group(r: Recorded) -> dict[str, Any]:
    d = _renamed(_without(r.inputs, *ASG_PROVIDER_ONLY), name="AutoScalingGroupName",
                 targetGroupArns="TargetGroupARNs", protectFromScaleIn="NewInstancesProtectedFromScaleIn",
                 serviceLinkedRoleArn="ServiceLinkedRoleARN", loadBalancers="LoadBalancerNames",
                 initialLifecycleHooks="LifecycleHookSpecificationList")
    if "vpcZoneIdentifiers" in d:
        d["VPCZoneIdentifier"] = ",".join(d.pop("vpcZoneIdentifiers"))
    if "launchTemplate" in d:
        d["launchTemplate"] = _renamed(d["launchTemplate"], id="LaunchTemplateId", name="LaunchTemplateName")
    if "LifecycleHookSpecificationList" in d:
        d["LifecycleHookSpecificationList"] = [
            _renamed(h, name="LifecycleHookName", notificationTargetArn="NotificationTargetARN", roleArn="RoleARN")
            for h in d["LifecycleHookSpecificationList"]]
    return d


def _instance_refresh(r: Recorded) -> dict[str, Any] | None:
    refresh = r.inputs.get("instanceRefresh")
    if not refresh:
        return None
    return {"AutoScalingGroupName": r.physical_name, "Strategy": refresh.get("strategy"),
            **({"Preferences": refresh["preferences"]} if refresh.get("preferences") else {})}


def _lifecycle_hook(r: Recorded) -> dict[str, Any]:
    return _renamed(_without(r.inputs), name="LifecycleHookName", autoscalingGroupName="AutoScalingGroupName",
                    notificationTargetArn="NotificationTargetARN", roleArn="RoleARN")


def _listener_rule(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs)
    condition_configs = {"hostHeader": "HostHeaderConfig", "httpHeader": "HttpHeaderConfig",
                         "httpRequestMethod": "HttpRequestMethodConfig", "pathPattern": "PathPatternConfig",
                         "queryStrings": "QueryStringConfig", "sourceIp": "SourceIpConfig"}
    fields = {"hostHeader": "host-header", "httpHeader": "http-header", "httpRequestMethod": "http-request-method",
              "pathPattern": "path-pattern", "queryStrings": "query-string", "sourceIp": "source-ip"}
    conditions = []
    for cond in d.pop("conditions", []):
        (key, value), = cond.items()
        if key == "queryStrings":
            value = {"Values": value}
        conditions.append({"Field": fields[key], condition_configs[key]: value})
    d["Conditions"] = conditions
    d["Actions"] = [_action(a) for a in d.pop("actions", [])]
    return d


def _items(values: list[Any]) -> dict[str, Any]:
    """CloudFront's list wrapper: {Quantity, Items}."""
    return {"Quantity": len(values), "Items": values} if values else {"Quantity": 0}


def _cache_behavior(b: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in b.items() if v is not None}
    allowed = d.pop("allowedMethods", [])
    cached = d.pop("cachedMethods", [])
    d["AllowedMethods"] = {**_items(allowed), "CachedMethods": _items(cached)}
    if "functionAssociations" in d:
        d["FunctionAssociations"] = _items([_renamed(f, functionArn="FunctionARN")
                                            for f in d.pop("functionAssociations")])
    if "lambdaFunctionAssociations" in d:
        d["LambdaFunctionAssociations"] = _items([_renamed(f, lambdaArn="LambdaFunctionARN")
                                                  for f in d.pop("lambdaFunctionAssociations")])
    return d


def _distribution(r: Recorded) -> dict[str, Any]:
    """DistributionConfig as the provider builds it (terraform-provider-aws
    internal/service/cloudfront/distribution_configuration_structure.go): lists wrapped in {Quantity, Items}."""
    d = _without(r.inputs, "waitForDeployment", "retainOnDelete", "tags", "continuousDeploymentPolicyId", "staging")
    config: dict[str, Any] = {"CallerReference": "pulumi-" + r.name}
    config["Aliases"] = _items(d.pop("aliases", []))
    origins = []
    for o in d.pop("origins", []):
        origin = _renamed({k: v for k, v in o.items() if v is not None}, originId="Id")
        if "customHeaders" in origin:
            origin["CustomHeaders"] = _items([_renamed(h, name="HeaderName", value="HeaderValue")
                                              for h in origin.pop("customHeaders")])
        if "customOriginConfig" in origin:
            c = _renamed(origin.pop("customOriginConfig"), httpPort="HTTPPort", httpsPort="HTTPSPort")
            c["OriginSslProtocols"] = _items(c.pop("originSslProtocols", []))
            origin["CustomOriginConfig"] = c
        else:  # the provider sends an S3 origin an empty OAI when it uses an origin access control
            origin["S3OriginConfig"] = {"OriginAccessIdentity": (origin.pop("s3OriginConfig", None) or {}).get(
                "originAccessIdentity", "")}
        origins.append(origin)
    config["Origins"] = _items(origins)
    config["DefaultCacheBehavior"] = _cache_behavior(d.pop("defaultCacheBehavior"))
    config["CacheBehaviors"] = _items([_cache_behavior(b) for b in d.pop("orderedCacheBehaviors", [])])
    if "customErrorResponses" in d:
        config["CustomErrorResponses"] = _items(d.pop("customErrorResponses"))
    geo = (d.pop("restrictions", {}) or {}).get("geoRestriction", {})
    config["Restrictions"] = {"GeoRestriction": {"RestrictionType": geo.get("restrictionType"),
                                                 **_items(geo.get("locations", []))}}
    config["ViewerCertificate"] = _renamed(d.pop("viewerCertificate"), acmCertificateArn="ACMCertificateArn",
                                           sslSupportMethod="SSLSupportMethod")
    config.update(_renamed(d, webAclId="WebACLId", isIpv6Enabled="IsIPV6Enabled"))
    config.setdefault("Comment", "")
    return {"DistributionConfig": config}


def _user_pool(r: Recorded) -> dict[str, Any]:
    d = _renamed(_without(r.inputs, "softwareTokenMfaConfiguration"), name="PoolName")
    if "passwordPolicy" in d:
        d["Policies"] = {"PasswordPolicy": d.pop("passwordPolicy")}
    return d


def _user_pool_mfa(r: Recorded) -> dict[str, Any] | None:
    token = r.inputs.get("softwareTokenMfaConfiguration")
    if token is None:
        return None
    return {"UserPoolId": r.id, "MfaConfiguration": r.inputs.get("mfaConfiguration"),
            "SoftwareTokenMfaConfiguration": token}


def _public_access_block(r: Recorded) -> dict[str, Any]:
    d = _without(r.inputs, "skipDestroy")
    bucket = d.pop("bucket")
    return {"Bucket": bucket, "PublicAccessBlockConfiguration": d}


# type -> (service, operation, request builder); the builder may return None (no such call for this resource)
CALLS: dict[str, list[tuple[str, str, Callable[[Recorded], dict[str, Any] | None]]]] = {
    "aws:ecs/taskDefinition:TaskDefinition": [("ecs", "RegisterTaskDefinition", _task_definition)],
    "aws:ecs/service:Service": [("ecs", "CreateService", _service)],
    "aws:lb/loadBalancer:LoadBalancer": [("elbv2", "CreateLoadBalancer", _load_balancer)],
    "aws:lb/targetGroup:TargetGroup": [("elbv2", "CreateTargetGroup", _target_group)],
    "aws:lb/listener:Listener": [("elbv2", "CreateListener", _listener)],
    "aws:wafv2/webAcl:WebAcl": [("wafv2", "CreateWebACL", _web_acl)],
    "aws:appsync/api:Api": [("appsync", "CreateApi", lambda r: _without(r.inputs))],
    "aws:appsync/channelNamespace:ChannelNamespace": [
        ("appsync", "CreateChannelNamespace", lambda r: _without(r.inputs))],
    "aws:dynamodb/table:Table": [("dynamodb", "CreateTable", _table)],
    "aws:lambda/eventSourceMapping:EventSourceMapping": [
        ("lambda", "CreateEventSourceMapping", _event_source_mapping)],
    "aws:autoscaling/group:Group": [("autoscaling", "CreateAutoScalingGroup", _autoscaling_group),
                                    ("autoscaling", "StartInstanceRefresh", _instance_refresh)],
    "aws:autoscaling/lifecycleHook:LifecycleHook": [("autoscaling", "PutLifecycleHook", _lifecycle_hook)],
    "aws:lb/listenerRule:ListenerRule": [("elbv2", "CreateRule", _listener_rule)],
    "aws:cloudfront/distribution:Distribution": [("cloudfront", "CreateDistribution", _distribution)],
    "aws:cloudfront/originAccessControl:OriginAccessControl": [
        ("cloudfront", "CreateOriginAccessControl", lambda r: {"OriginAccessControlConfig": _without(r.inputs)})],
    "aws:cloudfront/function:Function": [("cloudfront", "CreateFunction", lambda r: {
        "Name": r.physical_name, "FunctionCode": r.inputs["code"].encode(),
        "FunctionConfig": {"Comment": r.inputs.get("comment", ""), "Runtime": r.inputs["runtime"]}})],
    "aws:cognito/userPool:UserPool": [("cognito-idp", "CreateUserPool", _user_pool),
                                      ("cognito-idp", "SetUserPoolMfaConfig", _user_pool_mfa)],
    "aws:cognito/userPoolClient:UserPoolClient": [("cognito-idp", "CreateUserPoolClient", lambda r: _renamed(
        _without(r.inputs), name="ClientName"))],
    "aws:cognito/userGroup:UserGroup": [("cognito-idp", "CreateGroup", lambda r: _renamed(
        _without(r.inputs), name="GroupName"))],
    "aws:s3/bucketPolicy:BucketPolicy": [("s3", "PutBucketPolicy", lambda r: _without(r.inputs))],
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": [
        ("s3", "PutPublicAccessBlock", _public_access_block)],
}


# The request member that carries the physical name (filled with the auto-name when the program gave none).
NAME_MEMBER: dict[tuple[str, str], str] = {
    ("ecs", "CreateService"): "serviceName", ("elbv2", "CreateLoadBalancer"): "Name",
    ("elbv2", "CreateTargetGroup"): "Name", ("wafv2", "CreateWebACL"): "Name", ("appsync", "CreateApi"): "name",
    ("appsync", "CreateChannelNamespace"): "name", ("dynamodb", "CreateTable"): "TableName",
    ("autoscaling", "CreateAutoScalingGroup"): "AutoScalingGroupName",
    ("autoscaling", "PutLifecycleHook"): "LifecycleHookName",
    ("cognito-idp", "CreateUserPool"): "PoolName", ("cognito-idp", "CreateUserPoolClient"): "ClientName",
    ("cognito-idp", "CreateGroup"): "GroupName",
}


def request_for(r: Recorded, service: str, op: str) -> dict[str, Any] | None:
    for svc, name, build in CALLS[r.typ]:
        if (svc, name) == (service, op):
            request = build(r)
            name_key = NAME_MEMBER.get((service, op))
            if request is not None and name_key and r.physical_name is not None:
                # the harness's auto-name stands in for the provider's, as the provider would send it
                request.setdefault(name_key, r.physical_name)
            return request
    raise KeyError(f"{r.typ} has no {service}:{op}")


def api_shapes(run: Run) -> list[str]:
    """Every create call of the stack, validated against its botocore model."""
    bad = []
    for r in run.resources:
        for service, op, _ in CALLS.get(r.typ, []):
            request = request_for(r, service, op)
            if request is not None:
                bad += validate_call(service, op, request, r.name)
    return bad


def documented_rules(run: Run) -> list[str]:
    """Rules the API references state in prose, beyond the model."""
    bad = []
    for lb in run.of_type("aws:lb/loadBalancer:LoadBalancer"):
        idle = lb.inputs.get("idleTimeout")
        if idle is not None and not 1 <= idle <= 4000:
            # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html
            bad.append(f"{lb.name}: idle timeout {idle} outside 1..4000 s")
    for t in run.of_type("aws:dynamodb/table:Table"):
        request = _table(t)
        keyed = {k["AttributeName"] for k in request["KeySchema"]}
        for index in [*request.get("GlobalSecondaryIndexes", []), *request.get("LocalSecondaryIndexes", [])]:
            keyed |= {k["AttributeName"] for k in index["KeySchema"]}
        defined = {a["AttributeName"] for a in request["AttributeDefinitions"]}
        # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html (AttributeDefinitions)
        if defined != keyed:
            bad.append(f"{t.name}: attribute definitions {sorted(defined)} must be exactly the key attributes "
                       f"{sorted(keyed)}")
    for esm in run.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
        if ":dynamodb:" in str(esm.inputs.get("eventSourceArn")) and not esm.inputs.get("startingPosition"):
            # https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html (StartingPosition)
            bad.append(f"{esm.name}: a DynamoDB stream mapping needs startingPosition")
    return bad


# CloudFront limits the API model does not carry (quotas page and the DistributionConfig reference):
# https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cloudfront-limits.html
CLOUDFRONT_MAX_BEHAVIORS = 25
CLOUDFRONT_MAX_ORIGIN_READ_TIMEOUT = 60  # without a quota increase
CLOUDFRONT_MAX_KEEPALIVE = 60  # without a quota increase
# Headers CloudFront refuses as origin custom headers:
# https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/add-origin-custom-headers.html
CLOUDFRONT_FORBIDDEN_CUSTOM_HEADERS = {
    "cache-control", "connection", "content-length", "cookie", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "max-forwards", "pragma", "proxy-authorization",
    "proxy-connection", "range", "request-range", "te", "trailer", "transfer-encoding", "upgrade", "via",
    "x-real-ip", "x-forwarded-proto", "x-forwarded-for"}
ALB_HEADER_VALUE_MAX = 128  # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/rule-condition-types.html


def cloudfront_documented_rules(run: Run) -> list[str]:
    bad = []
    for dist in run.of_type("aws:cloudfront/distribution:Distribution"):
        behaviours = dist.inputs.get("orderedCacheBehaviors", [])
        if len(behaviours) > CLOUDFRONT_MAX_BEHAVIORS:
            bad.append(f"{dist.name}: {len(behaviours)} cache behaviours, quota {CLOUDFRONT_MAX_BEHAVIORS}")
        origin_ids = {o["originId"] for o in dist.inputs.get("origins", [])}
        for b in [dist.inputs.get("defaultCacheBehavior", {}), *behaviours]:
            if b.get("targetOriginId") not in origin_ids:
                bad.append(f"{dist.name}: behaviour {b.get('pathPattern', 'default')} targets unknown origin "
                           f"{b.get('targetOriginId')}")
            if not set(b.get("cachedMethods", [])) <= set(b.get("allowedMethods", [])):
                bad.append(f"{dist.name}: cached methods of {b.get('pathPattern', 'default')} are not all allowed")
            if b.get("cachePolicyId") and any(k in b for k in ("forwardedValues", "minTtl", "defaultTtl", "maxTtl")):
                bad.append(f"{dist.name}: a cache policy excludes forwarded_values/TTLs on one behaviour")
        for o in dist.inputs.get("origins", []):
            custom = o.get("customOriginConfig")
            if custom is not None and o.get("originAccessControlId"):
                bad.append(f"{dist.name}: origin {o['originId']}: an S3 origin access control on a custom origin")
            if custom is not None:
                if custom.get("originReadTimeout", 30) > CLOUDFRONT_MAX_ORIGIN_READ_TIMEOUT:
                    bad.append(f"{dist.name}: origin read timeout above {CLOUDFRONT_MAX_ORIGIN_READ_TIMEOUT} s")
                if custom.get("originKeepaliveTimeout", 5) > CLOUDFRONT_MAX_KEEPALIVE:
                    bad.append(f"{dist.name}: origin keep-alive above {CLOUDFRONT_MAX_KEEPALIVE} s")
            for header in o.get("customHeaders", []):
                if header["name"].lower() in CLOUDFRONT_FORBIDDEN_CUSTOM_HEADERS or \
                        header["name"].lower().startswith(("x-amz-", "x-edge-")):
                    bad.append(f"{dist.name}: CloudFront refuses custom origin header {header['name']}")
        viewer = dist.inputs.get("viewerCertificate", {})
        if viewer.get("acmCertificateArn") and viewer.get("sslSupportMethod") not in ("sni-only", "vip", "static-ip"):
            bad.append(f"{dist.name}: an ACM viewer certificate needs sslSupportMethod")
        acl = dist.inputs.get("webAclId")
        if acl is not None and not str(acl).startswith("arn:aws:wafv2:"):
            bad.append(f"{dist.name}: web_acl_id {acl} must be the WAFv2 web ACL's ARN (an id names WAF Classic)")
    for rule in run.of_type("aws:lb/listenerRule:ListenerRule"):
        for cond in rule.inputs.get("conditions", []):
            for value in (cond.get("httpHeader") or {}).get("values", []):
                if len(value) > ALB_HEADER_VALUE_MAX or any(c in value for c in "*?"):
                    bad.append(f"{rule.name}: header value of {len(value)} characters or with a wildcard")
    return bad


ALL = {"api_shapes": api_shapes, "documented_rules": documented_rules,
       "cloudfront_documented_rules": cloudfront_documented_rules}
