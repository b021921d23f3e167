"""A private, VPC-native GKE cluster with a system node pool and each GPU pool's node pools:
one, or one per capacity tier ordered by a custom ComputeClass (gpu_fleet.components.capacity_tiers).

Everything goes through the region's ``gcp`` provider (passed by the caller in
``opts.providers``); the Kubernetes provider built from the new cluster is exposed as
:attr:`GkeCluster.k8s_provider` for the components that deploy into it.

GPU drivers: GKE installs them (``gpu_driver_version: LATEST``) and GKE's own device
plugin advertises ``nvidia.com/gpu``; the NVIDIA GPU operator
(:mod:`gpu_fleet.components.gpu_software`) adds the container toolkit, dcgm-exporter and feature
discovery on top, with its own device plugin disabled so that two plugins never register
the same resource.

The decisions (names, node configs, autoscaling, the kubeconfig) are plain functions below,
tested without Pulumi; the class only wires resources together.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Optional, TypedDict

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from . import pins
from .capacity_tiers import COMPUTE_CLASS_KEY, Tier, compute_class_name, is_tiered, tiers, uses_compute_class
from .config import GpuPoolConfig, RegionConfig, check_region, pool_offering
from .kubeconfig import exec_kubeconfig
from .contract import FLEET_LABELS, GPU_LABEL, GPU_TAINT, POOL_LABEL, SYSTEM_POOL
from .network import GcpNetwork

DEFAULT_SYSTEM_MACHINE_TYPE = "n2-standard-8"
#: COS is what GKE's managed driver installer and the operator's GKE paths
#: (``/home/kubernetes/bin/nvidia``) are documented for.
IMAGE_TYPE = pins.GKE_NODE_IMAGE.name
#: Valid boot disk for every catalog GPU shape (A2 supports Persistent Disk only; A3
#: High/Mega support pd-ssd too). Image pulls of 10+ GB vLLM images want SSD.
GPU_BOOT_DISK_TYPE = "pd-ssd"
SYSTEM_BOOT_DISK_TYPE = "pd-balanced"
GPU_DRIVER_VERSION = "LATEST"
RESERVATION_KEY = "compute.googleapis.com/reservation-name"
#: GKE custom compute classes (GKE ComputeClass CRD reference); GKE installs the CRD in
#: clusters from 1.30.3-gke.1451000 ("available ... in all eligible GKE clusters by default").
COMPUTE_CLASS_API_VERSION = "cloud.google.com/v1"
PODS_RANGE = "pods"
SERVICES_RANGE = "services"
#: Without explicit node locations a regional pool spans the region's default three zones.
DEFAULT_ZONE_COUNT = 3
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: Least privilege for node VMs: write logs and metrics, read images. Workloads get their
#: own identities through Workload Identity, never the node's.
NODE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
)
#: GKE Filestore CSI's built-in class for the Basic SSD tier. Weight loads gate how fast a
#: new replica serves: Basic SSD reads 1,200 MiB/s (a 145 GB 72B checkpoint in about two
#: minutes) where ``standard-rwx`` (Basic HDD) reads 100 MiB/s (about 25 minutes).
#: Its minimum volume is 2.5 TiB (2560Gi).
WEIGHT_CACHE_STORAGE_CLASS = "premium-rwx"
AUTH_PLUGIN = "gke-gcloud-auth-plugin"
#: The project services a region uses (compute: network, nodes, load balancer; container:
#: GKE; iam and cloudresourcemanager: the node service account and its roles; file:
#: Filestore; redis and servicenetworking: Memorystore over private services access).
#: ``cluster.enableApis`` enables them; Service Usage itself must be on (it is in new projects).
REQUIRED_APIS = (
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "file.googleapis.com",
    "redis.googleapis.com",
    "servicenetworking.googleapis.com",
)
#: GKE cluster and node-pool names: 40 characters; service account IDs: 6 to 30.
CLUSTER_NAME_MAX = 40
ACCOUNT_ID_MAX = 30
#: The ClusterRoleBinding giving ``cluster.adminAccounts`` Kubernetes' built-in ``cluster-admin``.
ADMIN_BINDING = "gpu-fleet-admins"
RBAC_API_GROUP = "rbac.authorization.k8s.io"


class GkeClusterArgs(TypedDict):
    """Arguments of :class:`GkeCluster`.

    config: the validated region config (``gpu_fleet.components.config.RegionConfig``, cloud
        ``gcp``). Used: ``project``, ``location``, ``network`` (a new network from
        ``cidr``/``podsCidr``/``servicesCidr``, or ``existing`` network and subnetwork
        names in the cluster's project and region with their secondary range names),
        ``cluster`` (version, release channel, public access CIDRs, master CIDR, system
        pool; system machine type defaults to ``n2-standard-8``) and ``gpuPools``.
    """

    config: RegionConfig


# --------------------------------------------------------------------------- pure decisions


def gcp_name(base: str, max_len: int) -> str:
    """``base`` as a GCP resource name of at most ``max_len`` characters.

    Lower case, letters, digits and hyphens; a name too long keeps its start and gets a
    short hash of the whole so two long names stay distinct.
    """
    name = re.sub(r"[^a-z0-9-]", "-", base.lower()).strip("-")
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: max_len - 7].rstrip('-')}-{digest}"


def workload_pool(project: str) -> str:
    """The Workload Identity pool of a project."""
    return f"{project}.svc.id.goog"


def private_cluster_config(cfg: RegionConfig) -> dict:
    """Private nodes always; a private-only endpoint unless public CIDRs may reach it."""
    return {
        "enable_private_nodes": True,
        "enable_private_endpoint": not cfg.cluster.public_access_cidrs,
        "master_ipv4_cidr_block": str(cfg.cluster.master_cidr),
    }


def master_authorized_networks(cfg: RegionConfig) -> dict:
    """Only the configured CIDRs reach the API endpoint (never Google Cloud's public IPs)."""
    return {
        "cidr_blocks": [
            {"cidr_block": str(cidr), "display_name": f"public-access-{i}"}
            for i, cidr in enumerate(cfg.cluster.public_access_cidrs)
        ],
        "gcp_public_cidrs_access_enabled": False,
    }


def admin_subjects(accounts: list[str]) -> list[dict]:
    """RBAC subjects for Google accounts and service accounts: GKE authenticates both as a
    ``User`` named by the email (GKE "Role-based access control"; each also needs the
    ``container.clusters.get`` IAM permission, e.g. ``roles/container.clusterViewer``, to
    authenticate at all)."""
    return [{"kind": "User", "name": account, "apiGroup": RBAC_API_GROUP} for account in dict.fromkeys(accounts)]


def initial_node_count(min_nodes: int, zones: int) -> int:
    """Nodes per zone at creation so the system pool starts at its minimum (GKE counts per zone)."""
    return math.ceil(min_nodes / zones) if min_nodes else 0


def gpu_node_locations(cfg: RegionConfig, pool: GpuPoolConfig) -> list[str]:
    """The zones a GPU pool's nodes may be in: the configured ones, else every zone the
    catalog records as offering the machine type (empty: GKE's default zones)."""
    return list(pool.zones) or list(pool_offering(cfg, pool).zones)


def gpu_autoscaling(cfg: RegionConfig, pool: GpuPoolConfig) -> dict:
    """Whole-pool limits (``total_*``: the config's numbers are for the pool, not per zone)
    and the ``ANY`` location policy, which "picks zones that have the highest capacity
    available" (GKE API ``NodePoolAutoscaling.LocationPolicy``) instead of balancing zone
    sizes: with scarce GPUs, a node in any zone beats none. It also prefers unused
    reservations (GKE cluster autoscaler docs, location policy).

    A tiered pool (one node pool per capacity type, gpu_fleet.components.capacity_tiers) gives every
    node pool the whole ``maxNodes`` (a fallback tier may have to carry the pool alone; the
    pool can then exceed ``maxNodes`` only when its models ask for more, see
    gpu_fleet.components.capacity) and no minimum: a floor would pin nodes of each tier whatever the
    order; the warm placeholders, which select the ComputeClass, keep ``minNodes`` instead.
    """
    return {
        "total_min_node_count": 0 if is_tiered(cfg.cloud, pool) else pool.min_nodes,
        "total_max_node_count": pool.max_nodes,
        "location_policy": "ANY",
    }


def reservation_affinity(pool: GpuPoolConfig, capacity: tuple[str, ...]) -> Optional[dict]:
    """How a node pool launching ``capacity`` (the pool's whole order, or one tier of it)
    consumes reservations (GKE "Consuming reserved zonal resources"):

    - ``[reserved]``: only the named reservations (``SPECIFIC_RESERVATION``);
    - ``[reserved, on-demand]``: any matching reservation, on-demand when none is left
      (``ANY_RESERVATION``, "any matching reservation with fallback"); the reservations
      must then be automatically consumed ones, which GKE matches by machine shape;
    - otherwise none (spot and plain on-demand node pools).
    """
    if "reserved" not in capacity:
        return None
    if capacity == ("reserved",):
        return {"consume_reservation_type": "SPECIFIC_RESERVATION", "key": RESERVATION_KEY,
                "values": list(pool.reservations)}
    return {"consume_reservation_type": "ANY_RESERVATION"}


def compute_class_taint(pool: GpuPoolConfig) -> dict:
    """The taint tying a tiered pool's node pools to its ComputeClass (node pool API spelling)."""
    return {"key": COMPUTE_CLASS_KEY, "value": compute_class_name(pool), "effect": "NO_SCHEDULE"}


def compute_class_spec(pool: GpuPoolConfig) -> dict:
    """The ComputeClass ordering a tiered pool's node pools (GKE ComputeClass CRD reference:
    ``priorities[].nodepools``, a rule that names node pools and nothing else;
    ``nodePoolAutoCreation.enabled``; ``whenUnsatisfiable``: ``ScaleUpAnyway`` or
    ``DoNotScaleUp``). Only the named node pools, never an auto-created one: they carry the
    drivers, disk, reservation and taint settings. ``DoNotScaleUp``: when no tier has
    capacity the pod stays Pending rather than landing elsewhere. ``activeMigration`` is
    left off (its default): moving serving replicas back to the preferred tier would evict them.
    """
    return {
        "priorities": [{"nodepools": [t.name]} for t in tiers("gcp", pool)],
        "nodePoolAutoCreation": {"enabled": False},
        "whenUnsatisfiable": "DoNotScaleUp",
    }


def _common_node_config(service_account: Any) -> dict:
    return {
        "image_type": IMAGE_TYPE,
        "service_account": service_account,
        # Access is governed by the service account's IAM roles, as GKE recommends.
        "oauth_scopes": [CLOUD_PLATFORM_SCOPE],
        "workload_metadata_config": {"mode": "GKE_METADATA"},
        "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
        # GKE sets this itself; declaring it avoids a diff on every preview.
        "metadata": {"disable-legacy-endpoints": "true"},
    }


def default_pool_node_config(service_account: Any) -> dict:
    """Node config of the temporary default pool GKE creates with the cluster (and this
    program removes at once): the nodes' own least-privilege account, so creation works
    where the Compute Engine default service account is disabled (pulumi-gcp 10.2.0
    ``container.Cluster`` ``node_config``: "Parameters used in creating the default node pool")."""
    return _common_node_config(service_account)


def system_node_config(cfg: RegionConfig, service_account: Any) -> dict:
    """Node config of the system (CPU) pool."""
    sp = cfg.cluster.system_pool
    return {
        **_common_node_config(service_account),
        "machine_type": sp.machine_type or DEFAULT_SYSTEM_MACHINE_TYPE,
        "disk_size_gb": sp.disk_size_gb,
        "disk_type": SYSTEM_BOOT_DISK_TYPE,
        "labels": {POOL_LABEL: SYSTEM_POOL},
    }


def gpu_node_config(cfg: RegionConfig, pool: GpuPoolConfig, service_account: Any, tier: Tier) -> dict:
    """Node config of one node pool of a GPU pool (the pool's only one, or one capacity tier):
    the catalog shape with its accelerators, GKE-installed drivers, labels and taint, spot or
    reservation capacity (:func:`reservation_affinity`); a tier's node pool also carries its
    ComputeClass label and taint."""
    shape = pool_offering(cfg, pool).shape
    labels = {POOL_LABEL: pool.name, GPU_LABEL: pool.gpu}
    taints = [dict(GPU_TAINT)]
    if uses_compute_class(cfg.cloud, pool):
        labels[COMPUTE_CLASS_KEY] = compute_class_name(pool)
        taints.append(compute_class_taint(pool))
    config = {
        **_common_node_config(service_account),
        "machine_type": shape.machine_type,
        "disk_size_gb": pool.disk_size_gb,
        "disk_type": GPU_BOOT_DISK_TYPE,
        "guest_accelerators": [
            {
                "type": shape.accelerator,
                "count": shape.gpus,
                "gpu_driver_installation_config": {"gpu_driver_version": GPU_DRIVER_VERSION},
            }
        ],
        "labels": labels,
        "taints": taints,
        "spot": tier.capacity == ("spot",),
        # A3 NICs are gVNIC; it is also the faster NIC on A2.
        "gvnic": {"enabled": True},
    }
    affinity = reservation_affinity(pool, tier.capacity)
    if affinity is not None:
        config["reservation_affinity"] = affinity
    return config


def render_kubeconfig(context: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig for the cluster that authenticates with ``gke-gcloud-auth-plugin``."""
    return exec_kubeconfig(context, f"https://{endpoint}", ca_certificate, {
        "command": AUTH_PLUGIN,
        "installHint": f"Install {AUTH_PLUGIN}: gcloud components install {AUTH_PLUGIN}",
        "provideClusterInfo": True,
    })


def secondary_range_cidr(ranges: list, range_name: str, subnetwork: str) -> str:
    """The CIDR of an existing subnetwork's secondary range, or a clear error."""
    for r in ranges:
        if r.range_name == range_name:
            return r.ip_cidr_range
    names = ", ".join(r.range_name for r in ranges) or "none"
    raise ValueError(f"subnetwork {subnetwork!r} has no secondary range {range_name!r}; it has: {names}")


# --------------------------------------------------------------------------- component


class GkeCluster(pulumi.ComponentResource):
    """GKE cluster, network and node pools of a GCP region (``gpufleet:index:GkeCluster``)."""

    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    k8s_provider: k8s.Provider
    network: GcpNetwork
    weight_cache_storage_class: str

    def __init__(self, name: str, args: GkeClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        cfg = check_region(args["config"], f"GkeCluster {name!r}")  # once per config object
        super().__init__("gpufleet:index:GkeCluster", name, None, opts)
        # Opt-in: enabled before anything else; left enabled on destroy, because other
        # workloads of the project may use them and disabling is not this program's to do.
        self.apis = [
            gcp.projects.Service(f"{name}-api-{api.split('.', 1)[0]}", project=cfg.project, service=api,
                                 disable_on_destroy=False, disable_dependent_services=False,
                                 opts=pulumi.ResourceOptions(parent=self))
            for api in (REQUIRED_APIS if cfg.cluster.enable_apis else ())
        ]
        here = pulumi.ResourceOptions(parent=self, depends_on=self.apis)

        network_self_link, subnetwork_self_link, pods_range, services_range = self._network(name, cfg, here)

        self.node_service_account = gcp.serviceaccount.Account(
            f"{name}-nodes",
            account_id=gcp_name(f"{name}-nodes", ACCOUNT_ID_MAX),
            display_name=f"GKE nodes of {name}",
            opts=here,
        )
        self.node_roles = [
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.split('/', 1)[1].replace('.', '-').lower()}",
                project=cfg.project,
                role=role,
                member=self.node_service_account.member,
                opts=here,
            )
            for role in NODE_ROLES
        ]

        self.cluster = gcp.container.Cluster(
            name,
            name=gcp_name(name, CLUSTER_NAME_MAX),
            location=cfg.location,
            network=network_self_link,
            subnetwork=subnetwork_self_link,
            networking_mode="VPC_NATIVE",
            # Node pools are managed separately; GKE needs one node to create the cluster.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=default_pool_node_config(self.node_service_account.email),
            release_channel={"channel": cfg.cluster.release_channel},
            min_master_version=cfg.cluster.kubernetes_version,
            workload_identity_config={"workload_pool": workload_pool(cfg.project)},
            private_cluster_config=private_cluster_config(cfg),
            master_authorized_networks_config=master_authorized_networks(cfg),
            ip_allocation_policy={
                "cluster_secondary_range_name": pods_range,
                "services_secondary_range_name": services_range,
            },
            # Dataplane V2 enforces NetworkPolicies (the cache admits only its clients).
            datapath_provider="ADVANCED_DATAPATH",
            addons_config={
                "gcp_filestore_csi_driver_config": {"enabled": True},
                "gce_persistent_disk_csi_driver_config": {"enabled": True},
            },
            enable_shielded_nodes=True,
            logging_config={"enable_components": ["SYSTEM_COMPONENTS", "WORKLOADS"]},
            # The HPAs read the in-cluster Prometheus; Managed Prometheus would bill a copy.
            monitoring_config={"enable_components": ["SYSTEM_COMPONENTS"], "managed_prometheus": {"enabled": False}},
            deletion_protection=True,
            opts=pulumi.ResourceOptions(
                parent=self, protect=True, depends_on=[*self.apis, *self.node_roles],
                # Only the removed default pool used it: a later change must not replace the cluster.
                ignore_changes=["nodeConfig"],
            ),
        )

        pool_opts = pulumi.ResourceOptions(
            parent=self,
            protect=True,
            depends_on=[*self.apis, *self.node_roles],
            # Only seeds the pool at creation (and would force a replacement); the
            # autoscaler owns the size afterwards.
            ignore_changes=["initialNodeCount"],
            # Pools have fixed names (node names show them); a replacement frees the name
            # first, and rarely is there GPU capacity for two pools at once anyway.
            delete_before_replace=True,
        )
        sp = cfg.cluster.system_pool
        self.system_pool = gcp.container.NodePool(
            f"{name}-{SYSTEM_POOL}",
            name=SYSTEM_POOL,
            cluster=self.cluster.name,
            location=cfg.location,
            initial_node_count=initial_node_count(sp.min_nodes, DEFAULT_ZONE_COUNT),
            autoscaling={"total_min_node_count": sp.min_nodes, "total_max_node_count": sp.max_nodes},
            management={"auto_repair": True, "auto_upgrade": True},
            upgrade_settings={"max_surge": 1, "max_unavailable": 0},
            node_config=system_node_config(cfg, self.node_service_account.email),
            opts=pool_opts,
        )
        #: Every GKE node pool of each GPU pool (one, or one per capacity tier).
        self.gpu_node_pools = {
            pool.name: [
                gcp.container.NodePool(
                    f"{name}-{tier.name}",
                    name=tier.name,
                    cluster=self.cluster.name,
                    location=cfg.location,
                    node_locations=gpu_node_locations(cfg, pool) or None,
                    # Created empty: creating a pool with nodes waits for them, so a stock-out
                    # would fail pulumi up. Warm nodes (minNodes) and the models' nodes arrive
                    # through the autoscaler (gpu_fleet.components.warm_capacity places the warm ones).
                    initial_node_count=0,
                    autoscaling=gpu_autoscaling(cfg, pool),
                    management={"auto_repair": True, "auto_upgrade": True},
                    # Upgrade in place, one node at a time: a surge node would need spare
                    # GPU capacity that reservations and stockouts rarely leave.
                    upgrade_settings={"max_surge": 0, "max_unavailable": 1},
                    node_config=gpu_node_config(cfg, pool, self.node_service_account.email, tier),
                    opts=pool_opts,
                )
                for tier in tiers(cfg.cloud, pool)
            ]
            for pool in cfg.gpu_pools
        }

        self.cluster_name = self.cluster.name
        context = pulumi.Output.concat("gke_", cfg.project, "_", cfg.location, "_", self.cluster.name)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(context, self.cluster.endpoint, self.cluster.master_auth.cluster_ca_certificate).apply(
                lambda v: render_kubeconfig(v[0], v[1], v[2])
            )
        )
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            # Kubernetes objects (Helm releases waiting for pods) need nodes to run on.
            # The system pool only: a GPU capacity shortage holds back only the models (Region
            # makes them wait for gpu_pools), not monitoring or the entry point.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.system_pool]),
        )
        # Admins from config only, never the identity running Pulumi (which reaches the API
        # through its own IAM role): a preview by another identity changes nothing here.
        self.admin_binding = (
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-admins",
                metadata={"name": ADMIN_BINDING, "labels": dict(FLEET_LABELS)},
                role_ref={"apiGroup": RBAC_API_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
                subjects=admin_subjects(cfg.cluster.admin_accounts),
                opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider),
            )
            if cfg.cluster.admin_accounts else None
        )
        # What models and placeholders wait for, per pool: its node pool, or the ComputeClass
        # ordering its tiers (created after them, so it stands for all of them).
        self.gpu_pools = {}
        for pool in cfg.gpu_pools:
            node_pools = self.gpu_node_pools[pool.name]
            if not uses_compute_class(cfg.cloud, pool):
                (self.gpu_pools[pool.name],) = node_pools
                continue
            self.gpu_pools[pool.name] = k8s.apiextensions.CustomResource(
                f"{name}-{pool.name}-compute-class",
                api_version=COMPUTE_CLASS_API_VERSION, kind="ComputeClass",
                metadata={"name": compute_class_name(pool), "labels": dict(FLEET_LABELS)},
                spec=compute_class_spec(pool),
                opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider, depends_on=node_pools),
            )
        self.weight_cache_storage_class = WEIGHT_CACHE_STORAGE_CLASS

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "networkId": self.network.network_id,
                "weightCacheStorageClass": self.weight_cache_storage_class,
            }
        )

    def _network(self, name: str, cfg: RegionConfig, here: pulumi.ResourceOptions):
        """Create (or look up) the network; sets :attr:`network` and returns the cluster's
        network and subnetwork links and its pod and service range names."""
        ex = cfg.network.existing
        if ex is not None:
            invoke = pulumi.InvokeOutputOptions(parent=self, depends_on=self.apis)
            net = gcp.compute.get_network_output(name=ex.network, opts=invoke)
            sub = gcp.compute.get_subnetwork_output(name=ex.subnetwork, region=cfg.location, opts=invoke)
            self.network = GcpNetwork(
                network_id=net.id,
                network_name=net.name,
                subnetwork_id=sub.id,
                node_cidr=sub.ip_cidr_range,
                pods_cidr=sub.secondary_ip_ranges.apply(
                    lambda ranges: secondary_range_cidr(ranges, ex.pods_range_name, ex.subnetwork)
                ),
            )
            return net.self_link, sub.self_link, ex.pods_range_name, ex.services_range_name

        self.vpc = gcp.compute.Network(
            f"{name}-network",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            # The cluster, the cache's private service access and the load balancer live in it.
            opts=pulumi.ResourceOptions.merge(here, pulumi.ResourceOptions(protect=True)),
        )
        self.subnetwork = gcp.compute.Subnetwork(
            f"{name}-subnet",
            network=self.vpc.id,
            region=cfg.location,
            ip_cidr_range=str(cfg.network.cidr),
            # Private nodes reach Google APIs (Artifact Registry, GCS) without NAT.
            private_ip_google_access=True,
            secondary_ip_ranges=[
                {"range_name": PODS_RANGE, "ip_cidr_range": str(cfg.network.pods_cidr)},
                {"range_name": SERVICES_RANGE, "ip_cidr_range": str(cfg.network.services_cidr)},
            ],
            opts=here,
        )
        # Private nodes have no external IPs: Cloud NAT is their way to Docker Hub and
        # Hugging Face for images and weights.
        self.router = gcp.compute.Router(f"{name}-router", network=self.vpc.id, region=cfg.location, opts=here)
        self.nat = gcp.compute.RouterNat(
            f"{name}-nat",
            router=self.router.name,
            region=cfg.location,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            # Parallel weight downloads open many connections per node; fixed 64 ports
            # per VM would run out.
            enable_endpoint_independent_mapping=False,
            enable_dynamic_port_allocation=True,
            min_ports_per_vm=64,
            max_ports_per_vm=4096,
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=here,
        )
        self.network = GcpNetwork(
            network_id=self.vpc.id,
            network_name=self.vpc.name,
            subnetwork_id=self.subnetwork.id,
            node_cidr=self.subnetwork.ip_cidr_range,
            pods_cidr=pulumi.Output.from_input(str(cfg.network.pods_cidr)),
        )
        return self.vpc.id, self.subnetwork.id, PODS_RANGE, SERVICES_RANGE
