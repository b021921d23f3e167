"""Cloud limits known before any API call, checked against a stack's config.

The facts (supported Kubernetes versions, volume and zone limits, machine types) live in
``data/cloud_limits.json`` with their sources and the date they were read; the formats
below cite theirs. :mod:`gpu_fleet.components.config` runs :func:`region_problems` and
:func:`global_problems` after its own checks, so each mistake is one ``file: field:
message`` line before ``pulumi up`` reaches a cloud API.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .problem import Problem

if TYPE_CHECKING:  # types only: config runs these checks
    from .config import GlobalConfig, RegionConfig

DATA_FILE = Path(__file__).with_name("data") / "cloud_limits.json"

#: IAM principals an EKS access entry takes: roles and users (IAM CreateRole/CreateUser:
#: names of 1-64 ``[\w+=,.@-]``, optional ``/path/``).
IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
#: Route 53 hosted zone IDs: at most 32 characters (Route 53 API, HostedZone.Id); the
#: ``Z`` + uppercase letters and digits form is the observed one (unverified as a rule).
HOSTED_ZONE_ID = re.compile(r"^Z[0-9A-Z]{1,31}$")
#: S3 general purpose bucket names (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@lru_cache(maxsize=1)
def limits() -> dict[str, Any]:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def zones(cloud: str, region: str) -> Optional[list[str]]:
    """The zones of ``region`` we know (None: a region the data does not list)."""
    letters = limits()["zones"].get(cloud, {}).get(region)
    if letters is None:
        return None
    return [f"{region}{c}" if cloud == "aws" else f"{region}-{c}" for c in letters]


#: An ISO date in this variable replaces today in support-date checks: "does this stack still plan
#: on that day?", and a test suite that does not start failing when a calendar date passes.
TODAY_ENV = "GPU_FLEET_TODAY"


def today() -> datetime.date:
    """The day support dates are checked against (UTC, or ``$GPU_FLEET_TODAY``)."""
    fixed = os.environ.get(TODAY_ENV)
    return datetime.date.fromisoformat(fixed) if fixed else datetime.datetime.now(datetime.timezone.utc).date()


def _minor_key(version: str) -> tuple[int, ...]:
    return tuple(map(int, version.split(".")))


def standard_support_ends(cloud: str) -> dict[str, Optional[datetime.date]]:
    """Each listed minor version's last day of standard support (None: not read)."""
    ends = limits()["kubernetesVersions"][cloud]["standardSupportEnds"]
    return {v: datetime.date.fromisoformat(ends[v]) if ends[v] else None for v in sorted(ends, key=_minor_key)}


def kubernetes_versions(cloud: str, on: Optional[datetime.date] = None) -> list[str]:
    """The minor versions in standard support on ``on`` (default: :func:`today`), oldest first; standard
    support ends at the start of the listed day (EKS bills extended support from then on)."""
    day = on or today()
    return [v for v, end in standard_support_ends(cloud).items() if end is None or day < end]


def bucket_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be an S3 bucket (None when it can)."""
    if not _BUCKET.match(name):
        return "S3 bucket names are 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    if ".." in name:
        return "S3 bucket names have no two adjacent dots"
    try:
        ipaddress.IPv4Address(name)
        return "S3 bucket names are not IP addresses"
    except ValueError:
        pass
    for prefix in _BUCKET_PREFIXES:
        if name.startswith(prefix):
            return f"S3 reserves the prefix {prefix!r}"
    for suffix in _BUCKET_SUFFIXES:
        if name.endswith(suffix):
            return f"S3 reserves the suffix {suffix!r}"
    return None


def _unknown(value: str, known: list[str], what: str) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{value!r} is not {what}; {hint}known: {', '.join(known)} (a real one missing here goes into " \
           "components/data/cloud_limits.json with its source)"


def _set(model: Any, field: str) -> bool:
    return field in model.model_fields_set


#: Fields only one cloud uses, by the section they are in: (cloud, attribute, config path).
_ONE_CLOUD_FIELDS = [
    ("aws", "network", "zone_count", "network.zoneCount"),
    ("gcp", "network", "pods_cidr", "network.podsCidr"),
    ("gcp", "network", "services_cidr", "network.servicesCidr"),
    ("aws", "cluster", "admin_principal_arns", "cluster.adminPrincipalArns"),
    ("aws", "cluster", "private_access_cidrs", "cluster.privateAccessCidrs"),
    ("gcp", "cluster", "admin_accounts", "cluster.adminAccounts"),
    ("gcp", "cluster", "enable_apis", "cluster.enableApis"),
    ("gcp", "cluster", "release_channel", "cluster.releaseChannel"),
    ("gcp", "cluster", "master_cidr", "cluster.masterCidr"),
]
_EXISTING_FIELDS = {
    "aws": [("vpc_id", "vpcId"), ("private_subnet_ids", "privateSubnetIds"), ("public_subnet_ids", "publicSubnetIds")],
    "gcp": [("network", "network"), ("subnetwork", "subnetwork"), ("pods_range_name", "podsRangeName"),
            ("services_range_name", "servicesRangeName")],
}


def _other_cloud_fields(cfg: RegionConfig) -> list[Problem]:
    """Fields set in the stack file that this stack's cloud would ignore silently."""
    out = []
    for cloud, section, attr, path in _ONE_CLOUD_FIELDS:
        if cloud != cfg.cloud and _set(getattr(cfg, section), attr):
            out.append(Problem(path, f"only used on {cloud}; this stack is on {cfg.cloud}: remove it"))
    ex = cfg.network.existing
    if ex is not None:
        for cloud, fields in _EXISTING_FIELDS.items():
            out += [Problem(f"network.existing.{name}", f"only used on {cloud}; this stack is on {cfg.cloud}: remove it")
                    for attr, name in fields if cloud != cfg.cloud and _set(ex, attr)]
    return out


#: EKS: "Once a version is past the end of standard support date, it enters extended support for
#: the next 12 months ... at an additional cost per cluster hour", and clusters created through the
#: API have extended support enabled (docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html
#: and enable-extended-support.html, read 2026-12-01). GKE offers minor versions past standard
#: support only in the Extended channel (the release notes' current-versions table:
#: docs.cloud.google.com/kubernetes-engine/docs/release-notes), which the fleet does not use.
EKS_EXTENDED_SUPPORT_DAYS = 365


def _kubernetes_version(cfg: RegionConfig) -> list[Problem]:
    """A version the cloud will not create: unlisted, ended on GKE, or past EKS extended support."""
    data = limits()["kubernetesVersions"][cfg.cloud]
    day = today()
    supported = kubernetes_versions(cfg.cloud, day)
    version = cfg.cluster.kubernetes_version
    if version in supported or kubernetes_support_notice(cfg) is not None:
        return []
    service = "EKS" if cfg.cloud == "aws" else "GKE"
    end = standard_support_ends(cfg.cloud).get(version)
    fix = f"use one of {', '.join(supported)}" if supported else "refresh components/data/cloud_limits.json"
    if end is not None:
        why = f"{service} standard support for Kubernetes {version} ended on {end} (today is {day})"
    else:
        why = (f"Kubernetes {version} is not in {service} standard support as read on {data['read']} (a newer "
               "release goes into components/data/cloud_limits.json with its source)")
    return [Problem("cluster.kubernetesVersion", f"{why}; {fix}")]


def kubernetes_support_notice(cfg: RegionConfig) -> Optional[str]:
    """A plan warning for an EKS version in extended support (it works, at extra cost per
    cluster hour); None when the version is in standard support or not deployable at all."""
    end = standard_support_ends(cfg.cloud).get(cfg.cluster.kubernetes_version)
    day = today()
    if cfg.cloud != "aws" or end is None or day < end or day >= end + datetime.timedelta(EKS_EXTENDED_SUPPORT_DAYS):
        return None
    return (f"cluster.kubernetesVersion: EKS standard support for Kubernetes {cfg.cluster.kubernetes_version} "
            f"ended on {end}: the cluster runs in extended support, billed extra per cluster hour; use one of "
            f"{', '.join(kubernetes_versions(cfg.cloud, day))}")


def _volumes(cfg: RegionConfig) -> list[Problem]:
    biggest = limits()["rootVolumeMaxGb"].get(cfg.cloud)
    if biggest is None:
        return []
    sizes = [("cluster.systemPool.diskSizeGb", cfg.cluster.system_pool.disk_size_gb)]
    sizes += [(f"gpuPools[{i}].diskSizeGb", p.disk_size_gb) for i, p in enumerate(cfg.gpu_pools)]
    return [Problem(path, f"{size} GB is above the gp3 root volume maximum of {biggest} GiB (16 TiB)")
            for path, size in sizes if size > biggest]


def _zones(cfg: RegionConfig) -> list[Problem]:
    known = zones(cfg.cloud, cfg.location)
    if known is None:
        return []
    out = []
    if cfg.cloud == "aws" and cfg.network.existing is None and cfg.network.zone_count > len(known):
        out.append(Problem("network.zoneCount", f"{cfg.location} has {len(known)} availability zones "
                           f"({', '.join(known)}), not {cfg.network.zone_count}"))
    for i, pool in enumerate(cfg.gpu_pools):
        for j, zone in enumerate(pool.zones):
            # Zones of another region are reported by the config's own pool checks.
            if zone.startswith(cfg.location + "-") and zone not in known:
                out.append(Problem(f"gpuPools[{i}].zones[{j}]", f"{zone!r} is not a zone of {cfg.location} "
                                   f"(zones: {', '.join(known)})"))
    return out


def _machine_types(cfg: RegionConfig) -> list[Problem]:
    machine = cfg.cluster.system_pool.machine_type
    known = limits()["systemMachineTypes"][cfg.cloud]
    if machine is None or machine in known:
        return []
    kind = "an EC2 instance type" if cfg.cloud == "aws" else "a Compute Engine machine type"
    return [Problem("cluster.systemPool.machineType", _unknown(machine, known, f"{kind} for system nodes we know"))]


def _gke_master_range(cfg: RegionConfig) -> list[Problem]:
    if cfg.cloud != "gcp":
        return []
    master, prefix = cfg.cluster.master_cidr, limits()["gkeMasterCidrPrefix"]["value"]
    if master.prefixlen != prefix:
        return [Problem("cluster.masterCidr", f"{master} is a /{master.prefixlen}; GKE's control-plane range must be "
                        f"a /{prefix} (e.g. {master.network_address}/{prefix})")]
    if cfg.network.existing is not None:
        return []  # the existing network's ranges are not in the stack file
    ranges = {"network.cidr": cfg.network.cidr, "network.podsCidr": cfg.network.pods_cidr,
              "network.servicesCidr": cfg.network.services_cidr}
    return [Problem("cluster.masterCidr", f"{master} overlaps {name} {net}; GKE needs the control-plane range apart "
                    "from the node, pod and service ranges") for name, net in ranges.items() if master.overlaps(net)]


def _principals(cfg: RegionConfig) -> list[Problem]:
    if cfg.cloud != "aws":
        return []
    return [Problem(f"cluster.adminPrincipalArns[{i}]", f"{arn!r} is not an IAM role or user ARN "
                    "(arn:aws:iam::<12-digit account>:role/<name> or :user/<name>)")
            for i, arn in enumerate(cfg.cluster.admin_principal_arns) if not IAM_PRINCIPAL_ARN.match(arn)]


def region_problems(cfg: RegionConfig) -> list[Problem]:
    """What a cloud would reject (or silently ignore) in a region stack's config."""
    return [p for check in (_kubernetes_version, _volumes, _zones, _machine_types, _gke_master_range, _principals,
                            _other_cloud_fields) for p in check(cfg)]


def global_problems(cfg: GlobalConfig, regions: dict[int, RegionConfig]) -> list[Problem]:
    """The global stack's formats, and what its region stacks must not share."""
    out = []
    zone_id = cfg.routing.dns.hosted_zone_id
    if zone_id is not None and not HOSTED_ZONE_ID.match(zone_id):
        bare = zone_id.rsplit("/", 1)[-1]
        hint = f" (the ID alone: {bare})" if zone_id.startswith("/hostedzone/") else ""
        out.append(Problem("routing.dns.hostedZoneId", f"{zone_id!r} is not a Route 53 hosted zone ID like "
                           f"Z1D633PJN98FT9{hint}"))
    bucket = cfg.routing.anycast.flow_logs_bucket
    if bucket is not None:
        reason = bucket_name_problem(bucket)
        if reason:
            out.append(Problem("routing.anycast.flowLogsBucket", f"{bucket!r}: {reason}"))
    seen: dict[str, str] = {}
    for i, region in sorted(regions.items()):
        name, domain = cfg.regions[i], region.entrypoint.domain
        if domain in seen:
            out.append(Problem(f"regions[{i}]", f"{name} and {seen[domain]} both use entrypoint.domain {domain}: their "
                               "health checks would probe the same name, so failover could not tell them apart; "
                               "give each region its own domain"))
        else:
            seen[domain] = name
    return out
