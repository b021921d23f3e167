"""The regional entry point: one Ingress per region with a host rule per model hostname,
its load balancer settings on EKS (ALB) and GKE, the region outputs, and strict validity."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pytest

from gpu_fleet.components import entrypoint as ep
from gpu_fleet.components.config import ModelConfig, RegionConfig, load_stack_file
from gpu_fleet.components.network import AwsNetwork, GcpNetwork
from gpu_fleet.engine import Recording
from gpu_fleet.manifests import validate

REPO = Path(__file__).resolve().parents[2]
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
BACKEND = "kubernetes:cloud.google.com/v1:BackendConfig"
FRONTEND = "kubernetes:networking.gke.io/v1beta1:FrontendConfig"
MANAGED_CERT = "kubernetes:networking.gke.io/v1:ManagedCertificate"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
GET_LB = "aws:lb/getLoadBalancer:getLoadBalancer"
GET_PREFIX_LIST = "aws:ec2/getManagedPrefixList:getManagedPrefixList"
GET_IP_RANGES = "aws:index/getIpRanges:getIpRanges"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PUBLIC_CIDRS = ["10.40.0.0/24", "10.40.1.0/24"]
RESTRICTED = [ipaddress.IPv4Network("100.64.10.0/24"), ipaddress.IPv4Network("100.64.20.0/24")]


@dataclass
class StandIn:
    """What a ModelDeployment gives the entry point."""

    model: ModelConfig
    service_name: pulumi.Output[str]
    service_port: int = 8000
    gateway_port: "int | None" = None


def _config(stack: str, **entry) -> RegionConfig:
    cfg = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml")
    if entry:
        cfg = cfg.model_copy(update={"entrypoint": cfg.entrypoint.model_copy(update=entry)})
    return cfg


def _program(cfg: RegionConfig, ports=None, gateway_port=None):
    def program():
        o = pulumi.Output.from_input
        if cfg.cloud == "aws":
            cloud = aws.Provider("region-aws", region=cfg.location)
            net = AwsNetwork(o("vpc-1"), o("10.40.0.0/16"), o(["subnet-a", "subnet-b"]),
                             o(["subnet-pub-a", "subnet-pub-b"]), o("sg-nodes"), o(PUBLIC_CIDRS))
        else:
            cloud = gcp.Provider("region-gcp", project=cfg.project, region=cfg.location)
            net = GcpNetwork(o("projects/p/global/networks/n"), o("n"), o("projects/p/regions/r/subnetworks/s"),
                             o("10.50.0.0/20"), o("10.52.0.0/14"))
        kube = k8s.Provider("cluster", kubeconfig="{}")
        models = [StandIn(m, o(f"vllm-{m.name}"), (ports or {}).get(m.name, 8000), gateway_port) for m in cfg.models]
        entry = ep.Entrypoint("r-entrypoint", {"config": cfg, "models": models, "network": net},
                              opts=pulumi.ResourceOptions(providers={"kubernetes": kube, cfg.cloud: cloud}))
        for key, value in entry.exports().items():
            pulumi.export(key, value)

    return program


@pytest.fixture
def aws_rec(fleet) -> Recording:
    return fleet.run(_program(_config("us-east")), stack="us-east")


@pytest.fixture
def gcp_rec(fleet) -> Recording:
    return fleet.run(_program(_config("eu-west")), stack="eu-west")


def _ingress(rec: Recording) -> dict:
    (manifest,) = [m for r, m in rec.kubernetes_objects() if r.type == INGRESS]
    return manifest


def _rules(manifest: dict) -> dict[str, tuple[str, int]]:
    """Host to (service, port); every host routes exactly /v1 (Prefix) and /health (Exact)."""
    out = {}
    for rule in manifest["spec"]["rules"]:
        paths = rule["http"]["paths"]
        assert [(p["path"], p["pathType"]) for p in paths] == [("/v1", "Prefix"), ("/health", "Exact")]
        (service,) = {(p["backend"]["service"]["name"], int(p["backend"]["service"]["port"]["number"])) for p in paths}
        out[rule["host"]] = service
    return out


# --------------------------------------------------------------------------- AWS


def test_aws_ingress_routes_each_model_hostname_and_alias_to_its_service(aws_rec):
    ingress = _ingress(aws_rec)
    assert ingress["metadata"]["name"] == "llm-entrypoint"
    assert ingress["metadata"]["namespace"] == "llm-serving"
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert _rules(ingress) == {
        "llama-3-1-70b.us-east.llm.example.com": ("vllm-llama-3-1-70b", 8000),
        "llama-3-1-70b.llm.example.com": ("vllm-llama-3-1-70b", 8000),
        "qwen2-5-72b.us-east.llm.example.com": ("vllm-qwen2-5-72b", 8000),
        "qwen2-5-72b.llm.example.com": ("vllm-qwen2-5-72b", 8000),
        "llama-3-1-8b.us-east.llm.example.com": ("vllm-llama-3-1-8b", 8000),
        "llama-3-1-8b.llm.example.com": ("vllm-llama-3-1-8b", 8000),
    }
    assert "defaultBackend" not in ingress["spec"]


def test_aws_ingress_asks_for_an_internet_facing_tls_alb(aws_rec):
    a = _ingress(aws_rec)["metadata"]["annotations"]
    p = "alb.ingress.kubernetes.io/"
    assert a[p + "load-balancer-name"] == "gpu-fleet-us-east"
    assert a[p + "scheme"] == "internet-facing"
    assert a[p + "target-type"] == "ip"
    assert a[p + "subnets"] == "subnet-pub-a,subnet-pub-b"
    assert json.loads(a[p + "listen-ports"]) == [{"HTTPS": 443}]
    assert a[p + "certificate-arn"] == _config("us-east").entrypoint.certificate
    assert a[p + "ssl-policy"].startswith("ELBSecurityPolicy-TLS13-")
    assert a[p + "inbound-cidrs"] == "0.0.0.0/0"
    assert a[p + "healthcheck-path"] == "/health"
    assert (a[p + "healthcheck-interval-seconds"], a[p + "unhealthy-threshold-count"]) == ("5", "2")
    assert int(a[p + "healthcheck-timeout-seconds"]) < int(a[p + "healthcheck-interval-seconds"])
    assert a[p + "load-balancer-attributes"] == "idle_timeout.timeout_seconds=600"
    assert all(isinstance(v, str) for v in a.values())


def test_aws_open_to_everyone_needs_no_health_checker_rules(aws_rec):
    a = _ingress(aws_rec)["metadata"]["annotations"]
    assert "alb.ingress.kubernetes.io/security-group-prefix-lists" not in a
    assert not [c for c in aws_rec.calls if c.token == GET_PREFIX_LIST]


def test_aws_restricted_sources_admit_route53_health_checkers_by_prefix_list(fleet):
    rec = fleet.run(_program(_config("us-east", allowed_cidrs=RESTRICTED)), stack="us-east")
    a = _ingress(rec)["metadata"]["annotations"]
    assert a["alb.ingress.kubernetes.io/inbound-cidrs"] == "100.64.10.0/24,100.64.20.0/24"
    (call,) = [c for c in rec.calls if c.token == GET_PREFIX_LIST]
    assert call.args["name"] == "com.amazonaws.us-east-1.route53-healthchecks"
    assert "::region-aws::" in call.provider
    # The controller adds one security group rule per prefix list beside the CIDR rules,
    # so Route 53's checks of https://<model>.<domain>/health reach the listener.
    assert a["alb.ingress.kubernetes.io/security-group-prefix-lists"].startswith("pl-")
    assert ep.route53_prefix_list_name("eu-west-1") == "com.amazonaws.eu-west-1.route53-healthchecks"


def test_aws_looks_up_the_alb_by_name_through_the_region_provider(aws_rec):
    (call,) = [c for c in aws_rec.calls if c.token == GET_LB]
    assert call.args["name"] == "gpu-fleet-us-east"
    assert "::region-aws::" in call.provider
    ingress = aws_rec.named(INGRESS, "r-entrypoint")
    assert aws_rec.provider_of(ingress).name == "cluster"


def test_aws_exports(aws_rec):
    o = aws_rec.stack_outputs
    assert o["entrypointHostname"].endswith(".us-east-1.elb.amazonaws.com")
    assert o["entrypointHostname"].startswith("gpu-fleet-us-east-")
    assert o["entrypointZoneId"] == "Z35SXDOTRQ7X7K"
    assert o["entrypointArn"].startswith("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gpu-fleet-us-east/")
    assert o["entrypointIp"] is None
    assert (o["healthPath"], o["healthPort"]) == ("/health", 443)
    assert (o["domain"], o["aliases"]) == ("us-east.llm.example.com", ["llm.example.com"])
    assert o["modelHostnames"] == {
        "llama-3-1-70b": "llama-3-1-70b.us-east.llm.example.com",
        "qwen2-5-72b": "qwen2-5-72b.us-east.llm.example.com",
        "llama-3-1-8b": "llama-3-1-8b.us-east.llm.example.com",
    }
    assert not aws_rec.of_type("gcp:compute/globalAddress:GlobalAddress")


# --------------------------------------------------------------------------- GCP


def test_gcp_ingress_uses_gke_class_annotation_static_ip_and_preshared_certificate(gcp_rec):
    ingress = _ingress(gcp_rec)
    a = ingress["metadata"]["annotations"]
    # GKE ignores ingressClassName and acts on the annotation.
    assert "ingressClassName" not in ingress["spec"]
    assert a["kubernetes.io/ingress.class"] == "gce"
    address = gcp_rec.named("gcp:compute/globalAddress:GlobalAddress", "r-entrypoint-ip")
    assert address.plain_inputs["addressType"] == "EXTERNAL"
    assert a["kubernetes.io/ingress.global-static-ip-name"] == address.outputs["name"]
    assert a["ingress.gcp.kubernetes.io/pre-shared-cert"] == "llm-example-com"
    assert "networking.gke.io/managed-certificates" not in a
    assert a["kubernetes.io/ingress.allow-http"] == "false"
    assert a["networking.gke.io/v1beta1.FrontendConfig"] == "llm-entrypoint"
    assert _rules(ingress) == {
        "llama-3-1-70b.eu-west.llm.example.com": ("vllm-llama-3-1-70b", 8000),
        "llama-3-1-70b.llm.example.com": ("vllm-llama-3-1-70b", 8000),
        "qwen2-5-72b.eu-west.llm.example.com": ("vllm-qwen2-5-72b", 8000),
        "qwen2-5-72b.llm.example.com": ("vllm-qwen2-5-72b", 8000),
        "llama-3-1-8b.eu-west.llm.example.com": ("vllm-llama-3-1-8b", 8000),
        "llama-3-1-8b.llm.example.com": ("vllm-llama-3-1-8b", 8000),
    }
    assert not gcp_rec.of_type(MANAGED_CERT)
    assert gcp_rec.named(INGRESS, "r-entrypoint").custom_timeouts == {"create": "30m"}


def test_gcp_backend_config_checks_health_and_allows_long_requests(gcp_rec):
    (backend,) = [m for r, m in gcp_rec.kubernetes_objects() if r.type == BACKEND]
    assert backend["metadata"]["name"] == ep.BACKEND_CONFIG_NAME
    hc = backend["spec"]["healthCheck"]
    assert (hc["type"], hc["requestPath"], int(hc["port"])) == ("HTTP", "/health", 8000)
    assert (int(hc["checkIntervalSec"]), int(hc["unhealthyThreshold"])) == (5, 2)
    assert int(backend["spec"]["timeoutSec"]) == 600
    # 0.0.0.0/0 is allowed: no Cloud Armor policy.
    assert "securityPolicy" not in backend["spec"] and not gcp_rec.of_type(ARMOR)


def test_gcp_frontend_config_names_a_modern_ssl_policy(gcp_rec):
    (frontend,) = [m for r, m in gcp_rec.kubernetes_objects() if r.type == FRONTEND]
    policy = gcp_rec.named("gcp:compute/sSLPolicy:SSLPolicy", "r-entrypoint-tls")
    assert (policy.plain_inputs["profile"], policy.plain_inputs["minTlsVersion"]) == ("MODERN", "TLS_1_2")
    assert frontend["spec"] == {"sslPolicy": policy.outputs["name"]}


def test_gcp_cloud_resources_use_the_region_provider(gcp_rec):
    for r in gcp_rec.resources:
        if r.type.startswith("gcp:compute/"):
            assert gcp_rec.provider_of(r).name == "region-gcp", r.name
        if r.type.startswith("kubernetes:") and r.custom and not r.type.startswith("pulumi:"):
            assert gcp_rec.provider_of(r).name == "cluster", r.name


def armor_verdict(rules: list[dict], address: str) -> str:
    """What Cloud Armor does with a request from ``address``: the action of the matching
    rule with the lowest priority number (Cloud Armor evaluates rules in priority order)."""
    ip = ipaddress.IPv4Address(address)
    for rule in sorted(rules, key=lambda r: r["priority"]):
        config = rule["match"]["config"]
        ranges = config.get("srcIpRanges", config.get("src_ip_ranges"))  # recorded inputs are camelCase
        if ranges == ["*"] or any(ip in ipaddress.IPv4Network(r) for r in ranges):
            return rule["action"]
    return "allow"  # no rule: Cloud Armor's implicit default


def test_gcp_restricted_sources_get_a_cloud_armor_policy_that_admits_the_health_checkers(fleet):
    cidrs = [ipaddress.IPv4Network(f"100.64.{i}.0/24") for i in range(12)]
    rec = fleet.run(_program(_config("eu-west", allowed_cidrs=cidrs)), stack="eu-west")
    policy = rec.named(ARMOR, "r-entrypoint-sources")
    rules = policy.plain_inputs["rules"]
    assert [r["action"] for r in rules] == ["allow"] * 4 + ["deny(403)"]
    # Cloud Armor takes at most ten ranges per rule: 12 configured + 12 checker ranges.
    assert [len(r["match"]["config"]["srcIpRanges"]) for r in rules] == [10, 2, 10, 2, 1]
    assert [r["priority"] for r in rules] == [1000, 1001, 2000, 2001, 2147483647]
    assert rules[-1]["match"]["config"]["srcIpRanges"] == ["*"]
    assert sorted(ip for r in rules[:2] for ip in r["match"]["config"]["srcIpRanges"]) == sorted(map(str, cidrs))
    # The health checkers' ranges come from ip-ranges.json (ROUTE53_HEALTHCHECKS) through
    # an AWS provider of the component's own, never a default provider.
    (call,) = [c for c in rec.calls if c.token == GET_IP_RANGES]
    assert call.args["services"] == ["route53_healthchecks"]
    assert "::r-entrypoint-ip-ranges::" in call.provider
    checkers = sorted(ip for r in rules[2:4] for ip in r["match"]["config"]["srcIpRanges"])
    assert len(checkers) == 12
    # So every Route 53 checker gets through, configured sources too, and nobody else.
    for checker in checkers:
        network = ipaddress.IPv4Network(checker)
        assert armor_verdict(rules, str(network[0])) == armor_verdict(rules, str(network[-1])) == "allow"
    assert armor_verdict(rules, "100.64.11.7") == "allow"
    assert armor_verdict(rules, "8.8.8.8") == "deny(403)"
    (backend,) = [m for r, m in rec.kubernetes_objects() if r.type == BACKEND]
    assert backend["spec"]["securityPolicy"] == {"name": policy.outputs["name"]}


def test_without_the_health_checkers_route53_checks_would_be_denied():
    # The same evaluation on rules built without them: the check this guards against.
    rules = ep.cloud_armor_rules(RESTRICTED)
    assert armor_verdict(rules, "192.0.2.1") == "deny(403)"
    assert armor_verdict(ep.cloud_armor_rules(RESTRICTED, ["192.0.2.0/26"]), "192.0.2.1") == "allow"


def test_gcp_without_certificate_gets_a_google_managed_one(fleet):
    cfg = _config("eu-west", certificate=None)
    rec = fleet.run(_program(cfg), stack="eu-west")
    (cert,) = [m for r, m in rec.kubernetes_objects() if r.type == MANAGED_CERT]
    assert cert["metadata"]["name"] == ep.MANAGED_CERTIFICATE_NAME
    domains = cert["spec"]["domains"]
    assert sorted(domains) == [
        "llama-3-1-70b.eu-west.llm.example.com", "llama-3-1-70b.llm.example.com",
        "llama-3-1-8b.eu-west.llm.example.com", "llama-3-1-8b.llm.example.com",
        "qwen2-5-72b.eu-west.llm.example.com", "qwen2-5-72b.llm.example.com",
    ]
    # Per model in stack-file order: the regional name, then the alias.
    assert domains == [h for m in cfg.models for h in (f"{m.name}.eu-west.llm.example.com", f"{m.name}.llm.example.com")]
    a = _ingress(rec)["metadata"]["annotations"]
    assert a["networking.gke.io/managed-certificates"] == ep.MANAGED_CERTIFICATE_NAME
    assert "ingress.gcp.kubernetes.io/pre-shared-cert" not in a


def test_gcp_exports(gcp_rec):
    o = gcp_rec.stack_outputs
    assert o["entrypointIp"] == gcp_rec.named("gcp:compute/globalAddress:GlobalAddress", "r-entrypoint-ip").outputs["address"]
    assert (o["entrypointHostname"], o["entrypointZoneId"], o["entrypointArn"]) == (None, None, None)
    assert o["modelHostnames"]["qwen2-5-72b"] == "qwen2-5-72b.eu-west.llm.example.com"
    # Open to everyone: no Cloud Armor, so no lookup of the health checkers and no AWS provider.
    assert not gcp_rec.calls and not gcp_rec.of_type("pulumi:providers:aws")


def test_gcp_models_must_share_one_service_port(fleet):
    cfg = _config("eu-west")
    with pytest.raises(Exception, match="ports \\[8000, 8080\\]"):
        fleet.run(_program(cfg, ports={"qwen2-5-72b": 8080}), stack="eu-west")


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("stack", ["us-east", "eu-west"])
def test_ingress_and_network_policy_are_strictly_valid_kubernetes(fleet, stack):
    rec = fleet.run(_program(_config(stack)), stack=stack)
    checked, errors = validate(_ingress(rec))
    assert checked and errors == []
    (policy,) = [m for r, m in rec.kubernetes_objects() if r.type == POLICY]
    checked, errors = validate(policy)
    assert checked and errors == []


def admitted(spec: dict, source: str, namespace: str = "llm-serving", pod_labels: dict | None = None,
             port: int = 8000) -> bool:
    """Whether an ingress NetworkPolicy ``spec`` admits a connection to ``port`` from
    ``source``: an address outside the cluster (``pod_labels`` None) or a pod in
    ``namespace`` with ``pod_labels`` (Kubernetes' NetworkPolicy semantics)."""
    for rule in spec["ingress"]:
        if not any(p["port"] == port for p in rule["ports"]):
            continue
        for peer in rule["from"]:
            if "ipBlock" in peer and pod_labels is None:
                if ipaddress.IPv4Address(source) in ipaddress.IPv4Network(peer["ipBlock"]["cidr"]):
                    return True
            elif "namespaceSelector" in peer and pod_labels is not None:
                ns = peer["namespaceSelector"]["matchLabels"]
                pods = peer.get("podSelector", {}).get("matchLabels", {})
                if ns == {"kubernetes.io/metadata.name": namespace} and pods.items() <= pod_labels.items():
                    return True
    return False


@pytest.mark.parametrize("stack,lb_address,sources", [
    ("us-east", "10.40.1.17", PUBLIC_CIDRS),
    ("eu-west", "35.191.3.4", ["35.191.0.0/16", "130.211.0.0/22"]),
])
def test_model_pods_admit_only_the_load_balancer_and_prometheus(fleet, stack, lb_address, sources):
    rec = fleet.run(_program(_config(stack)), stack=stack)
    (policy,) = [m for r, m in rec.kubernetes_objects() if r.type == POLICY]
    assert (policy["metadata"]["name"], policy["metadata"]["namespace"]) == ("vllm-ingress", "llm-serving")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "vllm"}}
    assert spec["policyTypes"] == ["Ingress"]
    assert [peer["ipBlock"]["cidr"] for peer in spec["ingress"][0]["from"]] == sources
    assert admitted(spec, lb_address)
    assert admitted(spec, "x", namespace="monitoring", pod_labels={"app.kubernetes.io/name": "prometheus"})
    # Not another pod of the cluster, not Grafana next to Prometheus, not the internet,
    # not a port other than vLLM's.
    assert not admitted(spec, "x", namespace="llm-serving", pod_labels={"app.kubernetes.io/name": "curl"})
    assert not admitted(spec, "x", namespace="monitoring", pod_labels={"app.kubernetes.io/name": "grafana"})
    assert not admitted(spec, "8.8.8.8")
    assert not admitted(spec, lb_address, port=9000)
    if stack == "us-east":
        # Pods live in the private subnets of the VPC: not admitted by address.
        assert not admitted(spec, "10.40.64.5")


def test_route53_checks_an_exact_routed_path(aws_rec):
    # The global stack's health checks request the exported healthPath through the load
    # balancer: it must be one of the routed paths, matched exactly.
    assert (aws_rec.stack_outputs["healthPath"], "Exact") in ep.PUBLIC_PATHS


def test_only_the_api_and_health_paths_are_routed():
    spec = ep.ingress_spec(None, [(["m.example.com"], "vllm-m", 8000, None)])
    (rule,) = spec["rules"]
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == list(ep.PUBLIC_PATHS)
    assert "defaultBackend" not in spec
    assert ep.PUBLIC_PATHS == (("/v1", "Prefix"), ("/health", "Exact"))
    assert ep.HEALTH_PATH == "/health"


def test_invalid_ingress_is_caught_by_the_validator(aws_rec):
    bad = _ingress(aws_rec)
    bad["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = 7
    checked, errors = validate(bad)
    assert checked and errors


def test_an_invalid_entrypoint_section_is_refused(fleet):
    cfg = _config("us-east", certificate=None)
    with pytest.raises(Exception, match="entrypoint.certificate: required on aws"):
        fleet.run(_program(cfg), stack="us-east")


def test_no_models_means_no_load_balancer(fleet):
    cfg = _config("us-east").model_copy(update={"models": []})
    rec = fleet.run(_program(cfg), stack="us-east")
    assert not rec.of_type(INGRESS) and not rec.calls and not rec.of_type(POLICY)
    assert rec.stack_outputs["modelHostnames"] == {} and rec.stack_outputs["entrypointHostname"] is None


def test_service_annotations():
    assert ep.service_annotations(_config("us-east")) == {}
    a = ep.service_annotations(_config("eu-west"))
    assert json.loads(a["cloud.google.com/neg"]) == {"ingress": True}
    assert json.loads(a["cloud.google.com/backend-config"]) == {"default": ep.BACKEND_CONFIG_NAME}


def test_alb_name_is_short_deterministic_and_distinct():
    assert ep.alb_name("gpu-fleet", "us-east") == "gpu-fleet-us-east"
    long_a = ep.alb_name("gpu-fleet", "production-us-east-1-blue")
    long_b = ep.alb_name("gpu-fleet", "production-us-east-1-green")
    assert len(long_a) <= 32 and len(long_b) <= 32 and long_a != long_b
    assert long_a == ep.alb_name("gpu-fleet", "production-us-east-1-blue")
    assert ep.alb_name("My_Project", "Stack.1") == "my-project-stack-1"
    assert not ep.alb_name("internal", "x").startswith("internal-")


def test_hostnames_put_the_regional_name_first():
    entry = _config("us-east").entrypoint
    assert ep.hostnames(entry, "m") == ["m.us-east.llm.example.com", "m.llm.example.com"]


def test_with_a_gateway_the_api_goes_through_it_and_health_to_vllm():
    spec = ep.ingress_spec(None, [(["m.example.com"], "vllm-m", 8000, 4000)])
    (rule,) = spec["rules"]
    routes = {p["path"]: p["backend"]["service"]["port"]["number"] for p in rule["http"]["paths"]}
    assert routes == {"/v1": 4000, "/health": 8000}


def test_with_a_gateway_every_alb_target_group_checks_vllm_health():
    entry = _config("us-east").entrypoint
    p = "alb.ingress.kubernetes.io/healthcheck-port"
    assert ep.alb_annotations(entry, "lb", ["s"], None, 8000)[p] == "8000"
    assert p not in ep.alb_annotations(entry, "lb", ["s"])


@pytest.mark.parametrize("stack,lb_address", [("us-east", "10.40.1.17"), ("eu-west", "35.191.3.4")])
def test_with_a_gateway_the_load_balancer_reaches_its_port(fleet, stack, lb_address):
    rec = fleet.run(_program(_config(stack), gateway_port=4000), stack=stack)
    (policy,) = [m for r, m in rec.kubernetes_objects() if r.type == POLICY]
    assert admitted(policy["spec"], lb_address, port=4000) and admitted(policy["spec"], lb_address, port=8000)
    assert not admitted(policy["spec"], lb_address, port=9000)
    ingress = _ingress(rec)
    if stack == "us-east":
        assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-port"] == "8000"
    else:  # the shared BackendConfig checks vLLM's port for both backends
        (backend,) = [m for r, m in rec.kubernetes_objects() if m.get("kind") == "BackendConfig"]
        assert backend["spec"]["healthCheck"]["port"] == 8000
    ports = {p["path"]: p["backend"]["service"]["port"]["number"] for r in ingress["spec"]["rules"]
             for p in r["http"]["paths"]}
    assert ports == {"/v1": 4000, "/health": 8000}
