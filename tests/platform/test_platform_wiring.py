"""How the pieces connect: listeners -> target groups -> service or ASG, WAF -> ALB, streams -> publisher,
AppSync auth, certificates -> DNS validation, and the runtime's environment."""

from __future__ import annotations

import base64
import json

import platform_invariants as invariants
from pulumi_harness import HOSTED_ZONE_ID, Recorded, Run, cdn_on, cognito_on

LISTENER = "aws:lb/listener:Listener"
TG = "aws:lb/targetGroup:TargetGroup"


def _forward_target(listener: Recorded) -> str:
    (action,) = listener.inputs["defaultActions"]
    assert action["type"] == "forward"
    return action["targetGroupArn"]


def test_alb_listeners(layout: Run) -> None:
    alb = layout.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb")
    assert alb.inputs["loadBalancerType"] == "application"
    assert alb.inputs["idleTimeout"] >= 3600
    https = layout.one(LISTENER, "edge-https")
    assert https.inputs["loadBalancerArn"] == alb.arn
    if cdn_on(layout):  # CloudFront's origin: HTTPS only, forwarding only through the origin-header rule
        assert [lst.name for lst in layout.of_type(LISTENER) if lst.inputs["loadBalancerArn"] == alb.arn] == [
            "edge-https"]
        (rule,) = layout.of_type("aws:lb/listenerRule:ListenerRule")
        api_tg = layout.by_arn(rule.inputs["actions"][0]["targetGroupArn"])
    else:
        http = layout.one(LISTENER, "edge-http")
        assert http.inputs["loadBalancerArn"] == alb.arn
        assert http.inputs["defaultActions"] == [{"type": "redirect", "redirect": {
            "port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}}]
        api_tg = layout.by_arn(_forward_target(https))
    assert api_tg.name == "edge-api-tg"
    assert api_tg.inputs["port"] == 8000
    assert api_tg.inputs["healthCheck"]["path"] == "/readyz"
    expected_type = "ip" if layout.config["nova-concierge:compute"] == "ecs" else "instance"
    assert {t.inputs["targetType"] for t in layout.of_type(TG)} == {expected_type}


def test_https_uses_the_dns_validated_certificate(layout: Run) -> None:
    https = layout.one(LISTENER, "edge-https")
    validation = layout.one("aws:acm/certificateValidation:CertificateValidation", "edge-api-validated")
    cert = layout.by_arn(validation.inputs["certificateArn"])
    assert https.inputs["certificateArn"] == validation.state["certificateArn"] == cert.arn
    domain = layout.config["nova-concierge:domainName"]
    # Behind CloudFront the ALB has its own name; the site's certificate is CloudFront's (us-east-1).
    assert cert.inputs == {"domainName": f"origin.{domain}" if cdn_on(layout) else domain,
                           "validationMethod": "DNS"}
    record = layout.one("aws:route53/record:Record", "edge-api-validation")
    option = cert.state["domainValidationOptions"][0]
    assert record.inputs["name"] == option["resourceRecordName"]
    assert record.inputs["records"] == [option["resourceRecordValue"]]
    assert record.inputs["zoneId"] == HOSTED_ZONE_ID
    assert validation.inputs["validationRecordFqdns"] == [record.state["fqdn"]]


def test_nlb_carries_turn(deployed: Run) -> None:
    nlb = deployed.one("aws:lb/loadBalancer:LoadBalancer", "edge-nlb")
    listeners = {(lst.inputs["protocol"], lst.inputs["port"]): deployed.by_arn(_forward_target(lst))
                 for lst in deployed.of_type(LISTENER) if lst.inputs["loadBalancerArn"] == nlb.arn}
    # One protocol per port: UDP 3478, TCP 3479, and TLS 443 terminated here onto TCP 3479.
    assert {k: (t.inputs["protocol"], t.inputs["port"]) for k, t in listeners.items()} == {
        ("UDP", 3478): ("UDP", 3478), ("TCP", 3479): ("TCP", 3479), ("TLS", 443): ("TCP", 3479)}
    turn_validation = deployed.one("aws:acm/certificateValidation:CertificateValidation", "edge-turn-validated")
    assert deployed.one(LISTENER, "edge-turns").inputs["certificateArn"] == turn_validation.state["certificateArn"]


def test_dns_aliases(layout: Run) -> None:
    domain = layout.config["nova-concierge:domainName"]
    alb_name = f"origin.{domain}" if cdn_on(layout) else domain
    for key, lb, fqdn in (("api", "edge-alb", alb_name), ("turn", "edge-nlb", f"turn.{domain}")):
        record = layout.one("aws:route53/record:Record", f"edge-{key}-alias")
        target = layout.one("aws:lb/loadBalancer:LoadBalancer", lb)
        assert record.inputs["name"] == fqdn
        assert record.inputs["type"] == "A"
        assert record.inputs["aliases"][0]["name"] == target.state["dnsName"]


def test_target_groups_feed_the_backend(deployed: Run) -> None:
    by_name = {t.name: t.arn for t in deployed.of_type(TG)}
    if deployed.config["nova-concierge:compute"] == "ecs":
        runtime = deployed.one("aws:ecs/service:Service", "ecs-runtime")
        turn = deployed.one("aws:ecs/service:Service", "ecs-turn")
        assert runtime.inputs["loadBalancers"] == [
            {"targetGroupArn": by_name["edge-api-tg"], "containerName": "runtime", "containerPort": 8000}]
        assert sorted(lb["targetGroupArn"] for lb in turn.inputs["loadBalancers"]) == sorted(
            [by_name["edge-turn-tg"], by_name["edge-turns-tg"]])
        assert {lb["containerPort"] for lb in turn.inputs["loadBalancers"]} == {3478, 3479}
        for svc in (runtime, turn):
            assert svc.inputs["networkConfiguration"]["assignPublicIp"] is False
            subnets = {deployed.by_id(s).name for s in svc.inputs["networkConfiguration"]["subnets"]}
            assert subnets == {"net-private-0", "net-private-1"}
    else:
        group = deployed.one("aws:autoscaling/group:Group")
        assert sorted(group.inputs["targetGroupArns"]) == sorted(by_name.values())
        assert {deployed.by_id(s).name for s in group.inputs["vpcZoneIdentifiers"]} == {
            "net-private-0", "net-private-1"}


def test_cpu_target_tracking(deployed: Run) -> None:
    target = float(deployed.config["nova-concierge:cpuTargetPercent"])
    if deployed.config["nova-concierge:compute"] == "ecs":
        policy = deployed.one("aws:appautoscaling/policy:Policy")
        cfg = policy.inputs["targetTrackingScalingPolicyConfiguration"]
        metric = "ECSServiceAverageCPUUtilization"
        assert deployed.one("aws:appautoscaling/target:Target").inputs["resourceId"] == \
            f"service/concierge-{deployed.stack}/concierge-{deployed.stack}-runtime"
    else:
        policy = deployed.one("aws:autoscaling/policy:Policy")
        cfg = policy.inputs["targetTrackingConfiguration"]
        metric = "ASGAverageCPUUtilization"
    assert policy.inputs["policyType"] == "TargetTrackingScaling"
    assert cfg["targetValue"] == target
    assert cfg["predefinedMetricSpecification"]["predefinedMetricType"] == metric


def test_instance_refresh_follows_the_launch_template(ec2_run: Run) -> None:
    group = ec2_run.one("aws:autoscaling/group:Group")
    lt = ec2_run.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert group.inputs["launchTemplate"] == {"id": lt.id, "version": str(lt.state["latestVersion"])}
    assert group.inputs["instanceRefresh"]["strategy"] == "Rolling"
    assert group.inputs["healthCheckType"] == "ELB"


def test_waf_protects_the_site(layout: Run) -> None:
    """One web ACL with the same rules: on the ALB (REGIONAL), or with the CDN on the distribution (CLOUDFRONT);
    behind CloudFront a regional rate limit would count CloudFront's addresses, not the viewers'."""
    acl = layout.one("aws:wafv2/webAcl:WebAcl")
    if cdn_on(layout):
        assert acl.inputs["scope"] == "CLOUDFRONT"
        assert layout.region_of(acl) == "us-east-1"
        assert layout.provider_of(acl) is not None
        assert layout.one("aws:cloudfront/distribution:Distribution").inputs["webAclId"] == acl.arn
        assert layout.of_type("aws:wafv2/webAclAssociation:WebAclAssociation") == []
    else:
        assoc = layout.one("aws:wafv2/webAclAssociation:WebAclAssociation")
        assert assoc.inputs == {"resourceArn": layout.one("aws:lb/loadBalancer:LoadBalancer", "edge-alb").arn,
                                "webAclArn": acl.arn}
        assert acl.inputs["scope"] == "REGIONAL"
    statements = {r["name"]: r["statement"] for r in acl.inputs["rules"]}
    for group in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        managed = statements[group]["managedRuleGroupStatement"]
        assert (managed["name"], managed["vendorName"]) == (group, "AWS")
    # Only the body-size rule is relaxed (to count), so large WebRTC offers get through; nothing else.
    assert statements["AWSManagedRulesCommonRuleSet"]["managedRuleGroupStatement"]["ruleActionOverrides"] == [
        {"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}]
    assert "ruleActionOverrides" not in statements["AWSManagedRulesKnownBadInputsRuleSet"]["managedRuleGroupStatement"]
    assert statements["rate-limit-per-ip"]["rateBasedStatement"] == {
        "limit": 2000, "aggregateKeyType": "IP", "evaluationWindowSec": 300}


def test_streams_feed_the_publisher(deployed: Run) -> None:
    publisher = deployed.one("aws:lambda/function:Function", "events-publisher")
    dlq = deployed.one("aws:sqs/queue:Queue")
    streams = {t.state["streamArn"] for t in deployed.of_type("aws:dynamodb/table:Table")}
    mappings = deployed.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert {m.inputs["eventSourceArn"] for m in mappings} == streams
    for m in mappings:
        assert m.inputs["functionName"] == publisher.arn
        assert m.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert m.inputs["bisectBatchOnFunctionError"] is True
        assert 0 < m.inputs["maximumRetryAttempts"] <= 10
        assert 0 < m.inputs["maximumRecordAgeInSeconds"] <= 3600
        assert m.inputs["destinationConfig"] == {"onFailure": {"destinationArn": dlq.arn}}
    tables = {t.inputs["name"]: t for t in deployed.of_type("aws:dynamodb/table:Table")}
    env = publisher.inputs["environment"]["variables"]
    assert {env["BOOKING_TABLE"], env["CHAT_HISTORY_TABLE"], env["SESSION_TABLE"]} == set(tables)
    assert env["APPSYNC_ENDPOINT"] == deployed.outputs["eventsHttpEndpoint"]
    assert publisher.inputs["handler"] == "runtime.events.stream_publisher.handler"


def test_publisher_may_publish_only_to_the_namespaces(deployed: Run) -> None:
    role = deployed.by_arn(deployed.one("aws:lambda/function:Function", "events-publisher").inputs["role"])
    policy = next(p for p in deployed.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id)
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    namespaces = {n.state["channelNamespaceArn"] for n in deployed.of_type(
        "aws:appsync/channelNamespace:ChannelNamespace")}
    assert statements["Publish"]["Action"] == ["appsync:EventPublish"]
    assert set(statements["Publish"]["Resource"]) == namespaces
    streams = {t.state["streamArn"] for t in deployed.of_type("aws:dynamodb/table:Table")}
    assert set(statements["ReadTableStreams"]["Resource"]) == streams


def test_appsync_auth_modes(layout: Run) -> None:
    api = layout.one("aws:appsync/api:Api")
    authorizer = layout.one("aws:lambda/function:Function", "events-authorizer")
    event = api.inputs["eventConfig"]
    lambda_provider = next(p for p in event["authProviders"] if p["authType"] == "AWS_LAMBDA")
    assert lambda_provider["lambdaAuthorizerConfig"]["authorizerUri"] == authorizer.arn
    assert event["defaultPublishAuthModes"] == [{"authType": "AWS_IAM"}]
    namespaces = {n.inputs["name"]: n.inputs for n in layout.of_type(
        "aws:appsync/channelNamespace:ChannelNamespace")}
    assert set(namespaces) == {"conversations", "restaurant-booking"}
    for ns in namespaces.values():
        assert ns["publishAuthModes"] == [{"authType": "AWS_IAM"}]
    if cognito_on(layout):  # details in test_platform_staff_pool.py
        assert namespaces["restaurant-booking"]["subscribeAuthModes"] == [{"authType": "AMAZON_COGNITO_USER_POOLS"}]
        assert namespaces["conversations"]["subscribeAuthModes"] == [
            {"authType": "AWS_LAMBDA"}, {"authType": "AMAZON_COGNITO_USER_POOLS"}]
    else:
        for ns in namespaces.values():
            assert ns["subscribeAuthModes"] == [{"authType": "AWS_LAMBDA"}]
            assert "codeHandlers" not in ns
    permission = layout.one("aws:lambda/permission:Permission")
    assert permission.inputs["principal"] == "appsync.amazonaws.com"
    assert permission.inputs["sourceArn"] == api.state["apiArn"]
    assert authorizer.inputs["handler"] == "runtime.events.authorizer.handler"
    secrets = {s.arn for s in layout.of_type("aws:secretsmanager/secret:Secret")}
    env = authorizer.inputs["environment"]["variables"]
    if cognito_on(layout):
        assert env["SESSION_SECRET_ARN"] in secrets
        assert env["STAFF_AUTH"] == "cognito"
        assert "STAFF_TOKEN_SECRET_ARN" not in env
    else:
        assert {env["STAFF_TOKEN_SECRET_ARN"], env["SESSION_SECRET_ARN"]} < secrets
        assert "STAFF_AUTH" not in env


REQUIRED_ENV = {"BOOKING_TABLE", "CHAT_HISTORY_TABLE", "SESSION_TABLE", "STORE", "SPEECH_ENGINE", "BEDROCK_REGION",
                "NOVA_SONIC_MODEL_ID", "APPSYNC_ENDPOINT", "APPSYNC_REALTIME_ENDPOINT", "TURN_URLS",
                "TRUST_PROXY_HEADERS", "HOST", "PORT"}


def runtime_environment(run: Run) -> tuple[dict[str, str], dict[str, str]]:
    """(plain environment, secret env -> Secrets Manager ARN) the runtime container starts with."""
    if run.config["nova-concierge:compute"] == "ecs":
        task = run.one("aws:ecs/taskDefinition:TaskDefinition", "ecs-runtime-task")
        (container,) = json.loads(task.inputs["containerDefinitions"])
        return ({e["name"]: e["value"] for e in container["environment"]},
                {s["name"]: s["valueFrom"] for s in container["secrets"]})
    script = invariants.user_data(run)
    env_block = script.split("cat > /etc/concierge/runtime.env <<'CONCIERGE_ENV'\n", 1)[1].split("\nCONCIERGE_ENV")[0]
    env = dict(line.split("=", 1) for line in env_block.splitlines())
    secrets = {}
    for line in script.splitlines():
        if line.startswith("printf '%s=%s\\n' "):
            _, _, name, fetch = line.split(" ", 3)
            secrets[name] = fetch.split("fetch ", 1)[1].rstrip(')"')
    return env, secrets


def test_runtime_environment_and_secrets(layout: Run) -> None:
    env, secrets = runtime_environment(layout)
    assert set(env) >= REQUIRED_ENV
    assert env["STORE"] == "dynamodb"
    assert env["SPEECH_ENGINE"] == "nova-sonic"
    assert env["TRUST_PROXY_HEADERS"] == "true"
    assert env["APPSYNC_ENDPOINT"] == layout.outputs["eventsHttpEndpoint"]
    assert env["TURN_URLS"].split(",") == layout.outputs["turnUrls"]
    assert env["NOVA_SONIC_MODEL_ID"] == layout.config["nova-concierge:novaSonicModelId"]
    tables = {t.name.removeprefix("data-"): t.inputs["name"] for t in layout.of_type("aws:dynamodb/table:Table")}
    assert (env["BOOKING_TABLE"], env["CHAT_HISTORY_TABLE"], env["SESSION_TABLE"]) == (
        tables["bookings"], tables["conversations"], tables["sessions"])
    secret_arns = {s.inputs["namePrefix"].split("/")[1].rstrip("-"): s.arn
                   for s in layout.of_type("aws:secretsmanager/secret:Secret")}
    expected = {"TURN_SECRET": secret_arns["turn-secret"], "SESSION_SECRET": secret_arns["session-secret"]}
    if not cognito_on(layout):
        expected["STAFF_TOKEN"] = secret_arns["staff-token"]
    assert secrets == expected
    assert not set(secrets) & set(env), "secret values must not travel as plain environment"


def test_runtime_settings_accept_the_environment(deployed: Run) -> None:
    """The environment the platform writes is one the runtime's own Settings parse to cloud mode."""
    from runtime.settings import Settings

    env, secrets = runtime_environment(deployed)
    values = {k.lower(): v for k, v in env.items()}
    values.update({k.lower(): "from-secrets-manager" for k in secrets})
    settings = Settings(**values)
    assert settings.store == "dynamodb"
    assert settings.speech_engine == "nova-sonic"
    assert settings.turn_urls == deployed.outputs["turnUrls"]
    assert settings.port == 8000
    assert settings.trust_proxy_headers is True
    assert settings.appsync_endpoint == deployed.outputs["eventsHttpEndpoint"]


def test_ec2_hosts_run_both_containers_under_systemd(ec2_run: Run) -> None:
    script = invariants.user_data(ec2_run)
    image = ec2_run.outputs["imageRef"]
    registry = image.split("/")[0]
    assert "dnf install -y docker" in script
    assert f"docker login --username AWS --password-stdin {registry}" in script
    assert f"docker pull {image}" in script
    for unit in ("concierge-runtime.service", "coturn-udp.service", "coturn-tcp.service"):
        assert f"/etc/systemd/system/{unit}" in script
    assert ("systemctl enable --now concierge-runtime.service coturn-udp.service coturn-tcp.service "
            "concierge-drain.service") in script
    assert script.count("--network host") == 3
    assert "turn-secret-for-tests" not in script
    assert "staff-token-for-tests" not in script
    lt = ec2_run.one("aws:ec2/launchTemplate:LaunchTemplate")
    sgs = {ec2_run.by_id(s).name for s in lt.inputs["vpcSecurityGroupIds"]}
    assert sgs == {"security-app", "security-turn"}


def test_coturn_gets_the_hardened_config(deployed: Run) -> None:
    if deployed.config["nova-concierge:compute"] == "ecs":
        task = deployed.one("aws:ecs/taskDefinition:TaskDefinition", "ecs-turn-task")
        container = next(c for c in json.loads(task.inputs["containerDefinitions"]) if c["name"] == "coturn-udp")
        encoded = {e["name"]: e["value"] for e in container["environment"]}["TURNSERVER_CONF_B64"]
    else:
        script = invariants.user_data(deployed)
        encoded = script.split("TURNSERVER_CONF_B64=", 1)[1].split("\n", 1)[0]
    conf = base64.b64decode(encoded).decode().splitlines()
    private = sorted(s.inputs["cidrBlock"] for s in deployed.of_type("aws:ec2/subnet:Subnet") if "private" in s.name)
    import ipaddress

    allowed = [line.split("=", 1)[1] for line in conf if line.startswith("allowed-peer-ip=")]
    assert allowed == [f"{ipaddress.ip_network(c)[0]}-{ipaddress.ip_network(c)[-1]}" for c in private]
    assert "denied-peer-ip=0.0.0.0-255.255.255.255" in conf
    assert "denied-peer-ip=169.254.0.0-169.254.255.255" in conf
    assert "use-auth-secret" in conf
    assert not any(line.startswith(("external-ip", "relay-ip", "static-auth-secret")) for line in conf)
