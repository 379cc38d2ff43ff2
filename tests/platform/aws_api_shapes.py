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
}


# The request member that carries the physical name (filled with the auto-name when the program gave none).
NAME_MEMBER: dict[tuple[str, str], str] = {
    ("ecs", "CreateService"): "serviceName", ("elbv2", "CreateLoadBalancer"): "Name",
    ("elbv2", "CreateTargetGroup"): "Name", ("wafv2", "CreateWebACL"): "Name", ("appsync", "CreateApi"): "name",
    ("appsync", "CreateChannelNamespace"): "name", ("dynamodb", "CreateTable"): "TableName",
    ("autoscaling", "CreateAutoScalingGroup"): "AutoScalingGroupName",
    ("autoscaling", "PutLifecycleHook"): "LifecycleHookName",
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


ALL = {"api_shapes": api_shapes, "documented_rules": documented_rules}
