"""Stack configuration: pydantic models, semantic checks and readable errors.

Every stack keeps its settings under one structured key, ``gpu-fleet:fleet``, in
``stacks/Pulumi.<stack>.yaml``. The program parses it with :func:`parse_fleet` before it
creates any resource, so a typo or an impossible GPU shape stops the run with one line per
problem naming the stack file and the field, e.g.
``stacks/Pulumi.eu-west.yaml: gpuPools[0].gpusPerNode: ...``.

Two phases: pydantic checks the structure (types, ranges, unknown keys), then the semantic
checks below look across fields (catalog look-ups, references between sections). Secrets
(the Hugging Face token, the API key) are separate secret config values, never in here.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import cache_settings, cache_sizing, cloud_limits, pins, sizing, yaml_reader
from .capacity_tiers import COMPUTE_CLASS_MIN_MINOR, LONGEST_TIER_SUFFIX, uses_compute_class
from .contract import NON_PRODUCTION
from .gpu_catalog import CatalogError, Cloud, GpuKind, Offering, load_catalog
from .latency_regions import latency_region
from .problem import Problem
from .subnets import subnet_layout

PROJECT = "gpu-fleet"
CONFIG_KEY = "fleet"
FULL_CONFIG_KEY = f"{PROJECT}:{CONFIG_KEY}"
#: Secret config values each kind of stack needs (``pulumi config set --secret gpu-fleet:<key>``).
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "region": ("huggingFaceToken", "apiKey"),
    "global": (),
}
STACKS_DIR = "stacks"

#: An IAM role or user ARN (an access entry takes the role, not an STS session of it).
ACCOUNT_EMAIL = r"^[^@\s:]+@[a-z0-9.-]+\.[a-z]+$"

DnsLabel = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=40)]


class _Model(BaseModel):
    """Base for every config section: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


# --------------------------------------------------------------------------- region


class ExistingNetwork(_Model):
    """An existing network to deploy into instead of creating one.

    AWS: ``vpcId``, ``privateSubnetIds`` (nodes, cache) and ``publicSubnetIds`` (load
    balancers). GCP: ``network``, ``subnetwork`` and the names of its secondary ranges
    for pods and services.
    """

    vpc_id: Optional[str] = None
    private_subnet_ids: list[str] = []
    public_subnet_ids: list[str] = []
    network: Optional[str] = None
    subnetwork: Optional[str] = None
    pods_range_name: Optional[str] = None
    services_range_name: Optional[str] = None


class NetworkConfig(_Model):
    """The region's network. Defaults suit a new, dedicated network."""

    #: AWS: the VPC CIDR. GCP: the subnetwork's primary (node) range.
    cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.40.0.0/16")
    #: GCP only: secondary ranges for pods and services (VPC-native cluster).
    pods_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.64.0.0/14")
    services_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.68.0.0/20")
    #: AWS only: availability zones to spread subnets over (EKS needs two or more).
    zone_count: int = Field(3, ge=2, le=6)
    existing: Optional[ExistingNetwork] = None


class SystemPoolConfig(_Model):
    """CPU nodes for cluster services (monitoring, metrics adapter, GPU operator)."""

    #: Defaults: ``m7i.2xlarge`` on AWS, ``n2-standard-8`` on GCP.
    machine_type: Optional[str] = None
    min_nodes: int = Field(2, ge=1)
    max_nodes: int = Field(4, ge=1)
    disk_size_gb: int = Field(100, ge=50)


class ClusterConfig(_Model):
    """Cluster-wide settings."""

    #: Kubernetes minor version, pinned (EKS ``version``; GKE minimum master version).
    kubernetes_version: str = Field(pins.KUBERNETES.version, pattern=r"^1\.\d+$")
    #: GKE release channel.
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    #: The API endpoint is private; these CIDRs may reach it publicly (empty: none).
    public_access_cidrs: list[ipaddress.IPv4Network] = []
    #: EKS: networks that reach the private endpoint from inside the VPC or over a peering or
    #: VPN (self-hosted CI runners, an office VPN): the cluster security group admits 443 from
    #: them. Without a rule, EKS's cluster security group admits only its own members.
    private_access_cidrs: list[ipaddress.IPv4Network] = []
    #: GKE: the control plane's private range.
    master_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("172.16.0.32/28")
    #: EKS: the IAM roles and users given cluster-admin access entries (the CI deploy and
    #: preview roles, named admins). Nothing is derived from the identity running Pulumi, so a
    #: preview or an ``up`` by anyone else changes no access entry.
    #: Their form (role or user ARNs, never an STS session) is checked in gpu_fleet.components.cloud_limits.
    admin_principal_arns: list[str] = []
    #: GKE: Google accounts and service accounts (emails) bound to ``cluster-admin`` by RBAC,
    #: beside whoever holds ``roles/container.admin`` in the project through IAM.
    admin_accounts: list[Annotated[str, Field(pattern=ACCOUNT_EMAIL)]] = []
    #: GKE: enable the project services the region needs (never disabled on destroy).
    enable_apis: bool = False
    system_pool: SystemPoolConfig = SystemPoolConfig()

    @field_validator("public_access_cidrs")
    @classmethod
    def _no_world(cls, v: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
        if any(n.prefixlen == 0 for n in v):
            raise ValueError("0.0.0.0/0 would make the API endpoint public to everyone")
        return v


CapacityKind = Literal["reserved", "on-demand", "spot"]


class GpuPoolConfig(_Model):
    """One GPU node pool."""

    name: DnsLabel
    gpu: GpuKind
    gpus_per_node: int = Field(ge=1, description="GPUs per node; must match a catalog shape")
    #: Picks between shapes with the same GPU and count (GCP a3-highgpu-8g vs a3-megagpu-8g).
    machine_type: Optional[str] = None
    #: GPU nodes kept warm even with no model asking for them (on EKS by placeholder pods).
    min_nodes: int = Field(0, ge=0)
    max_nodes: int = Field(ge=1)
    #: Capacity in order of preference, each tried when the one before has none:
    #: ``reserved`` (the ``reservations`` below), ``on-demand``, ``spot``.
    capacity: list[CapacityKind] = Field(default_factory=lambda: ["on-demand"], min_length=1)
    #: AWS: capacity reservation IDs (``cr-...``: On-Demand Capacity Reservations and
    #: Capacity Blocks). GCP: reservation names.
    reservations: list[str] = []
    #: Seconds a new GPU node may take to arrive (launch, boot, driver) before a model
    #: waiting for it counts as failed; a shortage longer than this fails only that model.
    provisioning_seconds: int = Field(900, ge=60)
    #: vLLM images are 10+ GB and model weights may be cached on the node.
    disk_size_gb: int = Field(500, ge=200)
    #: GCP node locations (zones of the region); default: every zone offering the shape.
    zones: list[str] = []
    #: Overrides the catalog's on-demand price in cost figures.
    hourly_price_usd: Optional[float] = Field(None, gt=0)


class ScalingPolicy(_Model):
    """An HPA rate limit: at most ``value`` pods (or percent) per ``periodSeconds``."""

    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class ScalingRules(_Model):
    """One direction of the HPA ``behavior``."""

    stabilization_window_seconds: int = Field(ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicy] = Field(min_length=1)


class ScaleToZeroConfig(_Model):
    """KEDA's scale-to-zero settings of one model (``engine: keda`` with ``minReplicas: 0``)."""

    #: Seconds with both signals at or below their activation thresholds before KEDA scales
    #: the last replica away (the ScaledObject's ``cooldownPeriod``).
    idle_seconds: int = Field(1800, ge=60, le=86400)
    #: The model counts as active while its mean GPU utilisation per replica is above this
    #: (percent) ...
    activation_gpu_utilization: int = Field(5, ge=0, le=100)
    #: ... or more than this many requests wait in its queue.
    activation_pending_requests: int = Field(0, ge=0)


#: Named autoscaling presets, in stack-file keys. ``lean`` was found by ``gpu-fleet tune``
#: over the four built-in traces for us-east's Llama-3.1-70B (TP4 on H100): at most 0.98x
#: the oracle's GPU-hours on each (the seed: 2.09x under the 5x spike), inside every
#: mandatory HPA policy. It caps ``maxReplicas`` at 8, which stops the queue metric from
#: asking for replicas that would arrive after the peak; another model or pool may need
#: another cap (run ``gpu-fleet tune``).
AUTOSCALING_PRESETS: dict[str, dict[str, Any]] = {
    "lean": {
        "minReplicas": 2,
        "maxReplicas": 8,
        "gpuUtilizationTarget": 80,
        "pendingRequestsTarget": 10,
        "scaleUp": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}]},
        "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
    },
}


class AutoscalingConfig(_Model):
    """The autoscaling of one model. Defaults are the seed's HPA exactly; ``preset`` names a
    set of values from :data:`AUTOSCALING_PRESETS` that keys given beside it override."""

    preset: Optional[Literal["lean"]] = None

    #: ``hpa``: an autoscaling/v2 HPA on prometheus-adapter's External metrics (the seed's).
    #: ``keda``: a KEDA ScaledObject on the same two signals and the same behaviour, which
    #: may scale a model of a non-production stack to zero (``minReplicas: 0``). One engine
    #: per stack: the cluster's External metrics API is served by one of the two.
    engine: Literal["hpa", "keda"] = "hpa"
    #: 0 only with ``engine: keda`` in a stack with ``environment: non-production``.
    min_replicas: int = Field(2, ge=0)
    max_replicas: int = Field(20, ge=1)
    #: External metric ``dcgm_gpu_utilization``, AverageValue target in percent.
    gpu_utilization_target: int = Field(75, ge=1, le=100)
    #: External metric ``llm_pending_requests``, AverageValue target in requests.
    pending_requests_target: int = Field(10, ge=1)
    scale_up: ScalingRules = ScalingRules(
        stabilization_window_seconds=60,
        policies=[ScalingPolicy(type="Pods", value=2, period_seconds=60)],
    )
    scale_down: ScalingRules = ScalingRules(
        stabilization_window_seconds=300,
        policies=[ScalingPolicy(type="Pods", value=1, period_seconds=120)],
    )
    #: Idle period and activation thresholds of KEDA's scale to zero.
    scale_to_zero: ScaleToZeroConfig = ScaleToZeroConfig()

    @model_validator(mode="before")
    @classmethod
    def _resolve_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") not in AUTOSCALING_PRESETS:
            return data
        given = {to_camel(k) for k in data}
        return {**{k: v for k, v in AUTOSCALING_PRESETS[data["preset"]].items() if k not in given}, **data}


class ModelArchitecture(_Model):
    """Architecture numbers for a model the built-in model catalog does not know."""

    parameters_billion: float = Field(gt=0)
    layers: int = Field(ge=1)
    attention_heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)


class LmcacheConfig(_Model):
    """KV-cache offload to the regional Redis through LMCache (off by default)."""

    enabled: bool = False
    #: LMCache's vLLM image (vLLM with LMCache installed), pinned.
    image: str = pins.LMCACHE_VLLM.image
    #: Tokens per KV chunk stored in Redis.
    chunk_size: int = Field(256, ge=16)
    #: Host-memory buffer for KV offload, in GB.
    local_cpu_gb: float = Field(5.0, ge=0)


VLLM_IMAGE = pins.VLLM.image
_UNPINNED_REVISIONS = {"main", "master", "latest", "head"}


class ModelConfig(_Model):
    """One served model (a vLLM Deployment with its Service, PDB and HPA)."""

    name: DnsLabel
    #: Hugging Face model id, ``org/name``.
    model_id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    #: Pinned Hugging Face revision (commit SHA or tag), never a moving branch.
    revision: str = Field(min_length=1)
    #: Name of the GPU pool that runs it.
    pool: str
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(8192, ge=256)
    dtype: Literal["auto", "bfloat16", "float16"] = "bfloat16"
    quantization: Optional[Literal["fp8", "awq", "gptq"]] = None
    gpu_memory_utilization: float = Field(0.9, gt=0.3, le=0.98)
    #: Required when ``modelId`` is not in the built-in model catalog.
    architecture: Optional[ModelArchitecture] = None
    image: str = VLLM_IMAGE
    extra_args: list[str] = []
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    lmcache: LmcacheConfig = LmcacheConfig()

    @field_validator("revision")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.lower() in _UNPINNED_REVISIONS:
            raise ValueError(f"{v!r} is a moving branch; pin a commit SHA or tag")
        return v


class CacheConfig(_Model):
    """The regional Redis cache (ElastiCache on AWS, Memorystore on GCP)."""

    enabled: bool = True
    #: AWS: ``redis`` (Redis OSS) or ``valkey``. GCP Memorystore is Redis.
    engine: Literal["redis", "valkey"] = "valkey"
    #: Pinned major.minor; defaults: valkey 8.0 / redis 7.1 on AWS, 7.2 on GCP.
    engine_version: Optional[str] = Field(None, pattern=r"^\d+\.\d+$")
    #: AWS node type (``cache.r7g.large`` by default).
    node_type: Optional[str] = None
    #: GCP memory size in GB (5 by default).
    memory_size_gb: Optional[int] = Field(None, ge=1)
    #: Read replicas beside the primary.
    replicas: int = Field(1, ge=0, le=5)
    automatic_failover: bool = True
    eviction_policy: Literal[
        "allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu", "allkeys-random",
        "volatile-random", "volatile-ttl", "noeviction",
    ] = "allkeys-lru"
    snapshot_retention_days: int = Field(7, ge=0, le=35)
    #: ``ddd:hh:mm-ddd:hh:mm`` in UTC.
    maintenance_window: str = Field(
        "sun:05:00-sun:06:00", pattern=r"^(mon|tue|wed|thu|fri|sat|sun):\d\d:\d\d-(mon|tue|wed|thu|fri|sat|sun):\d\d:\d\d$"
    )
    #: AWS only: ``hh:mm-hh:mm`` UTC window in which the daily snapshot starts (at least an
    #: hour, apart from the maintenance window). Memorystore snapshots every six hours.
    snapshot_window: str = Field("03:00-04:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$")


class GatewayConfig(_Model):
    """The OpenAI-compatible gateway (LiteLLM proxy) beside each vLLM server, with the
    regional cache as its shared response cache (:mod:`gpu_fleet.components.gateway`)."""

    #: Off: the load balancer sends ``/v1`` straight to vLLM and nothing uses the cache
    #: unless a model turns LMCache on.
    enabled: bool = True
    #: LiteLLM's ``cache_params.mode``: ``default_on`` answers every identical request
    #: (same model, messages and sampling parameters) from the cache; ``default_off`` only
    #: requests that ask for it (``"cache": {"use-cache": true}``).
    cache_mode: Literal["default_on", "default_off"] = "default_on"
    #: How long a cached answer is served (LiteLLM ``cache_params.ttl``).
    cache_ttl_seconds: int = Field(600, ge=1, le=7 * 24 * 3600)


class EntrypointConfig(_Model):
    """The regional entry point: a TLS load balancer in front of the models.

    Each model is served at ``<model>.<domain>`` and at ``<model>.<alias>`` for every
    alias; the load balancer picks the model's Service by hostname.
    """

    #: The region's DNS name; each model is served at ``<model>.<domain>``.
    domain: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$")
    #: More names the models answer to, ``<model>.<alias>``: the global stack's domain
    #: (the name clients use), so TLS and the Host rule match when traffic fails over here.
    aliases: list[Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$")]] = []
    #: The certificate the load balancer presents; it must cover ``*.<domain>`` and
    #: ``*.<alias>`` for each alias. AWS (required): an ACM certificate ARN in the
    #: region's own location. GCP: the name of a Compute Engine SSL certificate in the
    #: project (pre-shared); empty: a Google-managed certificate for the model hostnames.
    certificate: Optional[str] = None
    #: Source ranges allowed to reach the load balancer, required and never empty: the
    #: world is ``0.0.0.0/0`` written out. Restricted ranges get the global routing's
    #: health checkers added automatically (:mod:`gpu_fleet.components.entrypoint`).
    allowed_cidrs: list[ipaddress.IPv4Network]

    @field_validator("allowed_cidrs")
    @classmethod
    def _explicit_sources(cls, v: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
        # An empty list would render an empty ALB inbound-cidrs (unverified: probably the
        # controller's 0.0.0.0/0 default) but a Cloud Armor policy denying everyone.
        if not v:
            raise ValueError("empty: list the source ranges that may reach the models, or write "
                             "['0.0.0.0/0'] for everyone")
        return v

    def problems(self, cloud: str, location: str, models: list[str]) -> list["Problem"]:
        """What is wrong with this section for a region on ``cloud`` in ``location``
        serving ``models`` (field paths start with ``entrypoint.``)."""
        out: list[Problem] = []
        if self.domain in self.aliases:
            out.append(Problem("entrypoint.aliases", f"{self.domain} is the domain itself"))
        if len(set(self.aliases)) != len(self.aliases):
            out.append(Problem("entrypoint.aliases", "an alias is listed twice"))
        cert = self.certificate
        if cloud == "aws":
            arn = re.match(r"^arn:aws(-[a-z]+)*:acm:([a-z0-9-]+):\d{12}:certificate/[-a-f0-9]+$", cert or "")
            if not cert:
                out.append(Problem("entrypoint.certificate", "required on aws: the ACM certificate ARN the "
                                   "load balancer presents"))
            elif arn is None:
                out.append(Problem("entrypoint.certificate", f"{cert!r} is not an ACM certificate ARN "
                                   "(arn:aws:acm:<region>:<account>:certificate/<id>)"))
            elif arn.group(2) != location:
                out.append(Problem("entrypoint.certificate", f"the certificate is in {arn.group(2)}; an ALB in "
                                   f"{location} needs an ACM certificate from {location}"))
        elif cert is not None and not re.match(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", cert):
            out.append(Problem("entrypoint.certificate", f"{cert!r} is not a Compute Engine SSL certificate "
                               "name (on gcp: the pre-shared certificate's name)"))
        elif cert is None:
            hostnames = len(models) * (1 + len(self.aliases))
            if hostnames > MANAGED_CERTIFICATE_MAX_DOMAINS:
                out.append(Problem("entrypoint.certificate", f"a Google-managed certificate covers at most "
                                   f"{MANAGED_CERTIFICATE_MAX_DOMAINS} names; the models need {hostnames}: give "
                                   "a pre-shared certificate with wildcards"))
        return out


#: Google-managed certificates (GKE ``ManagedCertificate``) cover at most this many names.
MANAGED_CERTIFICATE_MAX_DOMAINS = 100
#: The API server refuses an object whose annotations, keys and values together, exceed this
#: many bytes (kubernetes/apimachinery@v0.33.0, the published staging copy of
#: kubernetes/kubernetes@v1.33.0, pkg/api/validation/objectmeta.go: TotalAnnotationSizeLimitB
#: = 256 * (1 << 10), compared with the sum of len(key) + len(value) in ValidateAnnotationsSize).
KUBERNETES_ANNOTATIONS_MAX_BYTES = 256 * 1024
#: Room kept for the AWS Ingress annotations that do not come from ``allowedCidrs`` and
#: ``certificate`` (about 1 KiB; tests hold ``gpu_fleet.components.entrypoint.alb_annotations`` to it).
INGRESS_OTHER_ANNOTATIONS_BYTES = 4 * 1024


def ingress_annotation_problems(entry: EntrypointConfig, cloud: str) -> list[Problem]:
    """The AWS Ingress carries ``allowedCidrs`` (comma-separated) and the certificate ARN in
    its annotations; past Kubernetes' limit the API server would refuse it at pulumi up.
    (On GCP they go to Cloud Armor and a certificate name, not into annotations.)"""
    if cloud != "aws":
        return []
    budget = KUBERNETES_ANNOTATIONS_MAX_BYTES - INGRESS_OTHER_ANNOTATIONS_BYTES
    cidrs = len(",".join(str(c) for c in entry.allowed_cidrs))
    certificate = len((entry.certificate or "").encode())
    if cidrs + certificate <= budget:
        return []
    limit = (f"the Ingress's annotations, which Kubernetes limits to {KUBERNETES_ANNOTATIONS_MAX_BYTES:,} bytes "
             f"in all ({budget:,} for the ranges and the certificate together)")
    if cidrs >= certificate:
        return [Problem("entrypoint.allowedCidrs", f"{len(entry.allowed_cidrs):,} ranges take {cidrs:,} bytes of "
                        f"{limit}; merge them into fewer, wider ranges")]
    return [Problem("entrypoint.certificate", f"{certificate:,} bytes is no ACM certificate ARN and too long for {limit}")]


class AlertsConfig(_Model):
    """Alert thresholds. Defaults follow the seed's best-practice table."""

    #: Queue depth alert: more than this many pending requests ...
    pending_requests_threshold: int = Field(20, ge=1)
    #: ... for longer than this many minutes.
    pending_requests_for_minutes: int = Field(2, ge=1)
    #: Compare the threshold with the waiting requests per ready replica (true: the same
    #: unit as the HPA's per-pod target) or with the Deployment's total (false).
    pending_requests_per_replica: bool = True
    gpu_saturation_percent: int = Field(95, ge=1, le=100)
    gpu_saturation_for_minutes: int = Field(10, ge=1)


class RegionConfig(_Model):
    """A region stack: one cluster with GPU pools, models, a cache and an entry point."""

    #: Set once :func:`check_region` passed (a stack file's config, or one built in code).
    _checked: bool = PrivateAttr(default=False)

    kind: Literal["region"]
    #: ``non-production`` allows models to scale to zero (KEDA, ``minReplicas: 0``); the
    #: policy pack refuses zero anywhere else.
    environment: Literal["production", "non-production"] = "production"
    cloud: Cloud
    #: AWS region (``us-east-1``) or GCP region (``europe-west4``).
    location: str
    #: GCP project ID (required on GCP).
    project: Optional[str] = None
    #: Namespace the models, their secrets and the cache wiring live in.
    namespace: DnsLabel = "llm-serving"
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    gpu_pools: list[GpuPoolConfig] = Field(min_length=1)
    models: list[ModelConfig] = []
    cache: CacheConfig = CacheConfig()
    gateway: GatewayConfig = GatewayConfig()
    entrypoint: EntrypointConfig
    alerts: AlertsConfig = AlertsConfig()


# --------------------------------------------------------------------------- global

#: Health check intervals Route 53 accepts, and its failure thresholds.
ROUTE53_INTERVALS = (10, 30)
ROUTE53_THRESHOLDS = range(1, 11)
#: Endpoint group health check intervals Global Accelerator accepts, and its thresholds.
ACCELERATOR_INTERVALS = (10, 30)
ACCELERATOR_THRESHOLDS = range(1, 11)
#: Global Accelerator quotas, not adjustable: ALB endpoints per endpoint group, endpoint
#: groups per accelerator (docs.aws.amazon.com/global-accelerator/latest/dg/limits-global-accelerator.html).
ACCELERATOR_ALBS_PER_ENDPOINT_GROUP = 10
ACCELERATOR_ENDPOINT_GROUPS = 42
#: Below the global domain, the names of the weighted record sets behind shared latency labels.
WEIGHTED_SUBDOMAIN = "latency"
#: Where Route 53 health checkers run (a health check may name three or more of them).
Route53CheckerRegion = Literal[
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2",
    "ap-northeast-1", "sa-east-1",
]


class DnsRoutingConfig(_Model):
    """Route 53 latency records with health checks (works across clouds).

    The hosted zone is used by both routing modes: in anycast mode it holds the names
    that point at the accelerator.
    """

    #: The existing hosted zone, by ID or by name (one of the two).
    hosted_zone_id: Optional[str] = None
    hosted_zone_name: Optional[str] = None
    #: Create (and own) the zone named ``hostedZoneName`` instead of looking it up.
    create_hosted_zone: bool = False
    #: Seconds between health checks: Route 53 accepts 10 or 30.
    health_check_interval_seconds: int = 10
    #: Consecutive failures before unhealthy: Route 53 accepts 1 to 10.
    failure_threshold: int = 2
    #: TTL of the latency records; resolvers may cache this long after failover.
    ttl_seconds: int = Field(10, ge=0, le=86400)
    #: Allowance for Route 53 to act on a health change (undocumented by AWS).
    propagation_allowance_seconds: int = Field(10, ge=0)
    #: Route 53 checker regions to check from (three or more); empty: all of them.
    health_check_regions: list[Route53CheckerRegion] = []
    #: Region stack to Route 53 weight (0-255, default 1), for regions that share a latency
    #: label: they split that label's clients in proportion. Weight 0 is a standby, answered
    #: only when every non-zero record is unhealthy ("How Amazon Route 53 chooses records when
    #: health checking is configured").
    weights: dict[str, Annotated[int, Field(ge=0, le=255)]] = {}

    def weight(self, stack: str) -> int:
        """The weighted record weight of region stack ``stack``."""
        return self.weights.get(stack, 1)


class AnycastRoutingConfig(_Model):
    """AWS Global Accelerator in front of the regions' load balancers (AWS-only fleets).

    The endpoints are ALBs, whose health Global Accelerator takes from the ALB's own
    target health checks; the endpoint-group settings below bound how fast the
    accelerator reacts (interval) and apply as such to EC2 and Elastic IP endpoints only.
    """

    #: Endpoint group health check interval: Global Accelerator accepts 10 or 30.
    health_check_interval_seconds: int = 10
    #: Endpoint group threshold: Global Accelerator accepts 1 to 10.
    threshold_count: int = 3
    #: ``SOURCE_IP`` keeps a client on one region (five-tuple hashing otherwise).
    client_affinity: Literal["NONE", "SOURCE_IP"] = "NONE"
    #: S3 bucket for the accelerator's flow logs; empty: no flow logs.
    flow_logs_bucket: Optional[str] = None
    flow_logs_prefix: str = "global-accelerator/"


class RoutingConfig(_Model):
    """How clients reach the nearest healthy region."""

    #: ``dns``: Route 53 latency records with health checks (any clouds). ``anycast``:
    #: AWS Global Accelerator (every region on AWS).
    mode: Literal["dns", "anycast"] = "dns"
    dns: DnsRoutingConfig = DnsRoutingConfig()
    anycast: AnycastRoutingConfig = AnycastRoutingConfig()
    #: The seed's target: detect and switch in under this many seconds.
    failover_target_seconds: int = Field(30, ge=1)


class GlobalConfig(_Model):
    """The global stack: one name in front of the region stacks."""

    kind: Literal["global"]
    #: Pulumi organization owning the region stacks (for ``StackReference``).
    organization: str = Field(pattern=r"^[\w.-]+$")
    #: Region stack names (each has ``stacks/Pulumi.<name>.yaml``).
    regions: list[str] = Field(min_length=1)
    #: The single name clients use (the fleet's domain, e.g. ``llm.example.com``).
    domain: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$")
    routing: RoutingConfig = RoutingConfig()


FleetConfig = Union[RegionConfig, GlobalConfig]


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """Invalid stack configuration; ``str()`` gives one line per problem."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p.path}: {p.message}" for p in problems))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        name = yaml_reader.key_name(str(part))
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out or CONFIG_KEY


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The camelCase keys valid at ``loc`` (its last part is the unknown key)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        ann = field.annotation
        for candidate in (ann, *getattr(ann, "__args__", ())):
            inner = getattr(candidate, "__args__", (candidate,))
            found = next((c for c in (candidate, *inner) if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found is not None:
                model = found
                break
        else:
            return []
    return [f.alias for f in model.model_fields.values() if f.alias]


def _problems(err: ValidationError, model: type[BaseModel]) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            known = _known_keys(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key{hint} (valid keys: {', '.join(known)})"
        elif e["type"] == "missing":
            msg = "required"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        out.append(Problem(_path(loc), msg))
    return out


# --------------------------------------------------------------------------- semantic checks

_AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")


def pool_offering(cfg: RegionConfig, pool: GpuPoolConfig) -> Offering:
    """The catalog offering a pool runs on (the config has been validated)."""
    return load_catalog().select(cfg.cloud, cfg.location, pool.gpu, pool.gpus_per_node, pool.machine_type)


def _check_location(cfg: RegionConfig) -> list[Problem]:
    pattern = _AWS_REGION if cfg.cloud == "aws" else _GCP_REGION
    problems = []
    if not pattern.match(cfg.location):
        example = "us-east-1" if cfg.cloud == "aws" else "europe-west4"
        problems.append(Problem("location", f"{cfg.location!r} is not a {cfg.cloud} region name (like {example})"))
    if cfg.cloud == "gcp" and not cfg.project:
        problems.append(Problem("project", "required on gcp (the GCP project ID)"))
    if cfg.cloud == "aws" and cfg.project:
        problems.append(Problem("project", "only used on gcp"))
    return problems


def _check_network(cfg: RegionConfig) -> list[Problem]:
    ex = cfg.network.existing
    if ex is None:
        if cfg.cloud == "aws":
            try:
                subnet_layout(cfg.network.cidr, cfg.network.zone_count)
            except ValueError as e:
                return [Problem("network.cidr", str(e))]
        if cfg.cloud == "gcp":
            ranges = {"cidr": cfg.network.cidr, "podsCidr": cfg.network.pods_cidr, "servicesCidr": cfg.network.services_cidr}
            names = list(ranges)
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    if ranges[a].overlaps(ranges[b]):
                        return [Problem(f"network.{b}", f"{ranges[b]} overlaps network.{a} {ranges[a]}")]
        return []
    need = (
        {"vpcId": ex.vpc_id, "privateSubnetIds": ex.private_subnet_ids, "publicSubnetIds": ex.public_subnet_ids}
        if cfg.cloud == "aws"
        else {"network": ex.network, "subnetwork": ex.subnetwork, "podsRangeName": ex.pods_range_name,
              "servicesRangeName": ex.services_range_name}
    )
    problems = [Problem(f"network.existing.{k}", f"required for an existing {cfg.cloud} network") for k, v in need.items() if not v]
    if cfg.cloud == "aws" and len(ex.private_subnet_ids) == 1:
        problems.append(Problem("network.existing.privateSubnetIds", "EKS needs subnets in at least two availability zones"))
    return problems


def _check_pools(cfg: RegionConfig) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, pool in enumerate(cfg.gpu_pools):
        at = f"gpuPools[{i}]"
        if pool.name in seen or pool.name == "system":
            problems.append(Problem(f"{at}.name", f"{pool.name!r} is used twice or reserved (system)"))
        seen.add(pool.name)
        try:
            pool_offering(cfg, pool)
        except CatalogError as e:
            # An unknown region is the location's fault, reported once below.
            if e.field != "location":
                problems.append(Problem(f"{at}.{e.field}", str(e)))
            elif i == 0:
                problems.append(Problem("location", str(e)))
        if pool.min_nodes > pool.max_nodes:
            problems.append(Problem(f"{at}.minNodes", f"{pool.min_nodes} is above maxNodes {pool.max_nodes}"))
        problems.extend(Problem(f"{at}.{field}", msg) for field, msg in _capacity_problems(cfg, pool))
        if pool.zones and cfg.cloud == "aws":
            problems.append(Problem(f"{at}.zones", "only used on gcp (on aws Karpenter picks among the private "
                                                   "subnets' zones that offer the instance type)"))
        offered = _offered_zones(cfg, pool)
        for j, zone in enumerate(pool.zones):
            if not (zone.startswith(cfg.location + "-") and len(zone) == len(cfg.location) + 2):
                problems.append(Problem(f"{at}.zones[{j}]", f"{zone!r} is not a zone of {cfg.location}"))
            elif offered and zone not in offered and zone in _region_zones(cfg):
                problems.append(Problem(f"{at}.zones[{j}]", f"{zone!r} does not offer the pool's machine type; "
                                                            f"zones that do: {', '.join(offered)}"))
    sp = cfg.cluster.system_pool
    if sp.min_nodes > sp.max_nodes:
        problems.append(Problem("cluster.systemPool.minNodes", f"{sp.min_nodes} is above maxNodes {sp.max_nodes}"))
    return problems


_AWS_RESERVATION = re.compile(r"^cr-[0-9a-z]+$")
#: GKE node pool names: at most 40 characters.
_GKE_NODE_POOL_NAME_MAX = 40


def _capacity_problems(cfg: RegionConfig, pool: GpuPoolConfig) -> list[tuple[str, str]]:
    """What is wrong with a pool's capacity preference on ``cfg.cloud``: (field, message).

    Any order is accepted: an order one NodePool (EKS) or node pool (GKE) cannot honour
    becomes one per capacity type, tried in order (gpu_fleet.components.capacity_tiers).
    """
    cloud = cfg.cloud
    order = pool.capacity
    problems = []
    if len(set(order)) != len(order):
        problems.append(("capacity", f"{order} lists a capacity type twice"))
        return problems
    if "reserved" in order and not pool.reservations:
        problems.append(("reservations", "capacity lists reserved: name the reservations to use"))
    if pool.reservations and "reserved" not in order:
        problems.append(("capacity", "reservations are set but capacity does not list reserved"))
    if cloud == "aws":
        problems += [("reservations", f"{r!r} is not an EC2 capacity reservation ID (cr-...)")
                     for r in pool.reservations if not _AWS_RESERVATION.match(r)]
    if uses_compute_class(cloud, pool):
        minor = int(cfg.cluster.kubernetes_version.split(".")[1])
        if minor < COMPUTE_CLASS_MIN_MINOR:
            problems.append(("capacity", f"{order} takes one node pool per capacity type ordered by a GKE custom "
                                         f"ComputeClass, which needs GKE 1.30.3-gke.1451000 or later: set "
                                         f"cluster.kubernetesVersion to 1.{COMPUTE_CLASS_MIN_MINOR} or later"))
        if len(pool.name) + LONGEST_TIER_SUFFIX > _GKE_NODE_POOL_NAME_MAX:
            problems.append(("name", f"{pool.name!r} is too long for its per-capacity-type node pools "
                                     f"(<name>-on-demand, at most {_GKE_NODE_POOL_NAME_MAX} characters): use at "
                                     f"most {_GKE_NODE_POOL_NAME_MAX - LONGEST_TIER_SUFFIX} characters"))
    return problems


def _offered_zones(cfg: RegionConfig, pool: GpuPoolConfig) -> tuple[str, ...]:
    try:
        return pool_offering(cfg, pool).zones
    except CatalogError:
        return ()  # reported by _check_pools


def _check_models(cfg: RegionConfig) -> list[Problem]:
    problems: list[Problem] = []
    pools = {p.name: p for p in cfg.gpu_pools}
    seen: set[str] = set()
    for i, model in enumerate(cfg.models):
        at = f"models[{i}]"
        if model.name in seen:
            problems.append(Problem(f"{at}.name", f"{model.name!r} is used twice"))
        seen.add(model.name)
        a = model.autoscaling
        if a.min_replicas > a.max_replicas:
            problems.append(Problem(f"{at}.autoscaling.minReplicas", f"{a.min_replicas} is above maxReplicas {a.max_replicas}"))
        if a.min_replicas == 0 and a.engine != "keda":
            problems.append(Problem(f"{at}.autoscaling.minReplicas", "0 needs engine: keda (an HPA cannot scale to zero)"))
        elif a.min_replicas == 0 and cfg.environment != NON_PRODUCTION:
            problems.append(Problem(f"{at}.autoscaling.minReplicas", "0 is for non-production stacks only (set "
                                    "environment: non-production); a production model keeps at least one replica"))
        if model.pool not in pools:
            problems.append(Problem(f"{at}.pool", f"no GPU pool named {model.pool!r}; pools: {', '.join(pools)}"))
    return problems


def _check_autoscaling_engine(cfg: RegionConfig) -> list[Problem]:
    """One engine per stack: KEDA and prometheus-adapter both serve external.metrics.k8s.io
    and a cluster registers one APIService per group and version (kedacore/keda#470)."""
    engines = {m.autoscaling.engine for m in cfg.models}
    if len(engines) < 2:
        return []
    keda = [m.name for m in cfg.models if m.autoscaling.engine == "keda"]
    return [
        Problem(f"models[{i}].autoscaling.engine", f"hpa, but {', '.join(keda)} use keda: a cluster serves External "
                "metrics from either prometheus-adapter or KEDA, not both (kedacore/keda#470); set engine: keda on "
                "every model (minReplicas >= 1 keeps a model warm)")
        for i, m in enumerate(cfg.models) if m.autoscaling.engine == "hpa"
    ]


def _check_cache(cfg: RegionConfig) -> list[Problem]:
    c = cfg.cache
    problems: list[Problem] = []
    if not c.enabled:
        return problems
    if c.automatic_failover and c.replicas == 0:
        problems.append(Problem("cache.replicas", "automatic failover needs at least one replica"))
    if cfg.cloud == "aws" and c.memory_size_gb is not None:
        problems.append(Problem("cache.memorySizeGb", "only used on gcp (on aws size the cache with nodeType)"))
    if cfg.cloud == "gcp" and c.node_type is not None:
        problems.append(Problem("cache.nodeType", "only used on aws (on gcp size the cache with memorySizeGb)"))
    if cfg.cloud == "gcp" and c.engine == "valkey" and "engine" in c.model_fields_set:
        problems.append(Problem("cache.engine", "Memorystore for Redis runs redis"))
    if cfg.cloud == "gcp" and "snapshot_window" in c.model_fields_set:
        problems.append(Problem("cache.snapshotWindow", "only used on aws (Memorystore snapshots every six hours)"))

    engine = cache_settings.effective_engine(cfg.cloud, c)
    supported = cache_settings.supported_versions(cfg.cloud, engine)
    if c.engine_version is not None and c.engine_version not in supported:
        service = "ElastiCache" if cfg.cloud == "aws" else "Memorystore"
        problems.append(Problem("cache.engineVersion", f"{service} has no {engine} {c.engine_version} that this fleet "
                                f"supports; use one of: {', '.join(supported)}"))

    if cfg.cloud == "aws" and c.node_type is not None:
        reason = cache_settings.node_type_problem(c.node_type)
        if reason:
            problems.append(Problem("cache.nodeType", reason))

    if cfg.cloud == "gcp":
        memory = cache_settings.memory_size_gb(c)
        floor = cache_settings.MEMORYSTORE_READ_REPLICA_MIN_GB
        if c.replicas > 0 and memory < floor:
            problems.append(Problem("cache.memorySizeGb", f"{memory} GB is too small: read replicas need nodes of at "
                                    f"least {floor} GB (replicas: {c.replicas}); set memorySizeGb: {floor} or more"))
        if memory > cache_sizing.MEMORYSTORE_MAX_GB:
            problems.append(Problem("cache.memorySizeGb", f"{memory} GB is above the Memorystore maximum of "
                                    f"{cache_sizing.MEMORYSTORE_MAX_GB} GB"))
        if not c.automatic_failover and c.replicas > 0:
            # Not "replicas: 0": a single-node Basic instance fails the mandatory cache-high-availability policy.
            problems.append(Problem("cache.automaticFailover", "a Memorystore Standard instance (replicas >= 1) always "
                                    "fails over; remove automaticFailover: false"))

    try:
        maintenance = cache_settings.weekly_window(c.maintenance_window)
    except ValueError as e:
        problems.append(Problem("cache.maintenanceWindow", str(e)))
        maintenance = None
    if maintenance is not None and cfg.cloud == "gcp" and maintenance.minutes != 60:
        problems.append(Problem("cache.maintenanceWindow", f"lasts {maintenance.minutes} minutes; Memorystore "
                                "windows last exactly one hour"))
    if maintenance is not None and cfg.cloud == "aws" and maintenance.minutes < 60:
        problems.append(Problem("cache.maintenanceWindow", f"lasts {maintenance.minutes} minutes; ElastiCache needs "
                                "at least 60"))
    if cfg.cloud == "aws":
        try:
            snapshot = cache_settings.daily_window(c.snapshot_window)
        except ValueError as e:
            problems.append(Problem("cache.snapshotWindow", str(e)))
        else:
            if snapshot.minutes < 60:
                problems.append(Problem("cache.snapshotWindow", f"lasts {snapshot.minutes} minutes; ElastiCache "
                                        "needs at least 60"))
            elif maintenance is not None and cache_settings.overlaps(maintenance, snapshot):
                problems.append(Problem("cache.snapshotWindow", f"overlaps maintenanceWindow "
                                        f"{c.maintenance_window}; ElastiCache rejects overlapping windows"))
    return problems


def _check_sizing(cfg: RegionConfig) -> list[Problem]:
    """Every model fits the GPUs its pool gives it (see gpu_fleet.components.sizing)."""
    pools = {p.name: p for p in cfg.gpu_pools}
    problems: list[Problem] = []
    for i, model in enumerate(cfg.models):
        if model.lmcache.enabled and not cfg.cache.enabled:
            problems.append(Problem(f"models[{i}].lmcache.enabled", "LMCache offloads KV cache to the regional "
                                    "cache; enable it (cache.enabled: true)"))
        pool = pools.get(model.pool)
        if pool is None:
            continue  # reported by _check_models
        try:
            shape = pool_offering(cfg, pool).shape
        except CatalogError:
            continue  # reported by _check_pools
        problems.extend(Problem(f"models[{i}].{field}", msg) for field, msg in sizing.problems(model, shape))
    return problems


def _check_entrypoint(cfg: RegionConfig) -> list[Problem]:
    return (cfg.entrypoint.problems(cfg.cloud, cfg.location, [m.name for m in cfg.models])
            + ingress_annotation_problems(cfg.entrypoint, cfg.cloud))


def _region_zones(cfg: RegionConfig) -> list[str]:
    """The region's zones we know (cloud_limits reports a zone that is not one of them)."""
    return cloud_limits.zones(cfg.cloud, cfg.location) or []


def _check_cloud_limits(cfg: RegionConfig) -> list[Problem]:
    return cloud_limits.region_problems(cfg)


REGION_CHECKS = [
    _check_location, _check_network, _check_pools, _check_models, _check_autoscaling_engine,
    _check_cache, _check_sizing, _check_entrypoint, _check_cloud_limits,
]


def in_zone(name: str, zone: str) -> bool:
    """Whether DNS name ``name`` is ``zone`` or below it (trailing dots ignored)."""
    name, zone = name.rstrip("."), zone.rstrip(".")
    return name == zone or name.endswith("." + zone)


def _global_regions(cfg: GlobalConfig, stacks_dir: Path) -> tuple[list[Problem], dict[int, RegionConfig]]:
    """The region stacks a global stack lists, read and validated, by index in ``regions``."""
    problems: list[Problem] = []
    regions: dict[int, RegionConfig] = {}
    available = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
    for i, name in enumerate(cfg.regions):
        if name not in available:
            problems.append(Problem(f"regions[{i}]", f"no region stack {name!r}; stacks: {', '.join(available)}"))
            continue
        if name in cfg.regions[:i]:
            continue
        try:
            region = load_stack_file(stacks_dir / f"Pulumi.{name}.yaml")
        except ConfigError as e:
            first = e.problems[0] if e.problems else Problem(CONFIG_KEY, "invalid")
            more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
            problems.append(Problem(f"regions[{i}]", f"region stack {name!r} is invalid: {first.path}: "
                                    f"{first.message}{more}"))
            continue
        if not isinstance(region, RegionConfig):
            problems.append(Problem(f"regions[{i}]", f"{name!r} is a global stack, not a region stack"))
            continue
        regions[i] = region
    return problems, regions


def _check_global(cfg: GlobalConfig, stacks_dir: Path) -> list[Problem]:
    problems: list[Problem] = []
    if len(cfg.regions) < 2:
        problems.append(Problem("regions", "failover needs at least two region stacks"))
    if len(set(cfg.regions)) != len(cfg.regions):
        problems.append(Problem("regions", "a region stack is listed twice"))
    found, regions = _global_regions(cfg, stacks_dir)
    problems += found
    problems += cloud_limits.global_problems(cfg, regions)

    labels: dict[str, list[str]] = {}
    for i, region in regions.items():
        name, at = cfg.regions[i], f"regions[{i}]"
        label = latency_region(region.cloud, region.location)
        if label is None:
            problems.append(Problem(at, f"{name}: no latency-routing label for {region.cloud} region "
                                    f"{region.location}; add it to components/latency_regions.py"))
        else:
            labels.setdefault(label, []).append(name)
        if in_zone(region.entrypoint.domain, f"{WEIGHTED_SUBDOMAIN}.{cfg.domain}"):
            problems.append(Problem(at, f"{name}: entrypoint.domain {region.entrypoint.domain} is below "
                                    f"{WEIGHTED_SUBDOMAIN}.{cfg.domain}, where the global stack keeps the weighted "
                                    "records of shared latency labels"))
        if not region.models:
            problems.append(Problem(at, f"{name} serves no models"))
        if cfg.domain not in region.entrypoint.aliases:
            problems.append(Problem(at, f"{name}: entrypoint.aliases lacks {cfg.domain}; its load balancer would "
                                    f"refuse <model>.{cfg.domain} (no Host rule, certificate mismatch)"))
        if region.cloud == "gcp" and region.entrypoint.certificate is None:
            problems.append(Problem(at, f"{name}: entrypoint.certificate is empty, so GKE would request a "
                                    "Google-managed certificate, which Google validates by resolving every name "
                                    f"to this load balancer; <model>.{cfg.domain} resolves to the nearest region, "
                                    "so give a pre-shared certificate"))

    dns, anycast = cfg.routing.dns, cfg.routing.anycast
    # Both modes publish the client names in the hosted zone.
    if bool(dns.hosted_zone_id) == bool(dns.hosted_zone_name):
        problems.append(Problem("routing.dns", "give exactly one of hostedZoneId and hostedZoneName"))
    if dns.create_hosted_zone and not dns.hosted_zone_name:
        problems.append(Problem("routing.dns.createHostedZone", "needs hostedZoneName"))
    if dns.hosted_zone_name and not in_zone(cfg.domain, dns.hosted_zone_name):
        problems.append(Problem("domain", f"{cfg.domain} is not in hosted zone {dns.hosted_zone_name}"))
    if cfg.routing.mode == "dns":
        if dns.health_check_interval_seconds not in ROUTE53_INTERVALS:
            problems.append(Problem("routing.dns.healthCheckIntervalSeconds", "Route 53 accepts 10 or 30"))
        if dns.failure_threshold not in ROUTE53_THRESHOLDS:
            problems.append(Problem("routing.dns.failureThreshold", "Route 53 accepts 1 to 10"))
        checkers = dns.health_check_regions
        if checkers and (len(checkers) < 3 or len(set(checkers)) != len(checkers)):
            problems.append(Problem("routing.dns.healthCheckRegions", "Route 53 needs three or more distinct "
                                    "checker regions (or none: all of them)"))
        shared = {stack for group in labels.values() if len(group) > 1 for stack in group}
        for stack in dns.weights:
            if stack not in shared:
                problems.append(Problem(f"routing.dns.weights.{stack}", "only region stacks that share a latency "
                                        f"label are weighted; sharing: {', '.join(sorted(shared)) or 'none'}"))
    else:
        if anycast.health_check_interval_seconds not in ACCELERATOR_INTERVALS:
            problems.append(Problem("routing.anycast.healthCheckIntervalSeconds", "Global Accelerator accepts 10 or 30"))
        if anycast.threshold_count not in ACCELERATOR_THRESHOLDS:
            problems.append(Problem("routing.anycast.thresholdCount", "Global Accelerator accepts 1 to 10"))
        if dns.weights:
            problems.append(Problem("routing.dns.weights", "only used in dns mode (Global Accelerator sends each "
                                    "client to the nearest healthy endpoint group)"))
        elsewhere = [f"{cfg.regions[i]} is on {r.cloud}" for i, r in regions.items() if r.cloud != "aws"]
        if elsewhere:
            problems.append(Problem("routing.mode", f"anycast (AWS Global Accelerator) needs every region on aws; "
                                    f"{', '.join(elsewhere)}; use mode dns"))
        # One endpoint group per AWS region holding every stack there; both quotas are not adjustable
        # ("Quotas for AWS Global Accelerator").
        locations: dict[str, list[str]] = {}
        for i, r in regions.items():
            locations.setdefault(r.location, []).append(cfg.regions[i])
        for location, stacks in locations.items():
            if len(stacks) > ACCELERATOR_ALBS_PER_ENDPOINT_GROUP:
                problems.append(Problem("regions", f"{len(stacks)} region stacks in {location}; a Global Accelerator "
                                        f"endpoint group holds at most {ACCELERATOR_ALBS_PER_ENDPOINT_GROUP} ALBs"))
        if len(locations) > ACCELERATOR_ENDPOINT_GROUPS:
            problems.append(Problem("regions", f"{len(locations)} AWS regions; a Global Accelerator has at most "
                                    f"{ACCELERATOR_ENDPOINT_GROUPS} endpoint groups (one per region)"))
        served = {i: {m.name for m in r.models} for i, r in regions.items()}
        every = set().union(*served.values()) if served else set()
        for i, models in served.items():
            if models != every:
                problems.append(Problem("routing.mode", f"anycast sends each client to its nearest region "
                                        f"whatever the model, so every region must serve the same models; "
                                        f"{cfg.regions[i]} lacks {', '.join(sorted(every - models))}"))
    return problems


# --------------------------------------------------------------------------- entry points


def parse_fleet(raw: Any, source: str, stacks_dir: Optional[Path] = None) -> FleetConfig:
    """Validate the ``gpu-fleet:fleet`` value of one stack.

    ``source`` names the stack file in messages; ``stacks_dir`` (default: the source's
    folder) is where a global stack's region stacks live. Raises ConfigError.
    """
    if not isinstance(raw, dict):
        raise ConfigError(source, [Problem(CONFIG_KEY, f"must be a mapping with a 'kind' (region or global); got {type(raw).__name__}")])
    kinds = {"region": RegionConfig, "global": GlobalConfig}
    kind = raw.get("kind")
    model = kinds.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ConfigError(source, [Problem("kind", f"must be one of: {', '.join(kinds)}; got {raw.get('kind')!r}")])
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(source, _problems(e, model)) from None
    if isinstance(cfg, RegionConfig):
        return check_region(cfg, source)
    problems = _check_global(cfg, stacks_dir or Path(source).parent)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def check_region(cfg: RegionConfig, source: str) -> RegionConfig:
    """The semantic checks a stack file's region config gets, for any ``RegionConfig``
    (one built in code too: the components call this); ``source`` names it in messages.
    Runs once per config object. Raises ConfigError."""
    if not cfg._checked:
        problems = [p for check in REGION_CHECKS for p in check(cfg)]
        if problems:
            raise ConfigError(source, problems)
        cfg._checked = True
    return cfg


@dataclass(frozen=True)
class StackFile:
    """A stack file as read from disk: its name, raw config and which secrets it sets."""

    stack: str
    path: Path
    config: dict[str, Any]
    secret_keys: frozenset[str]


#: Pulumi's stack names (pulumi/pulumi pkg/backend/diy/backend.go, validateStackName:
#: ``^[A-Za-z0-9_.-]{1,100}$``).
PULUMI_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: What this program accepts: the stack name prefixes cloud and Kubernetes names (EKS
#: cluster names take letters, digits, ``-`` and ``_`` only; Kubernetes object names are
#: lowercase DNS labels), so one lowercase DNS label, short enough for the suffixes.
STACK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_STACK_FILE = re.compile(r"^Pulumi\.(.*)\.yaml$")


def stack_name(path: Path) -> str:
    """The stack a ``Pulumi.<stack>.yaml`` file configures; ConfigError for any other name."""
    m = _STACK_FILE.match(path.name)
    if m is None:
        raise ConfigError(str(path), [Problem("stack", f"a stack file is named Pulumi.<stack>.yaml (Pulumi finds "
                                              f"a stack's config by that name); got {path.name!r}")])
    name = m.group(1)
    if name in (".", "..") or not PULUMI_STACK_NAME.match(name):
        raise ConfigError(str(path), [Problem("stack", f"{name!r} is not a Pulumi stack name (letters, digits, "
                                              "'-', '_' and '.', at most 100, and never '.' or '..')")])
    if not STACK_NAME.match(name):
        raise ConfigError(str(path), [Problem("stack", f"{name!r}: Pulumi accepts it, but the stack name prefixes "
                                              "EKS, GKE and Kubernetes names: use lowercase letters, digits and "
                                              "'-' (at most 40, starting and ending with a letter or digit)")])
    return name


#: Secret config keys by their short name, for the plaintext checks.
_SECRET_NAMES = {k for keys in SECRET_KEYS.values() for k in keys}
_SECRET_SPELLINGS = {re.sub(r"[-_]", "", k).lower(): k for k in _SECRET_NAMES} | {"hftoken": "huggingFaceToken"}
#: A Hugging Face user access token (``hf_`` and 34 letters) pasted anywhere in the fleet config.
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def _set_secret(key: str) -> str:
    return f"pulumi config set --secret {PROJECT}:{key} <value>"


def plaintext_secrets(config: dict[str, Any]) -> list[Problem]:
    """Secrets a stack file holds in plaintext: ``gpu-fleet:apiKey`` not as ``secure:``,
    and any token inside ``gpu-fleet:fleet`` (where nothing is encrypted)."""
    problems = []
    for key in sorted(_SECRET_NAMES):
        full = f"{PROJECT}:{key}"
        value = config.get(full)
        if full in config and not (isinstance(value, dict) and set(value) == {"secure"}):
            problems.append(Problem(full, f"a plaintext secret in the stack file (pulumi up would use it as is); "
                                    f"delete the line and run: {_set_secret(key)}"))
    fleet = config.get(FULL_CONFIG_KEY)
    stack: list[tuple[str, Any]] = [(CONFIG_KEY, fleet)]
    while stack:
        at, value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                name = _SECRET_SPELLINGS.get(re.sub(r"[-_]", "", str(k)).lower())
                if name is not None:
                    problems.append(Problem(f"{at}.{k}", f"secrets do not belong in {FULL_CONFIG_KEY} (stored in "
                                            f"plaintext); delete it and run: {_set_secret(name)}"))
                else:
                    stack.append((f"{at}.{yaml_reader.key_name(str(k))}", v))
        elif isinstance(value, list):
            stack.extend((f"{at}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, str) and _HF_TOKEN.search(value):
            problems.append(Problem(at, "holds what looks like a Hugging Face token, in plaintext; delete it and "
                                    f"run: {_set_secret('huggingFaceToken')}"))
    return problems


#: Files read in this scope, by path (see :func:`reading_once`); None: read every time.
_READ_CACHE: Optional[dict[tuple[str, str], Any]] = None


@contextmanager
def reading_once() -> Iterator[None]:
    """Within this block each stack file is read, parsed and validated once.

    ``gpu-fleet plan`` looks at a file several times (to order the stacks, to plan them,
    when a global stack reads its regions); files do not change during one plan.
    """
    global _READ_CACHE
    outer = _READ_CACHE
    _READ_CACHE = {} if outer is None else outer
    try:
        yield
    finally:
        _READ_CACHE = outer


def _once(kind: str, path: Path, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``kind`` and file in a :func:`reading_once` block (errors too)."""
    if _READ_CACHE is None:
        return compute()
    key = (kind, str(path.resolve()))
    if key not in _READ_CACHE:
        try:
            _READ_CACHE[key] = compute()
        except ConfigError as e:
            _READ_CACHE[key] = e
    found = _READ_CACHE[key]
    if isinstance(found, ConfigError):
        raise found
    return found


def read_stack_file(path: Path) -> StackFile:
    """Read ``Pulumi.<stack>.yaml``; ConfigError if it is not valid YAML of that shape."""
    return _once("read", Path(path), lambda: _read_stack_file(Path(path)))


def _read_stack_file(path: Path) -> StackFile:
    stack = stack_name(path)
    try:
        doc = yaml_reader.read(path)
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem("stack", "no such file")]) from None
    except OSError as e:
        raise ConfigError(str(path), [Problem("config", f"cannot read: {e.strerror or e}")]) from None
    except yaml_reader.YamlError as e:
        raise ConfigError(str(path), [Problem(e.path, f"cannot read: {e}")]) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(str(path), [Problem("config", "the stack file needs a 'config:' mapping")])
    secret = plaintext_secrets(config)
    if secret:
        raise ConfigError(str(path), secret)
    secrets = frozenset(k for k, v in config.items() if isinstance(v, dict) and set(v) == {"secure"})
    return StackFile(stack, path, config, secrets)


def load_stack_file(path: Path | str) -> FleetConfig:
    """Read and validate one stack file (``stacks/Pulumi.<stack>.yaml``)."""
    return _once("load", Path(path), lambda: _load_stack_file(Path(path)))


def _load_stack_file(path: Path) -> FleetConfig:
    sf = read_stack_file(path)
    if FULL_CONFIG_KEY not in sf.config:
        raise ConfigError(str(path), [Problem(CONFIG_KEY, f"missing: put the stack's settings under '{FULL_CONFIG_KEY}'")])
    return parse_fleet(sf.config[FULL_CONFIG_KEY], str(path), path.parent)
