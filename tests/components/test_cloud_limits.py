"""Cloud limits known before any API call (components/cloud_limits.py and its data file).

Two or more cases per class of issue 14: Kubernetes versions, root volume size, zone
counts, system machine types, GKE's control-plane range, ARN / hosted zone / bucket
formats, one entrypoint.domain per region, fields another cloud would use, and config
messages that must not suggest what a mandatory policy forbids.
"""

from __future__ import annotations

import copy
import datetime
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from gpu_fleet.components import cloud_limits, pins
from gpu_fleet.components.config import ConfigError, parse_fleet

REPO = Path(__file__).resolve().parents[2]
KEY = "gpu-fleet:fleet"


def _reference(stack: str) -> dict:
    return yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"][KEY]


US, EU = _reference("us-east"), _reference("eu-west")


def _problems(base: dict, edit: Callable[[dict], Any], source: str = "Pulumi.x.yaml") -> list[str]:
    raw = copy.deepcopy(base)
    edit(raw)
    try:
        parse_fleet(raw, source, REPO / "stacks")
    except ConfigError as e:
        return [line.removeprefix(f"{source}: ") for line in str(e).splitlines()]
    return []


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(last) if last.isdigit() else last] = value
    return edit


def test_reference_stacks_are_within_the_limits():
    assert _problems(US, lambda r: None) == [] and _problems(EU, lambda r: None) == []


# --------------------------------------------------------------------------- Kubernetes versions

READ_ON = datetime.date(2026, 12, 1)


@pytest.fixture
def on_read_day(monkeypatch):
    """Support dates are checked against the day the data was read, not the day the test runs."""
    monkeypatch.setattr(cloud_limits, "today", lambda: READ_ON)


@pytest.mark.parametrize("base,version,service", [(US, "1.27", "EKS"), (EU, "1.29", "GKE"), (US, "1.37", "EKS")])
def test_kubernetes_version_the_cloud_does_not_list(on_read_day, base, version, service):
    (line,) = _problems(base, _set("cluster.kubernetesVersion", version))
    assert line.startswith(f"cluster.kubernetesVersion: Kubernetes {version} is not in {service} standard support "
                           "as read on 2026-12-01")
    assert line.endswith("; use one of " + ", ".join(cloud_limits.kubernetes_versions(base["cloud"], READ_ON)))


@pytest.mark.parametrize("base,version,end", [(EU, "1.34", "2026-10-01"), (EU, "1.33", "2026-08-03")])
def test_kubernetes_version_past_its_end_of_standard_support(on_read_day, base, version, end):
    service = "EKS" if base["cloud"] == "aws" else "GKE"
    assert _problems(base, _set("cluster.kubernetesVersion", version)) == [
        f"cluster.kubernetesVersion: {service} standard support for Kubernetes {version} ended on {end} (today is "
        f"2026-12-01); use one of {', '.join(cloud_limits.kubernetes_versions(base['cloud'], READ_ON))}"]


def test_standard_support_ends_at_the_start_of_its_last_day(monkeypatch):
    assert "1.34" in cloud_limits.kubernetes_versions("aws", datetime.date(2026, 12, 1))
    assert "1.34" not in cloud_limits.kubernetes_versions("aws", datetime.date(2026, 12, 2))
    monkeypatch.setattr(cloud_limits, "today", lambda: datetime.date(2027, 4, 11))
    (line,) = _problems(EU, lambda r: None)
    assert line.startswith("cluster.kubernetesVersion: GKE standard support for Kubernetes 1.35 ended on 2027-04-11")


def _notice(base, version):
    raw = copy.deepcopy(base)
    _set("cluster.kubernetesVersion", version)(raw)
    return cloud_limits.kubernetes_support_notice(parse_fleet(raw, "Pulumi.x.yaml", REPO / "stacks"))


@pytest.mark.parametrize("day,version,warned", [
    (datetime.date(2026, 12, 1), "1.33", True),    # standard support ended 2026-07-29: extended, billed
    (datetime.date(2027, 3, 27), "1.35", True),    # the default's first day in extended support
    (datetime.date(2027, 3, 26), "1.35", False),   # its last day of standard support
])
def test_eks_version_in_extended_support_is_a_warning_not_an_error(monkeypatch, day, version, warned):
    monkeypatch.setattr(cloud_limits, "today", lambda: day)
    assert _problems(US, _set("cluster.kubernetesVersion", version)) == []
    notice = _notice(US, version)
    assert (notice is not None) == warned
    if warned:
        assert notice.startswith(f"cluster.kubernetesVersion: EKS standard support for Kubernetes {version} ended on")
        assert "extended support, billed extra per cluster hour" in notice


def test_eks_version_past_extended_support_is_an_error(monkeypatch):
    monkeypatch.setattr(cloud_limits, "today", lambda: datetime.date(2027, 7, 29))  # 1.33 + 365 days
    (line,) = _problems(US, _set("cluster.kubernetesVersion", "1.33"))
    assert line.startswith("cluster.kubernetesVersion: EKS standard support for Kubernetes 1.33 ended on 2026-07-29")


def test_gke_has_no_extended_support_notice(on_read_day):
    assert _notice(EU, "1.35") is None


def test_supported_versions_on_the_read_day():
    assert cloud_limits.kubernetes_versions("aws", READ_ON) == ["1.34", "1.35", "1.36"]
    assert cloud_limits.kubernetes_versions("gcp", READ_ON) == ["1.35", "1.36"]


def test_the_default_version_is_in_standard_support_on_both_clouds(on_read_day):
    for cloud in ("aws", "gcp"):
        assert pins.KUBERNETES.version in cloud_limits.kubernetes_versions(cloud, READ_ON), cloud
    assert _problems(US, lambda r: r["cluster"].pop("kubernetesVersion")) == []
    assert _problems(EU, _set("cluster.kubernetesVersion", "1.36")) == []


# --------------------------------------------------------------------------- root volumes

@pytest.mark.parametrize("path,field", [
    ("gpuPools.0.diskSizeGb", "gpuPools[0].diskSizeGb"),
    ("cluster.systemPool.diskSizeGb", "cluster.systemPool.diskSizeGb"),
])
def test_gp3_root_volume_over_16_tib(path, field):
    assert _problems(US, _set(path, 16385)) == [
        f"{field}: 16385 GB is above the gp3 root volume maximum of 16384 GiB (16 TiB)"]
    assert _problems(US, _set(path, 16384)) == []


# --------------------------------------------------------------------------- zones

def test_more_zones_than_the_region_has():
    assert _problems(US, _set("network.zoneCount", 6)) == []  # us-east-1 has six
    usw2 = copy.deepcopy(US)
    usw2["location"] = "us-west-2"
    usw2["entrypoint"]["certificate"] = usw2["entrypoint"]["certificate"].replace("us-east-1", "us-west-2")
    assert _problems(usw2, _set("network.zoneCount", 5)) == [
        "network.zoneCount: us-west-2 has 4 availability zones (us-west-2a, us-west-2b, us-west-2c, us-west-2d), not 5"]


def test_gke_zone_letter_that_does_not_exist():
    assert _problems(EU, _set("gpuPools.0.zones", ["europe-west4-b", "europe-west4-f"])) == [
        "gpuPools[0].zones[1]: 'europe-west4-f' is not a zone of europe-west4 (zones: europe-west4-a, europe-west4-b, "
        "europe-west4-c)"]


def test_offline_plan_sees_the_real_zone_count():
    from gpu_fleet import mock_outputs

    ctx = mock_outputs.Context(region="us-west-2", project=None, stack="s")
    assert mock_outputs._aws_zones({}, ctx)["names"] == ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]


# --------------------------------------------------------------------------- machine types

@pytest.mark.parametrize("base,typo,fix", [(US, "m7i.2xlarg", "m7i.2xlarge"), (EU, "n2-standard-7", "n2-standard-")])
def test_system_machine_type_typo_suggests_the_real_one(base, typo, fix):
    (line,) = _problems(base, _set("cluster.systemPool.machineType", typo))
    assert line.startswith(f"cluster.systemPool.machineType: {typo!r} is not ") and f"did you mean '{fix}" in line


def test_known_aws_system_types_exist_in_the_pinned_provider():
    from pulumi_aws.ec2 import InstanceType

    known = {t.value for t in InstanceType}
    assert set(cloud_limits.limits()["systemMachineTypes"]["aws"]) <= known


# --------------------------------------------------------------------------- GKE control-plane range

@pytest.mark.parametrize("cidr,prefix", [("172.16.0.0/24", 24), ("172.16.0.0/29", 29)])
def test_gke_master_range_must_be_a_28(cidr, prefix):
    assert _problems(EU, _set("cluster.masterCidr", cidr)) == [
        f"cluster.masterCidr: {cidr} is a /{prefix}; GKE's control-plane range must be a /28 (e.g. 172.16.0.0/28)"]


@pytest.mark.parametrize("cidr,other", [("10.50.0.16/28", "network.cidr 10.50.0.0/20"),
                                        ("10.56.0.0/28", "network.servicesCidr 10.56.0.0/20")])
def test_gke_master_range_overlapping_the_cluster_ranges(cidr, other):
    assert _problems(EU, _set("cluster.masterCidr", cidr)) == [
        f"cluster.masterCidr: {cidr} overlaps {other}; GKE needs the control-plane range apart from the node, pod and "
        "service ranges"]


# --------------------------------------------------------------------------- formats

@pytest.mark.parametrize("arn", ["arn:aws:iam::12345:role/admin", "arn:aws:sts::123456789012:assumed-role/a/b",
                                 "admin"])
def test_admin_principal_arn_of_the_wrong_form(arn):
    assert _problems(US, _set("cluster.adminPrincipalArns", [arn])) == [
        f"cluster.adminPrincipalArns[0]: {arn!r} is not an IAM role or user ARN (arn:aws:iam::<12-digit account>:"
        "role/<name> or :user/<name>)"]


def test_admin_principal_arns_of_the_right_form():
    arns = ["arn:aws:iam::123456789012:role/platform/admin", "arn:aws:iam::123456789012:user/alice@example.com"]
    assert _problems(US, _set("cluster.adminPrincipalArns", arns)) == []


@pytest.mark.parametrize("cert", ["arn:aws:acm:us-east-1:1234:certificate/abc",
                                  "arn:aws:iam::123456789012:server-certificate/x"])
def test_certificate_arn_of_the_wrong_form(cert):
    (line,) = _problems(US, _set("entrypoint.certificate", cert))
    assert line == f"entrypoint.certificate: {cert!r} is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:" \
                   "certificate/<id>)"


@pytest.fixture
def stacks(tmp_path) -> Path:
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _global_problems(stacks: Path, edit: Callable[[dict], Any]) -> list[str]:
    raw = copy.deepcopy(yaml.safe_load((stacks / "Pulumi.global.yaml").read_text())["config"][KEY])
    edit(raw)
    try:
        parse_fleet(raw, "g.yaml", stacks)
    except ConfigError as e:
        return [line.removeprefix("g.yaml: ") for line in str(e).splitlines()]
    return []


def _zone_id(value: str) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        raw["routing"]["dns"] = {"hostedZoneId": value}
    return edit


@pytest.mark.parametrize("zone_id,hint", [("/hostedzone/Z1D633PJN98FT9", " (the ID alone: Z1D633PJN98FT9)"),
                                          ("example.com", ""), ("Z" + "1" * 32, "")])
def test_hosted_zone_id_of_the_wrong_form(stacks, zone_id, hint):
    assert _global_problems(stacks, _zone_id(zone_id)) == [
        f"routing.dns.hostedZoneId: {zone_id!r} is not a Route 53 hosted zone ID like Z1D633PJN98FT9{hint}"]
    assert _global_problems(stacks, _zone_id("Z1D633PJN98FT9")) == []


@pytest.mark.parametrize("bucket,reason", [
    ("My_Logs", "S3 bucket names are 3-63 lowercase letters"),
    ("logs..accel", "no two adjacent dots"),
    ("192.168.5.4", "not IP addresses"),
    ("xn--logs", "reserves the prefix 'xn--'"),
    ("logs-s3alias", "reserves the suffix '-s3alias'"),
    ("ab", "3-63"),
])
def test_flow_logs_bucket_that_cannot_exist(bucket, reason):
    assert reason in (cloud_limits.bucket_name_problem(bucket) or "")


def test_flow_logs_bucket_is_checked_in_the_stack(stacks):
    def edit(raw: dict) -> None:
        raw["routing"]["anycast"] = {"flowLogsBucket": "Bad_Bucket"}
    (line,) = _global_problems(stacks, edit)
    assert line.startswith("routing.anycast.flowLogsBucket: 'Bad_Bucket': S3 bucket names are 3-63")
    assert cloud_limits.bucket_name_problem("acme-accelerator-logs.eu") is None


# --------------------------------------------------------------------------- one domain per region

def _same_domain(stacks: Path, domain: str) -> None:
    for stack in ("us-east", "eu-west"):
        path = stacks / f"Pulumi.{stack}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["config"][KEY]["entrypoint"]["domain"] = domain
        path.write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize("domain", ["regions.llm.example.com", "api.example.org"])
def test_two_regions_with_the_same_entrypoint_domain(stacks, domain):
    _same_domain(stacks, domain)
    assert f"regions[1]: eu-west and us-east both use entrypoint.domain {domain}: their health checks would probe " \
           "the same name, so failover could not tell them apart; give each region its own domain" in \
           _global_problems(stacks, lambda r: None)


# --------------------------------------------------------------------------- fields of the other cloud

@pytest.mark.parametrize("base,path,field,cloud", [
    (EU, "network.zoneCount", "network.zoneCount", "aws"),
    (EU, "cluster.adminPrincipalArns", "cluster.adminPrincipalArns", "aws"),
    (US, "cluster.releaseChannel", "cluster.releaseChannel", "gcp"),
    (US, "cluster.masterCidr", "cluster.masterCidr", "gcp"),
    (US, "network.podsCidr", "network.podsCidr", "gcp"),
])
def test_field_another_cloud_uses_is_an_error(base, path, field, cloud):
    value = {"network.zoneCount": 3, "cluster.adminPrincipalArns": ["arn:aws:iam::123456789012:role/a"],
             "cluster.releaseChannel": "STABLE", "cluster.masterCidr": "172.16.0.32/28",
             "network.podsCidr": "10.64.0.0/14"}[path]
    other = "gcp" if cloud == "aws" else "aws"
    assert _problems(base, _set(path, value)) == [f"{field}: only used on {cloud}; this stack is on {other}: remove it"]


def test_existing_network_fields_of_the_other_cloud_on_gke():
    existing = {"network": "n", "subnetwork": "s", "podsRangeName": "p", "servicesRangeName": "v", "vpcId": "vpc-1"}
    assert _problems(EU, _set("network.existing", existing)) == [
        "network.existing.vpcId: only used on aws; this stack is on gcp: remove it"]


# --------------------------------------------------------------------------- config and policies agree

def test_gcp_cache_message_does_not_suggest_a_basic_instance():
    (line,) = _problems(EU, _set("cache.automaticFailover", False))
    assert "replicas: 0" not in line and "Basic" not in line.split(";")[1]
    assert line.endswith("remove automaticFailover: false")
    # The fix it names passes the config, and keeps the replica the mandatory policy asks for.
    fixed = copy.deepcopy(EU)
    assert _problems(fixed, lambda r: r["cache"].pop("automaticFailover", None)) == []
    assert fixed["cache"]["replicas"] >= 1


def test_memorystore_size_message_suggests_a_size_not_fewer_replicas():
    (line,) = _problems(EU, _set("cache.memorySizeGb", 2))
    assert "0 replicas" not in line and line.endswith("set memorySizeGb: 5 or more")
