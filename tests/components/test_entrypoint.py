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

from components import entrypoint as ep
from components.config import ModelConfig, RegionConfig, load_stack_file
from components.network import AwsNetwork, GcpNetwork
from gpu_fleet.engine import Recording
from gpu_fleet.manifests import validate

REPO = Path(__file__).resolve().parents[2]
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
BACKEND = "kubernetes:cloud.google.com/v1:BackendConfig"
FRONTEND = "kubernetes:networking.gke.io/v1beta1:FrontendConfig"
MANAGED_CERT = "kubernetes:networking.gke.io/v1:ManagedCertificate"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
GET_LB = "aws:lb/getLoadBalancer:getLoadBalancer"


@dataclass
class StandIn:
    """What a ModelDeployment gives the entry point."""

    model: ModelConfig
    service_name: pulumi.Output[str]
    service_port: int = 8000


def _config(stack: str, **entry) -> RegionConfig:
    cfg = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml")
    if entry:
        cfg = cfg.model_copy(update={"entrypoint": cfg.entrypoint.model_copy(update=entry)})
    return cfg


def _program(cfg: RegionConfig, ports=None):
    def program():
        o = pulumi.Output.from_input
        if cfg.cloud == "aws":
            cloud = aws.Provider("region-aws", region=cfg.location)
            net = AwsNetwork(o("vpc-1"), o("10.40.0.0/16"), o(["subnet-a", "subnet-b"]),
                             o(["subnet-pub-a", "subnet-pub-b"]), o("sg-nodes"))
        else:
            cloud = gcp.Provider("region-gcp", project=cfg.project, region=cfg.location)
            net = GcpNetwork(o("projects/p/global/networks/n"), o("n"), o("projects/p/regions/r/subnetworks/s"),
                             o("10.50.0.0/20"), o("10.52.0.0/14"))
        kube = k8s.Provider("cluster", kubeconfig="{}")
        models = [StandIn(m, o(f"vllm-{m.name}"), (ports or {}).get(m.name, 8000)) for m in cfg.models]
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
    out = {}
    for rule in manifest["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/", "Prefix")
        service = path["backend"]["service"]
        out[rule["host"]] = (service["name"], int(service["port"]["number"]))
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


def test_aws_inbound_cidrs_follow_allowed_cidrs(fleet):
    cidrs = [ipaddress.IPv4Network("203.0.113.0/24"), ipaddress.IPv4Network("198.51.100.0/24")]
    rec = fleet.run(_program(_config("us-east", allowed_cidrs=cidrs)), stack="us-east")
    assert _ingress(rec)["metadata"]["annotations"]["alb.ingress.kubernetes.io/inbound-cidrs"] == \
        "203.0.113.0/24,198.51.100.0/24"


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


def test_gcp_restricted_sources_get_a_cloud_armor_policy(fleet):
    cidrs = [ipaddress.IPv4Network(f"198.51.{i}.0/24") for i in range(12)]
    rec = fleet.run(_program(_config("eu-west", allowed_cidrs=cidrs)), stack="eu-west")
    policy = rec.named(ARMOR, "r-entrypoint-sources")
    rules = policy.plain_inputs["rules"]
    assert [r["action"] for r in rules] == ["allow", "allow", "deny(403)"]
    assert [len(r["match"]["config"]["srcIpRanges"]) for r in rules] == [10, 2, 1]
    assert rules[-1]["match"]["config"]["srcIpRanges"] == ["*"] and rules[-1]["priority"] == 2147483647
    assert sorted(ip for r in rules[:2] for ip in r["match"]["config"]["srcIpRanges"]) == sorted(map(str, cidrs))
    (backend,) = [m for r, m in rec.kubernetes_objects() if r.type == BACKEND]
    assert backend["spec"]["securityPolicy"] == {"name": policy.outputs["name"]}


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
    assert not gcp_rec.calls


def test_gcp_models_must_share_one_service_port(fleet):
    cfg = _config("eu-west")
    with pytest.raises(Exception, match="ports \\[8000, 8080\\]"):
        fleet.run(_program(cfg, ports={"qwen2-5-72b": 8080}), stack="eu-west")


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("stack", ["us-east", "eu-west"])
def test_ingress_is_strictly_valid_kubernetes(fleet, stack):
    rec = fleet.run(_program(_config(stack)), stack=stack)
    checked, errors = validate(_ingress(rec))
    assert checked and errors == []


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
    assert not rec.of_type(INGRESS) and not rec.calls
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
