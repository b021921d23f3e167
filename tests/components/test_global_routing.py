"""The global stack: Route 53 latency records tied to per-region, per-model health checks
(DNS mode) or Global Accelerator (anycast mode), fed by the region stacks' real entry point
outputs through StackReferences, with its own us-east-1 provider everywhere."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pytest
import yaml

from gpu_fleet.components.config import GlobalConfig, RegionConfig, load_stack_file
from gpu_fleet.components.entrypoint import Entrypoint
from gpu_fleet.components.global_routing import GlobalRouting, export_global, region_endpoint, region_endpoints
from gpu_fleet.components.network import AwsNetwork, GcpNetwork
from gpu_fleet import engine

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"
ANYCAST = REPO / "examples" / "anycast" / "stacks"
KEY = "gpu-fleet:fleet"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
ENDPOINT_GROUP = "aws:globalaccelerator/endpointGroup:EndpointGroup"


def _raw(path: Path) -> dict:
    return copy.deepcopy(yaml.safe_load(path.read_text())["config"][KEY])


def _region(path: Path, **entry) -> RegionConfig:
    # Structural validation only: the routing under test does not depend on GPU offerings
    # (tests/gpu_fleet/test_cli_plan.py plans the examples with every check).
    raw = _raw(path)
    raw["entrypoint"].update(entry)
    return RegionConfig.model_validate(raw)


def _global(path: Path, **routing) -> GlobalConfig:
    raw = _raw(path)
    raw["routing"].update(routing)
    return GlobalConfig.model_validate(raw)


def region_outputs(cfg: RegionConfig, stack: str) -> dict:
    """What the region stack exports for its entry point, from a real Entrypoint run."""
    def program():
        o = pulumi.Output.from_input
        if cfg.cloud == "aws":
            cloud = aws.Provider("region-aws", region=cfg.location)
            net = AwsNetwork(o("vpc"), o("10.0.0.0/16"), o(["a", "b"]), o(["c", "d"]), o("sg"), o(["10.0.0.0/24", "10.0.1.0/24"]))
        else:
            cloud = gcp.Provider("region-gcp", project=cfg.project, region=cfg.location)
            net = GcpNetwork(o("n"), o("n"), o("s"), o("10.0.0.0/20"), o("10.4.0.0/14"))
        models = [_StandIn(m, o(f"vllm-{m.name}")) for m in cfg.models]
        entry = Entrypoint(f"{stack}-entrypoint", {"config": cfg, "models": models, "network": net},
                           opts=pulumi.ResourceOptions(providers={"kubernetes": k8s.Provider("k", kubeconfig="{}"),
                                                                  cfg.cloud: cloud}))
        pulumi.export("cloud", cfg.cloud)
        pulumi.export("location", cfg.location)
        for key, value in entry.exports().items():
            pulumi.export(key, value)

    rec = engine.Recording(stack=stack)
    engine.install(rec, {})
    return dict(engine.run(program, rec).stack_outputs)


class _StandIn:
    """What a ModelDeployment gives the entry point."""

    def __init__(self, model, service_name, service_port: int = 8000):
        self.model, self.service_name, self.service_port = model, service_name, service_port
        self.gateway_port = None  # no gateway: /v1 straight to vLLM


def run_global(cfg: GlobalConfig, regions: dict[str, RegionConfig], outputs: dict[str, dict],
               stack: str = "global") -> engine.Recording:
    """Plan the global stack with StackReferences answered from ``outputs``."""
    rec = engine.Recording(stack=stack)
    engine.install(rec, {}, (), {f"{cfg.organization}/gpu-fleet/{s}": (o, set()) for s, o in outputs.items()})

    def program():
        endpoints = [region_endpoint(cfg.organization, s, c) for s, c in regions.items()]
        export_global(GlobalRouting(stack, {"config": cfg, "regions": endpoints}))

    return engine.run(program, rec)


@pytest.fixture
def reference(fleet) -> tuple[GlobalConfig, dict[str, RegionConfig], dict[str, dict]]:
    cfg = load_stack_file(STACKS / "Pulumi.global.yaml")
    regions = {s: load_stack_file(STACKS / f"Pulumi.{s}.yaml") for s in cfg.regions}
    return cfg, regions, {s: region_outputs(c, s) for s, c in regions.items()}


@pytest.fixture
def dns_rec(reference) -> engine.Recording:
    return run_global(*reference)


@pytest.fixture
def anycast(fleet) -> tuple[GlobalConfig, dict[str, RegionConfig], dict[str, dict]]:
    cfg = _global(ANYCAST / "Pulumi.global.yaml")
    regions = {s: _region(ANYCAST / f"Pulumi.{s}.yaml") for s in cfg.regions}
    return cfg, regions, {s: region_outputs(c, s) for s, c in regions.items()}


@pytest.fixture
def anycast_rec(anycast) -> engine.Recording:
    return run_global(*anycast)


def _checks(rec: engine.Recording) -> dict[str, engine.ResourceRecord]:
    return {r.plain_inputs["fqdn"]: r for r in rec.of_type(HEALTH_CHECK)}


def _latency_records(rec: engine.Recording) -> list[dict]:
    return [r.plain_inputs for r in rec.of_type(RECORD) if "setIdentifier" in r.plain_inputs]


# --------------------------------------------------------------------------- DNS mode


def test_one_https_health_check_per_region_and_model(dns_rec):
    checks = _checks(dns_rec)
    assert sorted(checks) == [
        "llama-3-1-70b.eu-west.llm.example.com",
        "llama-3-1-70b.us-east.llm.example.com",
        "llama-3-1-8b.eu-west.llm.example.com",
        "llama-3-1-8b.us-east.llm.example.com",
        "qwen2-5-72b.eu-west.llm.example.com",
        "qwen2-5-72b.us-east.llm.example.com",
    ]
    for check in checks.values():
        i = check.plain_inputs
        assert (i["type"], int(i["port"]), i["resourcePath"]) == ("HTTPS", 443, "/health")
        assert (int(i["requestInterval"]), int(i["failureThreshold"])) == (10, 1)
        assert i["enableSni"] is True and i["measureLatency"] is True
        assert "regions" not in i  # all checker regions


def test_latency_records_route_each_model_to_the_regions_serving_it(dns_rec):
    records = sorted(_latency_records(dns_rec), key=lambda r: (r["name"], r["setIdentifier"]))
    assert [(r["name"], r["setIdentifier"], r["latencyRoutingPolicies"], r["records"]) for r in records] == [
        ("llama-3-1-70b.llm.example.com", "eu-west", [{"region": "eu-central-1"}], ["llama-3-1-70b.eu-west.llm.example.com"]),
        ("llama-3-1-70b.llm.example.com", "us-east", [{"region": "us-east-1"}], ["llama-3-1-70b.us-east.llm.example.com"]),
        ("llama-3-1-8b.llm.example.com", "eu-west", [{"region": "eu-central-1"}], ["llama-3-1-8b.eu-west.llm.example.com"]),
        ("llama-3-1-8b.llm.example.com", "us-east", [{"region": "us-east-1"}], ["llama-3-1-8b.us-east.llm.example.com"]),
        ("qwen2-5-72b.llm.example.com", "eu-west", [{"region": "eu-central-1"}], ["qwen2-5-72b.eu-west.llm.example.com"]),
        ("qwen2-5-72b.llm.example.com", "us-east", [{"region": "us-east-1"}], ["qwen2-5-72b.us-east.llm.example.com"]),
    ]
    for r in records:
        assert (r["type"], int(r["ttl"]), r["zoneId"]) == ("CNAME", 5, "Z0OFFLINEPLAN")
        assert "aliases" not in r


def test_each_latency_record_uses_the_health_check_of_its_region_and_model(dns_rec):
    checks = _checks(dns_rec)
    records = _latency_records(dns_rec)
    assert len(records) == len(checks) == 6
    for r in records:
        (regional,) = r["records"]
        assert r["healthCheckId"] == checks[regional].outputs["id"]
    assert len({r["healthCheckId"] for r in records}) == 6


# --------------------------------------------------------------------------- regions sharing a label


@pytest.fixture
def shared(fleet, reference) -> tuple[GlobalConfig, dict[str, RegionConfig], dict[str, dict]]:
    """The reference fleet plus GCP us-east4 (use4), which routes as AWS us-east-1 like us-east,
    serving two of the three models."""
    cfg, regions, outputs = reference
    eu = regions["eu-west"]
    use4 = eu.model_copy(update={
        "location": "us-east4", "models": [m for m in eu.models if m.name != "qwen2-5-72b"],
        "entrypoint": eu.entrypoint.model_copy(update={"domain": "use4.llm.example.com"})})
    regions = {**regions, "use4": use4}
    dns = cfg.routing.dns.model_copy(update={"weights": {"us-east": 3}})
    cfg = cfg.model_copy(update={"regions": [*cfg.regions, "use4"],
                                 "routing": cfg.routing.model_copy(update={"dns": dns})})
    return cfg, regions, {**outputs, "use4": region_outputs(use4, "use4")}


@pytest.fixture
def shared_rec(shared) -> engine.Recording:
    return run_global(*shared)


def test_one_latency_record_per_label_and_model(shared_rec):
    latency = [r for r in _latency_records(shared_rec) if "latencyRoutingPolicies" in r]
    by_name: dict[str, list[str]] = {}
    for r in latency:
        by_name.setdefault(r["name"], []).append(r["latencyRoutingPolicies"][0]["region"])
    assert {n: sorted(labels) for n, labels in by_name.items()} == {
        "llama-3-1-70b.llm.example.com": ["eu-central-1", "us-east-1"],
        "llama-3-1-8b.llm.example.com": ["eu-central-1", "us-east-1"],
        "qwen2-5-72b.llm.example.com": ["eu-central-1", "us-east-1"],  # use4 does not serve it
    }


def test_shared_label_is_a_latency_alias_to_weighted_records_with_health_checks(shared_rec):
    checks = _checks(shared_rec)
    records = _latency_records(shared_rec)
    (alias,) = [r for r in records if r["name"] == "llama-3-1-8b.llm.example.com"
                and r["latencyRoutingPolicies"] == [{"region": "us-east-1"}]]
    behind = "llama-3-1-8b.us-east-1.latency.llm.example.com"
    # The complex-configuration tree: Evaluate Target Health on, no health check of its own, no TTL;
    # the record keeps the first region's identifier (an in-place change when a region joins).
    assert alias["aliases"] == [{"name": behind, "zoneId": "Z0OFFLINEPLAN", "evaluateTargetHealth": True}]
    assert alias["setIdentifier"] == "us-east" and alias["type"] == "CNAME"
    assert "healthCheckId" not in alias and "ttl" not in alias and "records" not in alias
    weighted = sorted((r for r in records if r["name"] == behind), key=lambda r: r["setIdentifier"])
    assert [(r["setIdentifier"], r["weightedRoutingPolicies"], r["records"]) for r in weighted] == [
        ("us-east", [{"weight": 3}], ["llama-3-1-8b.us-east.llm.example.com"]),
        ("use4", [{"weight": 1}], ["llama-3-1-8b.use4.llm.example.com"]),
    ]
    for r in weighted:
        assert (r["type"], int(r["ttl"])) == ("CNAME", 5)
        assert r["healthCheckId"] == checks[r["records"][0]].outputs["id"]


def test_the_alias_is_created_after_its_weighted_records(shared_rec):
    aliases = [r for r in shared_rec.of_type(RECORD)
               if "aliases" in r.plain_inputs and "latencyRoutingPolicies" in r.plain_inputs]
    weighted = {r.urn for r in shared_rec.of_type(RECORD) if "weightedRoutingPolicies" in r.plain_inputs}
    assert len(aliases) == 2 and len(weighted) == 4  # the two models use4 serves
    for a in aliases:
        assert set(a.depends_on) & weighted


def test_a_label_with_one_region_keeps_its_plain_record(shared_rec):
    (eu,) = [r for r in _latency_records(shared_rec) if r["name"] == "llama-3-1-70b.llm.example.com"
             and r["latencyRoutingPolicies"] == [{"region": "eu-central-1"}]]
    assert (eu["setIdentifier"], eu["records"]) == ("eu-west", ["llama-3-1-70b.eu-west.llm.example.com"])
    # qwen is served under us-east-1 by us-east alone: a plain record, not an alias.
    (qwen,) = [r for r in _latency_records(shared_rec) if r["name"] == "qwen2-5-72b.llm.example.com"
               and r["latencyRoutingPolicies"] == [{"region": "us-east-1"}]]
    assert qwen["records"] == ["qwen2-5-72b.us-east.llm.example.com"] and "aliases" not in qwen


def test_shared_labels_keep_the_budget_and_are_exported(shared_rec, dns_rec):
    o = shared_rec.stack_outputs
    assert o["failoverBudget"] == dns_rec.stack_outputs["failoverBudget"]
    assert o["latencyLabels"]["llama-3-1-8b"] == {"us-east-1": ["us-east", "use4"], "eu-central-1": ["eu-west"]}
    assert o["latencyLabels"]["qwen2-5-72b"] == {"us-east-1": ["us-east"], "eu-central-1": ["eu-west"]}


def test_regional_names_point_at_each_load_balancer(dns_rec, reference):
    _, _, outputs = reference
    regional = {r.plain_inputs["name"]: r.plain_inputs for r in dns_rec.of_type(RECORD)
                if "setIdentifier" not in r.plain_inputs}
    us, eu = outputs["us-east"], outputs["eu-west"]
    assert regional["llama-3-1-8b.us-east.llm.example.com"]["aliases"] == [
        {"name": us["entrypointHostname"], "zoneId": us["entrypointZoneId"], "evaluateTargetHealth": False}]
    assert regional["llama-3-1-8b.us-east.llm.example.com"]["type"] == "A"
    assert regional["qwen2-5-72b.eu-west.llm.example.com"]["records"] == [eu["entrypointIp"]]
    assert regional["qwen2-5-72b.eu-west.llm.example.com"]["type"] == "A"
    assert len(regional) == 6


def test_zone_is_looked_up_by_name_through_the_global_provider(dns_rec):
    (call,) = dns_rec.calls
    assert call.token == "aws:route53/getZone:getZone"
    assert call.args == {"name": "example.com", "privateZone": False}
    assert "::global-aws::" in call.provider


def test_every_aws_resource_uses_the_explicit_us_east_1_provider(dns_rec, anycast_rec):
    for rec in (dns_rec, anycast_rec):
        (provider,) = rec.of_type("pulumi:providers:aws")
        assert provider.name == "global-aws" and provider.plain_inputs["region"] == "us-east-1"
        aws_resources = [r for r in rec.resources if r.type.startswith("aws:")]
        assert aws_resources
        for r in aws_resources:
            assert rec.provider_of(r) is provider, r.name
            assert r.delete_before_replace is False, r.name


def test_component_carries_the_failover_budget_for_policies(dns_rec):
    (component,) = dns_rec.of_type("gpufleet:index:GlobalRouting")
    props = component.plain_inputs
    assert (props["failoverBudgetSeconds"], props["failoverTargetSeconds"], props["routingMode"]) == (25, 30, "dns")
    assert props["failoverBudget"]["message"] == dns_rec.stack_outputs["failoverBudget"]["message"]


def test_dns_outputs(dns_rec):
    o = dns_rec.stack_outputs
    assert (o["routingMode"], o["failoverBudgetSeconds"], o["failoverTargetSeconds"]) == ("dns", 25, 30)
    assert o["failoverBudget"]["parts"] == {"detection": 10, "propagation": 10, "ttl": 5}
    assert o["failoverBudget"]["meetsTarget"] is True
    assert o["endpoints"] == {
        "llama-3-1-70b": "llama-3-1-70b.llm.example.com",
        "llama-3-1-8b": "llama-3-1-8b.llm.example.com",
        "qwen2-5-72b": "qwen2-5-72b.llm.example.com",
    }
    checks = _checks(dns_rec)
    assert o["healthCheckIds"]["us-east"]["llama-3-1-8b"] == checks["llama-3-1-8b.us-east.llm.example.com"].outputs["id"]
    assert o["healthCheckIds"]["eu-west"]["qwen2-5-72b"] == checks["qwen2-5-72b.eu-west.llm.example.com"].outputs["id"]


def test_warns_on_single_region_models_and_on_a_missed_budget(reference):
    # The reference stacks serve every model in both regions within the target: narrow
    # each region's models and slow the checks to build both situations.
    cfg, regions, _ = reference
    keep = {"us-east": {"llama-3-1-70b", "llama-3-1-8b"}, "eu-west": {"qwen2-5-72b", "llama-3-1-8b"}}
    regions = {s: c.model_copy(update={"models": [m for m in c.models if m.name in keep[s]]})
               for s, c in regions.items()}
    slow = cfg.model_copy(update={"routing": cfg.routing.model_copy(update={
        "dns": cfg.routing.dns.model_copy(update={"failure_threshold": 2, "ttl_seconds": 10})})})
    rec = run_global(slow, regions, {s: region_outputs(c, s) for s, c in regions.items()})
    assert rec.stack_outputs["failoverBudget"]["parts"] == {"detection": 20, "propagation": 10, "ttl": 10}
    assert rec.stack_outputs["failoverBudgetSeconds"] == 40
    w = rec.warnings
    assert "model llama-3-1-70b is served only in us-east: llama-3-1-70b.llm.example.com has no region to fail over to" in w
    assert any(x.startswith("model qwen2-5-72b is served only in eu-west") for x in w)
    assert not any(x.startswith("model llama-3-1-8b") for x in w)
    assert any(x.startswith("dns failover budget 40 s") and "routing.dns.failureThreshold to 1" in x for x in w)


def test_a_budget_within_target_gives_no_warning(dns_rec):
    # The reference global stack (threshold 1, TTL 5 s) is within target, and every model
    # is served in both regions: nothing to warn about.
    assert dns_rec.stack_outputs["failoverBudgetSeconds"] == 25
    assert dns_rec.warnings == []
    assert {int(c.plain_inputs["failureThreshold"]) for c in dns_rec.of_type(HEALTH_CHECK)} == {1}


def test_created_zone_is_protected_and_holds_the_records(reference):
    cfg, regions, outputs = reference
    created = cfg.model_copy(update={"routing": cfg.routing.model_copy(update={
        "dns": cfg.routing.dns.model_copy(update={"create_hosted_zone": True})})})
    rec = run_global(created, regions, outputs)
    (zone,) = rec.of_type("aws:route53/zone:Zone")
    assert zone.protect is True and zone.plain_inputs["name"] == "example.com"
    assert {r.plain_inputs["zoneId"] for r in rec.of_type(RECORD)} == {zone.outputs["zoneId"]}
    assert rec.stack_outputs["hostedZoneNameServers"] == zone.outputs["nameServers"]
    assert not rec.calls


def test_zone_by_id_needs_no_lookup(reference):
    cfg, regions, outputs = reference
    by_id = cfg.model_copy(update={"routing": cfg.routing.model_copy(update={
        "dns": cfg.routing.dns.model_copy(update={"hosted_zone_id": "Z0123456789", "hosted_zone_name": None})})})
    rec = run_global(by_id, regions, outputs)
    assert not rec.calls
    assert {r.plain_inputs["zoneId"] for r in rec.of_type(RECORD)} == {"Z0123456789"}
    # The region domains are below the global domain, so the zone holds them too.
    assert len([r for r in rec.of_type(RECORD) if "setIdentifier" not in r.plain_inputs]) == 6


def test_region_domain_outside_the_zone_is_left_to_the_region(reference):
    cfg, regions, outputs = reference
    regions = dict(regions)
    outputs = copy.deepcopy(outputs)
    eu = regions["eu-west"]
    regions["eu-west"] = eu.model_copy(update={"entrypoint": eu.entrypoint.model_copy(update={"domain": "eu.example.net"})})
    outputs["eu-west"]["domain"] = "eu.example.net"
    outputs["eu-west"]["modelHostnames"] = {m: f"{m}.eu.example.net" for m in outputs["eu-west"]["modelHostnames"]}
    rec = run_global(cfg, regions, outputs)
    regional = [r.plain_inputs["name"] for r in rec.of_type(RECORD) if "setIdentifier" not in r.plain_inputs]
    assert sorted(regional) == ["llama-3-1-70b.us-east.llm.example.com", "llama-3-1-8b.us-east.llm.example.com",
                                "qwen2-5-72b.us-east.llm.example.com"]
    assert "qwen2-5-72b.eu.example.net" in _checks(rec)
    assert any(w.startswith("eu-west: eu.example.net is outside hosted zone example.com") for w in rec.warnings)


def test_restricted_sources_need_no_warning_the_region_admits_the_checkers(reference):
    cfg, regions, outputs = reference
    regions = dict(regions)
    us = regions["us-east"]
    regions["us-east"] = us.model_copy(update={"entrypoint": us.entrypoint.model_copy(
        update={"allowed_cidrs": [ipaddress.IPv4Network("203.0.113.0/24")]})})
    rec = run_global(cfg, regions, outputs)
    assert not any("allowedCidrs" in w for w in rec.warnings)


def test_checker_regions_are_passed_on(reference):
    cfg, regions, outputs = reference
    chosen = ["us-east-1", "eu-west-1", "ap-southeast-1"]
    picked = cfg.model_copy(update={"routing": cfg.routing.model_copy(update={
        "dns": cfg.routing.dns.model_copy(update={"health_check_regions": chosen})})})
    rec = run_global(picked, regions, outputs)
    assert {tuple(c.plain_inputs["regions"]) for c in rec.of_type(HEALTH_CHECK)} == {tuple(chosen)}


def test_region_endpoints_reads_the_stack_files(fleet, reference):
    cfg, _, outputs = reference
    rec = engine.Recording(stack="global")
    engine.install(rec, {}, (), {f"acme/gpu-fleet/{s}": (o, set()) for s, o in outputs.items()})
    seen, order = {}, {}

    def program():
        for r in region_endpoints(cfg, STACKS):
            seen[r.stack] = (r.reference, r.cloud, r.location, r.latency_region, sorted(r.models))
            order[r.stack] = r.models
            pulumi.export(r.stack, r.domain)

    engine.run(program, rec)
    models = ["llama-3-1-70b", "llama-3-1-8b", "qwen2-5-72b"]
    assert seen == {
        "us-east": ("acme/gpu-fleet/us-east", "aws", "us-east-1", "us-east-1", models),
        "eu-west": ("acme/gpu-fleet/eu-west", "gcp", "europe-west4", "eu-central-1", models),
    }
    # In each stack file's order.
    assert order == {s: [m["name"] for m in _raw(STACKS / f"Pulumi.{s}.yaml")["models"]] for s in cfg.regions}
    assert rec.stack_outputs == {"us-east": "us-east.llm.example.com", "eu-west": "eu-west.llm.example.com"}


@pytest.mark.parametrize("stack,output", [("us-east", "entrypointArn"), ("us-east", "modelHostnames"),
                                          ("eu-west", "entrypointIp")])
def test_a_missing_region_output_names_the_stack_and_the_output(reference, stack, output):
    cfg, regions, outputs = reference
    outputs = copy.deepcopy(outputs)
    del outputs[stack][output]
    with pytest.raises(Exception, match=f"region stack acme/gpu-fleet/{stack} has no output '{output}'"):
        run_global(cfg, regions, outputs)


def test_a_model_the_deployed_region_does_not_export(reference):
    cfg, regions, outputs = reference
    outputs = copy.deepcopy(outputs)
    del outputs["eu-west"]["modelHostnames"]["qwen2-5-72b"]
    with pytest.raises(Exception, match="acme/gpu-fleet/eu-west exports no hostname for model 'qwen2-5-72b'"):
        run_global(cfg, regions, outputs)


def test_a_region_deployed_with_another_domain(reference):
    cfg, regions, outputs = reference
    outputs = copy.deepcopy(outputs)
    outputs["us-east"]["domain"] = "old.llm.example.com"
    with pytest.raises(Exception, match="deployed with domain old.llm.example.com but its stack file says us-east"):
        run_global(cfg, regions, outputs)


def test_an_unplanned_region_stack_is_an_error(reference):
    cfg, regions, outputs = reference
    with pytest.raises(Exception, match="acme/gpu-fleet/eu-west"):
        run_global(cfg, regions, {"us-east": outputs["us-east"]})


# --------------------------------------------------------------------------- anycast mode


def test_anycast_accelerator_listens_on_443_over_tcp(anycast_rec):
    (acc,) = anycast_rec.of_type("aws:globalaccelerator/accelerator:Accelerator")
    assert (acc.plain_inputs["ipAddressType"], acc.plain_inputs["enabled"]) == ("IPV4", True)
    assert "attributes" not in acc.plain_inputs  # no flow logs unless a bucket is given
    (listener,) = anycast_rec.of_type("aws:globalaccelerator/listener:Listener")
    i = listener.plain_inputs
    assert i["acceleratorArn"] == acc.outputs["arn"]
    assert (i["protocol"], i["clientAffinity"]) == ("TCP", "NONE")
    assert [(int(p["fromPort"]), int(p["toPort"])) for p in i["portRanges"]] == [(443, 443)]


def test_anycast_has_one_endpoint_group_per_region_with_its_alb(anycast_rec, anycast):
    _, _, outputs = anycast
    (listener,) = anycast_rec.of_type("aws:globalaccelerator/listener:Listener")
    groups = {g.plain_inputs["endpointGroupRegion"]: g.plain_inputs for g in anycast_rec.of_type(ENDPOINT_GROUP)}
    assert sorted(groups) == ["us-east-1", "us-west-2"]
    for region, stack in (("us-east-1", "use1"), ("us-west-2", "usw2")):
        g = groups[region]
        assert g["listenerArn"] == listener.outputs["arn"]
        assert g["endpointConfigurations"] == [{"endpointId": outputs[stack]["entrypointArn"],
                                                "clientIpPreservationEnabled": True}]
        assert outputs[stack]["entrypointArn"].startswith(f"arn:aws:elasticloadbalancing:{region}:")
        assert (int(g["healthCheckIntervalSeconds"]), int(g["thresholdCount"])) == (10, 3)
        assert (g["healthCheckProtocol"], int(g["healthCheckPort"]), g["healthCheckPath"]) == ("HTTPS", 443, "/health")


def test_anycast_stacks_in_one_aws_region_share_its_endpoint_group(anycast):
    cfg, regions, outputs = anycast
    use1 = regions["use1"]
    again = use1.model_copy(update={"entrypoint": use1.entrypoint.model_copy(update={"domain": "use1b.llm.example.com"})})
    again_out = region_outputs(again, "use1b")
    rec = run_global(cfg.model_copy(update={"regions": [*cfg.regions, "use1b"]}), {**regions, "use1b": again},
                     {**outputs, "use1b": again_out})
    groups = {g.name: g.plain_inputs for g in rec.of_type(ENDPOINT_GROUP)}
    assert sorted(groups) == ["global-use1", "global-usw2"]  # named by the first stack: no replacement
    assert [e["endpointId"] for e in groups["global-use1"]["endpointConfigurations"]] == [
        outputs["use1"]["entrypointArn"], again_out["entrypointArn"]]
    assert again_out["entrypointArn"] != outputs["use1"]["entrypointArn"]


def test_anycast_names_are_aliases_to_the_accelerator(anycast_rec):
    (acc,) = anycast_rec.of_type("aws:globalaccelerator/accelerator:Accelerator")
    records = {r.plain_inputs["name"]: r.plain_inputs for r in anycast_rec.of_type(RECORD)}
    assert sorted(records) == ["llama-3-1-70b.llm.example.com", "llama-3-1-8b.llm.example.com"]
    for r in records.values():
        assert r["type"] == "A" and "setIdentifier" not in r and "ttl" not in r
        assert r["aliases"] == [{"name": acc.outputs["dnsName"], "zoneId": acc.outputs["hostedZoneId"],
                                 "evaluateTargetHealth": False}]
    assert not anycast_rec.of_type(HEALTH_CHECK)


def test_anycast_outputs_and_budget(anycast_rec):
    o = anycast_rec.stack_outputs
    assert (o["routingMode"], o["failoverBudgetSeconds"]) == ("anycast", 40)
    assert o["failoverBudget"]["parts"] == {"loadBalancerDetection": 10, "acceleratorReaction": 30}
    assert o["failoverBudget"]["meetsTarget"] is False
    assert o["failoverBudget"]["failsOver"] == "per region"
    assert o["healthCheckIds"] == {}
    assert o["acceleratorIps"] == ["75.2.0.10", "99.83.0.10"]
    assert not any("served only" in w for w in anycast_rec.warnings)
    # The plan says plainly what anycast cannot do.
    assert any(w.startswith("anycast routing fails over per region, not per model") for w in anycast_rec.warnings)
    assert any(w.startswith("anycast failover budget 40 s") and "no setting meets it" in w
               for w in anycast_rec.warnings)


def test_the_accelerator_interval_does_not_change_the_anycast_budget(anycast):
    # Endpoint group health check settings do not apply to ALB endpoints.
    cfg, regions, outputs = anycast
    slow = cfg.model_copy(update={"routing": cfg.routing.model_copy(update={
        "anycast": cfg.routing.anycast.model_copy(update={"health_check_interval_seconds": 30})})})
    rec = run_global(slow, regions, outputs)
    assert rec.stack_outputs["failoverBudgetSeconds"] == 40


def test_anycast_flow_logs(anycast):
    cfg, regions, outputs = anycast
    logged = cfg.model_copy(update={"routing": cfg.routing.model_copy(update={
        "anycast": cfg.routing.anycast.model_copy(update={"flow_logs_bucket": "acme-flow-logs"})})})
    rec = run_global(logged, regions, outputs)
    (acc,) = rec.of_type("aws:globalaccelerator/accelerator:Accelerator")
    assert acc.plain_inputs["attributes"] == {"flowLogsEnabled": True, "flowLogsS3Bucket": "acme-flow-logs",
                                              "flowLogsS3Prefix": "global-accelerator/"}


def test_anycast_regions_export_their_alb(anycast):
    _, _, outputs = anycast
    assert outputs["usw2"]["entrypointZoneId"] == "Z1H1FL5HABSF5"
    assert outputs["use1"]["modelHostnames"] == {
        "llama-3-1-70b": "llama-3-1-70b.use1.llm.example.com",
        "llama-3-1-8b": "llama-3-1-8b.use1.llm.example.com",
    }


def test_reference_plan_feeds_the_region_stacks_real_outputs_to_the_global_stack(reference_plan):
    # The whole program: region stacks planned first, their exports answering the
    # global stack's StackReferences.
    rec = reference_plan("global").recording
    us = reference_plan("us-east").recording.stack_outputs
    checks = _checks(rec)
    assert sorted(checks) == sorted(f"{m}.{region}.llm.example.com" for region in ("us-east", "eu-west")
                                    for m in ("llama-3-1-70b", "qwen2-5-72b", "llama-3-1-8b"))
    for r in _latency_records(rec):
        assert r["healthCheckId"] == checks[r["records"][0]].outputs["id"]
    alias = next(r.plain_inputs for r in rec.of_type(RECORD) if r.plain_inputs["name"] == "llama-3-1-8b.us-east.llm.example.com")
    assert alias["aliases"][0]["name"] == us["entrypointHostname"]
