"""Global stack config checks (each names the field), the entry point section's checks,
and the latency-region table."""

from __future__ import annotations

import copy
import ipaddress
import shutil
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from gpu_fleet.components.config import (
    ConfigError,
    EntrypointConfig,
    GlobalConfig,
    RegionConfig,
    load_stack_file,
    parse_fleet,
)
from gpu_fleet.components.gpu_catalog import load_catalog
from gpu_fleet.components.latency_regions import AWS_REGIONS, GCP_TO_AWS, latency_region

REPO = Path(__file__).resolve().parents[2]
SOURCE = "stacks/Pulumi.global.yaml"
KEY = "gpu-fleet:fleet"


@pytest.fixture
def stacks(tmp_path) -> Path:
    """A copy of the reference stacks to edit."""
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _edit_region(stacks: Path, stack: str, edit: Callable[[dict], None]) -> None:
    path = stacks / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc["config"][KEY])
    path.write_text(yaml.safe_dump(doc))


def _global(stacks: Path, edit: Optional[Callable[[dict], None]] = None) -> dict:
    raw = copy.deepcopy(yaml.safe_load((stacks / "Pulumi.global.yaml").read_text())["config"][KEY])
    if edit:
        edit(raw)
    return raw


def _errors(raw: dict, stacks: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_fleet(raw, SOURCE, stacks)
    return str(exc.value).splitlines()


def _has(lines: list[str], path: str, words: str) -> bool:
    return any(line.startswith(f"{SOURCE}: {path}: ") and words in line for line in lines)


def test_reference_global_stack_is_valid(stacks):
    cfg = parse_fleet(_global(stacks), SOURCE, stacks)
    assert isinstance(cfg, GlobalConfig) and cfg.routing.mode == "dns"


def test_reference_regions_answer_to_the_global_domain():
    for stack in ("us-east", "eu-west"):
        entry = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml").entrypoint
        assert entry.aliases == ["llm.example.com"]
    assert load_stack_file(REPO / "stacks" / "Pulumi.eu-west.yaml").entrypoint.certificate == "llm-example-com"


def test_fewer_than_two_regions(stacks):
    lines = _errors(_global(stacks, lambda g: g.update(regions=["us-east"])), stacks)
    assert _has(lines, "regions", "at least two region stacks")


def test_unknown_region_name(stacks):
    lines = _errors(_global(stacks, lambda g: g.update(regions=["us-east", "ap-south"])), stacks)
    assert _has(lines, "regions[1]", "no region stack 'ap-south'; stacks: eu-west, global, us-east")


def test_region_stack_that_is_invalid(stacks):
    _edit_region(stacks, "eu-west", lambda r: r["gpuPools"][0].update(gpusPerNode=3))
    lines = _errors(_global(stacks), stacks)
    assert _has(lines, "regions[1]", "region stack 'eu-west' is invalid: gpuPools[0].gpusPerNode:")


def test_global_stack_listed_as_a_region(stacks):
    lines = _errors(_global(stacks, lambda g: g.update(regions=["us-east", "global"])), stacks)
    assert _has(lines, "regions[1]", "'global' is a global stack, not a region stack")


def _to_us_east4(r: dict) -> None:
    # GCP us-east4 (Ashburn) routes as AWS us-east-1, like the us-east stack.
    r["location"] = "us-east4"
    r["gpuPools"][0]["zones"] = ["us-east4-a", "us-east4-b"]


def test_two_regions_may_share_a_latency_label(stacks):
    _edit_region(stacks, "eu-west", _to_us_east4)
    cfg = parse_fleet(_global(stacks, lambda g: g["routing"]["dns"].update(weights={"us-east": 3, "eu-west": 0})),
                      SOURCE, stacks)
    assert (cfg.routing.dns.weight("us-east"), cfg.routing.dns.weight("eu-west")) == (3, 0)


def test_weights_only_for_regions_sharing_a_label(stacks):
    lines = _errors(_global(stacks, lambda g: g["routing"]["dns"].update(weights={"us-east": 2})), stacks)
    assert _has(lines, "routing.dns.weights.us-east", "only region stacks that share a latency label are weighted; "
                "sharing: none")


def test_route53_weights_are_0_to_255(stacks):
    _edit_region(stacks, "eu-west", _to_us_east4)
    lines = _errors(_global(stacks, lambda g: g["routing"]["dns"].update(weights={"us-east": 256})), stacks)
    assert _has(lines, "routing.dns.weights.us-east", "less than or equal to 255")


def test_region_domain_where_the_weighted_records_live(stacks):
    _edit_region(stacks, "us-east", lambda r: r["entrypoint"].update(domain="use1.latency.llm.example.com"))
    lines = _errors(_global(stacks), stacks)
    assert _has(lines, "regions[0]", "us-east: entrypoint.domain use1.latency.llm.example.com is below "
                "latency.llm.example.com")


def _anycast_fleet(stacks: Path, copies: int) -> dict:
    """A global stack in anycast mode over ``copies`` AWS stacks in us-east-1."""
    doc = yaml.safe_load((stacks / "Pulumi.us-east.yaml").read_text())
    names = []
    for i in range(copies):
        doc["config"][KEY]["entrypoint"]["domain"] = f"r{i}.llm.example.com"
        (stacks / f"Pulumi.r{i}.yaml").write_text(yaml.safe_dump(doc))
        names.append(f"r{i}")
    return _global(stacks, lambda g: (g.update(regions=names), g["routing"].update(mode="anycast")))


def test_anycast_puts_stacks_of_one_aws_region_in_one_endpoint_group(stacks):
    cfg = parse_fleet(_anycast_fleet(stacks, 10), SOURCE, stacks)
    assert cfg.routing.mode == "anycast" and len(cfg.regions) == 10


def test_weights_are_for_dns_mode(stacks):
    raw = _anycast_fleet(stacks, 2)
    raw["routing"]["dns"]["weights"] = {"r0": 2}
    assert _has(_errors(raw, stacks), "routing.dns.weights", "only used in dns mode")


def test_anycast_endpoint_group_holds_ten_albs(stacks):
    lines = _errors(_anycast_fleet(stacks, 11), stacks)
    assert _has(lines, "regions", "11 region stacks in us-east-1; a Global Accelerator endpoint group holds at most "
                "10 ALBs")


def test_anycast_accelerator_holds_42_endpoint_groups(stacks, monkeypatch):
    import gpu_fleet.components.config as config

    monkeypatch.setattr(config, "ACCELERATOR_ENDPOINT_GROUPS", 1)
    raw = _anycast_fleet(stacks, 2)
    _edit_region(stacks, "r1", lambda r: (r.update(location="us-west-2"), r["entrypoint"].update(
        certificate=ARN.replace("us-east-1", "us-west-2"))))
    lines = _errors(raw, stacks)
    assert _has(lines, "regions", "2 AWS regions; a Global Accelerator has at most 1 endpoint groups (one per region)")


def test_location_without_the_shape_lists_where_it_is_offered(stacks):
    _edit_region(stacks, "eu-west", lambda r: r.update(location="asia-south2"))
    lines = _errors(_global(stacks), stacks)
    assert _has(lines, "regions[1]", "region stack 'eu-west' is invalid: location: no GPU offerings recorded for gcp "
                "region 'asia-south2'; h100 x8 is offered in: ")


def test_ten_region_example_is_valid():
    cfg = load_stack_file(REPO / "examples" / "ten-regions" / "stacks" / "Pulumi.global.yaml")
    assert isinstance(cfg, GlobalConfig) and len(cfg.regions) == 10


def test_region_without_the_global_domain_in_its_aliases(stacks):
    _edit_region(stacks, "us-east", lambda r: r["entrypoint"].update(aliases=["api.example.com"]))
    lines = _errors(_global(stacks), stacks)
    assert _has(lines, "regions[0]", "us-east: entrypoint.aliases lacks llm.example.com")


def test_gcp_region_with_a_google_managed_certificate(stacks):
    _edit_region(stacks, "eu-west", lambda r: r["entrypoint"].pop("certificate"))
    lines = _errors(_global(stacks), stacks)
    assert _has(lines, "regions[1]", "eu-west: entrypoint.certificate is empty")


def test_region_serving_no_models(stacks):
    _edit_region(stacks, "eu-west", lambda r: r.update(models=[]))
    lines = _errors(_global(stacks), stacks)
    assert _has(lines, "regions[1]", "eu-west serves no models")


@pytest.mark.parametrize("dns,path,words", [
    ({"hostedZoneName": "example.com", "healthCheckIntervalSeconds": 15},
     "routing.dns.healthCheckIntervalSeconds", "Route 53 accepts 10 or 30"),
    ({"hostedZoneName": "example.com", "failureThreshold": 0}, "routing.dns.failureThreshold", "Route 53 accepts 1 to 10"),
    ({"hostedZoneName": "example.com", "healthCheckRegions": ["us-east-1", "eu-west-1"]},
     "routing.dns.healthCheckRegions", "three or more distinct"),
    ({"hostedZoneName": "example.com", "healthCheckRegions": ["us-east-1", "us-east-1", "eu-west-1"]},
     "routing.dns.healthCheckRegions", "three or more distinct"),
    ({"hostedZoneName": "example.org"}, "domain", "llm.example.com is not in hosted zone example.org"),
    ({"hostedZoneId": "Z123", "hostedZoneName": "example.com"}, "routing.dns", "exactly one of"),
    ({"hostedZoneId": "Z123", "createHostedZone": True}, "routing.dns.createHostedZone", "needs hostedZoneName"),
])
def test_bad_dns_routing(stacks, dns, path, words):
    lines = _errors(_global(stacks, lambda g: g["routing"].update(dns=dns)), stacks)
    assert _has(lines, path, words), lines


def test_checker_regions_must_be_route53_checker_regions(stacks):
    dns = {"hostedZoneName": "example.com", "healthCheckRegions": ["us-east-1", "eu-west-1", "eu-central-1"]}
    lines = _errors(_global(stacks, lambda g: g["routing"].update(dns=dns)), stacks)
    assert any("routing.dns.healthCheckRegions[2]" in line for line in lines), lines


def test_three_checker_regions_are_fine(stacks):
    dns = {"hostedZoneName": "example.com", "healthCheckRegions": ["us-east-1", "eu-west-1", "ap-southeast-1"]}
    cfg = parse_fleet(_global(stacks, lambda g: g["routing"].update(dns=dns)), SOURCE, stacks)
    assert cfg.routing.dns.health_check_regions == ["us-east-1", "eu-west-1", "ap-southeast-1"]


def test_anycast_with_a_gcp_region(stacks):
    lines = _errors(_global(stacks, lambda g: g["routing"].update(mode="anycast")), stacks)
    assert _has(lines, "routing.mode", "anycast (AWS Global Accelerator) needs every region on aws; eu-west is on gcp")


def test_anycast_needs_the_same_models_everywhere(stacks):
    _edit_region(stacks, "us-east", lambda r: r.update(models=[m for m in r["models"] if m["name"] != "qwen2-5-72b"]))
    _edit_region(stacks, "eu-west", lambda r: r.update(models=[m for m in r["models"] if m["name"] != "llama-3-1-70b"]))
    lines = _errors(_global(stacks, lambda g: g["routing"].update(mode="anycast")), stacks)
    assert _has(lines, "routing.mode", "every region must serve the same models; us-east lacks qwen2-5-72b")
    assert _has(lines, "routing.mode", "eu-west lacks llama-3-1-70b")


@pytest.mark.parametrize("anycast,path,words", [
    ({"healthCheckIntervalSeconds": 20}, "routing.anycast.healthCheckIntervalSeconds", "accepts 10 or 30"),
    ({"thresholdCount": 11}, "routing.anycast.thresholdCount", "accepts 1 to 10"),
])
def test_bad_anycast_settings(stacks, anycast, path, words):
    lines = _errors(_global(stacks, lambda g: g["routing"].update(mode="anycast", anycast=anycast)), stacks)
    assert _has(lines, path, words), lines


def test_anycast_still_needs_the_hosted_zone_for_the_client_names(stacks):
    lines = _errors(_global(stacks, lambda g: g["routing"].update(mode="anycast", dns={})), stacks)
    assert _has(lines, "routing.dns", "exactly one of hostedZoneId and hostedZoneName")


def test_anycast_example_is_valid():
    cfg = load_stack_file(REPO / "examples" / "anycast" / "stacks" / "Pulumi.global.yaml")
    assert isinstance(cfg, GlobalConfig) and cfg.routing.mode == "anycast"


# --------------------------------------------------------------------------- entrypoint section


def _entry(**fields) -> EntrypointConfig:
    return EntrypointConfig.model_validate({"domain": "us-east.llm.example.com", "allowedCidrs": ["0.0.0.0/0"],
                                            **fields})


ARN = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize("fields,cloud,words", [
    ({}, "aws", "required on aws"),
    ({"certificate": "my-cert"}, "aws", "is not an ACM certificate ARN"),
    ({"certificate": ARN.replace("us-east-1", "eu-west-1")}, "aws", "needs an ACM certificate from us-east-1"),
    ({"certificate": ARN}, "gcp", "is not a Compute Engine SSL certificate name"),
    ({"certificate": ARN, "aliases": ["us-east.llm.example.com"]}, "aws", "is the domain itself"),
    ({"certificate": ARN, "aliases": ["llm.example.com", "llm.example.com"]}, "aws", "listed twice"),
])
def test_entrypoint_problems(fields, cloud, words):
    location = "us-east-1" if cloud == "aws" else "europe-west4"
    problems = _entry(**fields).problems(cloud, location, ["m"])
    assert any(words in p.message for p in problems), problems
    assert all(p.path.startswith("entrypoint.") for p in problems)


def test_valid_entrypoints_have_no_problems():
    assert _entry(certificate=ARN, aliases=["llm.example.com"]).problems("aws", "us-east-1", ["m"]) == []
    assert _entry(certificate="llm-example-com").problems("gcp", "europe-west4", ["m"]) == []
    assert _entry().problems("gcp", "europe-west4", ["m"]) == []


def test_google_managed_certificate_is_limited_to_100_names():
    entry = _entry(aliases=["llm.example.com"])
    assert entry.problems("gcp", "europe-west4", [f"m{i}" for i in range(50)]) == []
    problems = entry.problems("gcp", "europe-west4", [f"m{i}" for i in range(51)])
    assert [p.path for p in problems] == ["entrypoint.certificate"]
    assert "the models need 102" in problems[0].message


def test_alias_must_be_a_domain():
    with pytest.raises(ValueError):
        _entry(aliases=["Not A Domain"])


def _region_raw(edit: Callable[[dict], None]) -> dict:
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.us-east.yaml").read_text())
    raw = copy.deepcopy(doc["config"]["gpu-fleet:fleet"])
    edit(raw["entrypoint"])
    return raw


@pytest.mark.parametrize("edit,message", [
    (lambda e: e.update(allowedCidrs=[]), "entrypoint.allowedCidrs: empty: list the source ranges"),
    (lambda e: e.pop("allowedCidrs"), "entrypoint.allowedCidrs: required"),
])
def test_allowed_cidrs_are_explicit(edit, message):
    source = "stacks/Pulumi.us-east.yaml"
    with pytest.raises(ConfigError) as exc:
        parse_fleet(_region_raw(edit), source, REPO / "stacks")
    assert f"{source}: {message}" in str(exc.value)


def test_everyone_is_written_out():
    assert _entry().allowed_cidrs == [ipaddress.IPv4Network("0.0.0.0/0")]
    cfg = parse_fleet(_region_raw(lambda e: e.update(allowedCidrs=["203.0.113.0/24"])), "s.yaml", REPO / "stacks")
    assert cfg.entrypoint.allowed_cidrs == [ipaddress.IPv4Network("203.0.113.0/24")]


# --------------------------------------------------------------------------- latency labels


def test_reference_regions_latency_labels():
    us = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    eu = load_stack_file(REPO / "stacks" / "Pulumi.eu-west.yaml")
    assert latency_region(us.cloud, us.location) == "us-east-1"
    assert latency_region(eu.cloud, eu.location) == "eu-central-1"


def test_table_covers_europe_us_and_asia_with_real_aws_labels():
    for prefix in ("europe-", "us-", "asia-"):
        assert sum(r.startswith(prefix) for r in GCP_TO_AWS) >= 5, prefix
    for gcp_region, (_, aws_region, _, why) in GCP_TO_AWS.items():
        assert aws_region in AWS_REGIONS, gcp_region
        assert why, gcp_region


def test_table_labels_every_catalog_location():
    catalog = load_catalog()
    for cloud in ("aws", "gcp"):
        for region in catalog.regions(cloud):
            assert latency_region(cloud, region) is not None, region
    for gcp_region, (_, _, _, why) in GCP_TO_AWS.items():
        # The distance behind the choice, or the same metro.
        assert "km" in why or "same" in why, gcp_region


def test_unknown_regions_have_no_label():
    assert latency_region("gcp", "mars-north1") is None
    assert latency_region("aws", "us-north-9") is None
    assert latency_region("aws", "eu-west-1") == "eu-west-1"


def test_region_config_keeps_certificate_under_its_neutral_name():
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    assert isinstance(cfg, RegionConfig) and cfg.entrypoint.certificate == ARN
