"""GkeCluster: the eu-west reference stack's GKE cluster, network and node pools, offline."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pulumi
import pulumi_gcp as gcp
import pytest
import yaml

from gpu_fleet.components import gke_cluster as gke
from gpu_fleet.components.config import ConfigError, load_stack_file, parse_fleet
from gpu_fleet.components.contract import SYSTEM_NODE_SELECTOR
from gpu_fleet import mock_outputs
from gpu_fleet.engine import Recording, ResourceRecord, is_secret
from gpu_fleet.manifests import validate

REPO = Path(__file__).resolve().parents[2]
EU_WEST = REPO / "stacks" / "Pulumi.eu-west.yaml"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"


def _raw() -> dict:
    return copy.deepcopy(yaml.safe_load(EU_WEST.read_text())["config"]["gpu-fleet:fleet"])


def _cfg(edit=None):
    raw = _raw()
    if edit:
        edit(raw)
    return parse_fleet(raw, str(EU_WEST), EU_WEST.parent)


def _run(fleet, cfg) -> Recording:
    def program():
        provider = gcp.Provider("eu-west-gcp", project=cfg.project, region=cfg.location)
        cluster = gke.GkeCluster("eu-west-cluster", {"config": cfg}, opts=pulumi.ResourceOptions(providers={"gcp": provider}))
        pulumi.export("clusterName", cluster.cluster_name)
        pulumi.export("kubeconfig", cluster.kubeconfig)
        pulumi.export("storageClass", cluster.weight_cache_storage_class)
        net = cluster.network
        pulumi.export("network", {"networkId": net.network_id, "networkName": net.network_name,
                                  "subnetworkId": net.subnetwork_id, "nodeCidr": net.node_cidr, "podsCidr": net.pods_cidr})

    return fleet.run(program, stack="eu-west")


@pytest.fixture
def eu_west(fleet) -> Recording:
    return _run(fleet, load_stack_file(EU_WEST))


def _pool(rec: Recording, pool: str) -> ResourceRecord:
    return rec.named(NODE_POOL, f"eu-west-cluster-{pool}")


def test_endpoint_is_private_only_without_public_cidrs(fleet):
    rec = _run(fleet, _cfg(lambda raw: raw["cluster"].update(publicAccessCidrs=[])))
    i = rec.named(CLUSTER, "eu-west-cluster").plain_inputs
    assert i["privateClusterConfig"]["enablePrivateEndpoint"] is True
    assert i["masterAuthorizedNetworksConfig"] == {"cidrBlocks": [], "gcpPublicCidrsAccessEnabled": False}


def test_cluster_is_private_regional_vpc_native_with_dataplane_v2(eu_west):
    cluster = eu_west.named(CLUSTER, "eu-west-cluster")
    i = cluster.plain_inputs
    assert i["name"] == "eu-west-cluster"
    assert i["location"] == "europe-west4"
    assert (i["removeDefaultNodePool"], i["initialNodeCount"]) == (True, 1)
    assert i["releaseChannel"] == {"channel": "REGULAR"}
    assert i["minMasterVersion"] == "1.35"
    assert i["workloadIdentityConfig"] == {"workloadPool": "gpu-fleet-prod.svc.id.goog"}
    assert i["privateClusterConfig"] == {
        "enablePrivateNodes": True,
        "enablePrivateEndpoint": False,  # eu-west lets the deployer's egress range in
        "masterIpv4CidrBlock": "172.16.0.32/28",
    }
    assert i["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "203.0.113.0/24", "displayName": "public-access-0"}],
        "gcpPublicCidrsAccessEnabled": False,
    }
    assert i["ipAllocationPolicy"] == {"clusterSecondaryRangeName": "pods", "servicesSecondaryRangeName": "services"}
    assert i["networkingMode"] == "VPC_NATIVE"
    assert i["datapathProvider"] == "ADVANCED_DATAPATH"
    assert i["addonsConfig"] == {
        "gcpFilestoreCsiDriverConfig": {"enabled": True},
        "gcePersistentDiskCsiDriverConfig": {"enabled": True},
    }
    assert i["deletionProtection"] is True
    assert i["loggingConfig"] == {"enableComponents": ["SYSTEM_COMPONENTS", "WORKLOADS"]}
    assert i["monitoringConfig"]["managedPrometheus"] == {"enabled": False}
    assert cluster.protect


def test_cluster_uses_the_new_network(eu_west):
    cluster = eu_west.named(CLUSTER, "eu-west-cluster").plain_inputs
    network = eu_west.named("gcp:compute/network:Network", "eu-west-cluster-network")
    subnet = eu_west.named("gcp:compute/subnetwork:Subnetwork", "eu-west-cluster-subnet")
    assert network.plain_inputs["autoCreateSubnetworks"] is False
    assert cluster["network"] == network.outputs["id"]
    assert cluster["subnetwork"] == subnet.outputs["id"]
    s = subnet.plain_inputs
    assert s["network"] == network.outputs["id"]
    assert (s["region"], s["ipCidrRange"], s["privateIpGoogleAccess"]) == ("europe-west4", "10.50.0.0/20", True)
    assert s["secondaryIpRanges"] == [
        {"rangeName": "pods", "ipCidrRange": "10.52.0.0/14"},
        {"rangeName": "services", "ipCidrRange": "10.56.0.0/20"},
    ]
    router = eu_west.named("gcp:compute/router:Router", "eu-west-cluster-router")
    assert router.plain_inputs["network"] == network.outputs["id"]
    nat = eu_west.named("gcp:compute/routerNat:RouterNat", "eu-west-cluster-nat").plain_inputs
    assert nat["router"] == router.outputs["name"]
    assert (nat["region"], nat["sourceSubnetworkIpRangesToNat"]) == ("europe-west4", "ALL_SUBNETWORKS_ALL_IP_RANGES")
    assert nat["natIpAllocateOption"] == "AUTO_ONLY"


def test_network_record_for_cache_and_entrypoint(eu_west):
    net = eu_west.stack_outputs["network"]
    network = eu_west.named("gcp:compute/network:Network", "eu-west-cluster-network")
    assert net["networkId"] == network.outputs["id"]
    assert net["networkId"].startswith("projects/gpu-fleet-prod/global/networks/")
    assert net["networkName"] == network.outputs["name"]
    assert net["subnetworkId"].startswith("projects/gpu-fleet-prod/regions/europe-west4/subnetworks/")
    assert (net["nodeCidr"], net["podsCidr"]) == ("10.50.0.0/20", "10.52.0.0/14")


def test_h100_pool_runs_the_catalog_shape_with_gke_drivers(eu_west):
    pool = _pool(eu_west, "h100")
    i = pool.plain_inputs
    nc = i["nodeConfig"]
    assert nc["machineType"] == "a3-highgpu-8g"
    assert nc["guestAccelerators"] == [
        {"type": "nvidia-h100-80gb", "count": 8, "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}
    ]
    assert nc["labels"] == {"gpu-fleet/pool": "h100", "gpu-fleet/gpu": "h100"}
    assert nc["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert (nc["diskSizeGb"], nc["diskType"], nc["imageType"]) == (1000, "pd-ssd", "COS_CONTAINERD")
    assert nc["spot"] is False
    assert "reservationAffinity" not in nc
    assert nc["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert nc["gvnic"] == {"enabled": True}
    assert i["location"] == "europe-west4"
    assert i["nodeLocations"] == ["europe-west4-b", "europe-west4-c"]
    # Whole-pool limits, not per zone: the config's 1..23 nodes mean 1..23 nodes.
    assert i["autoscaling"] == {"totalMinNodeCount": 1, "totalMaxNodeCount": 23, "locationPolicy": "ANY"}
    # Created empty (never 2 nodes for minNodes 1 over 2 zones, never waiting for GPU stock):
    # the warm node comes from the placeholders (gpu_fleet.components.warm_capacity).
    assert i["initialNodeCount"] == 0
    assert i["upgradeSettings"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert i["management"] == {"autoRepair": True, "autoUpgrade": True}
    assert (i["cluster"], i["name"]) == ("eu-west-cluster", "h100")
    assert pool.protect
    assert pool.ignore_changes == ["initialNodeCount"]
    assert pool.delete_before_replace


def test_system_pool(eu_west):
    pool = _pool(eu_west, "system")
    i = pool.plain_inputs
    nc = i["nodeConfig"]
    assert nc["machineType"] == "n2-standard-8"
    assert nc["labels"] == {"gpu-fleet/pool": "system"}
    assert "taints" not in nc and "guestAccelerators" not in nc
    assert nc["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableIntegrityMonitoring": True}
    assert nc["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert i["autoscaling"] == {"totalMinNodeCount": 2, "totalMaxNodeCount": 4}
    assert i["initialNodeCount"] == 1  # ceil(2 nodes / 3 default zones)
    assert i["name"] == "system"
    assert pool.protect


def test_system_pool_label_is_what_system_workloads_select():
    cfg = load_stack_file(EU_WEST)
    assert gke.system_node_config(cfg, "sa")["labels"] == SYSTEM_NODE_SELECTOR


def test_nodes_run_as_a_least_privilege_service_account(eu_west):
    account = eu_west.named("gcp:serviceaccount/account:Account", "eu-west-cluster-nodes")
    assert account.plain_inputs["accountId"] == "eu-west-cluster-nodes"
    members = eu_west.of_type("gcp:projects/iAMMember:IAMMember")
    assert sorted(m.plain_inputs["role"] for m in members) == sorted(gke.NODE_ROLES)
    assert {m.plain_inputs["member"] for m in members} == {f"serviceAccount:{account.outputs['email']}"}
    assert {m.plain_inputs["project"] for m in members} == {"gpu-fleet-prod"}
    for pool in eu_west.of_type(NODE_POOL):
        nc = pool.plain_inputs["nodeConfig"]
        assert nc["serviceAccount"] == account.outputs["email"]
        assert nc["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
        # Nodes boot with their roles in place (image pulls from Artifact Registry).
        assert {m.urn for m in members} <= set(pool.depends_on)


def test_every_gcp_resource_uses_the_regions_provider(eu_west):
    gcp_resources = [r for r in eu_west.resources if r.type.startswith("gcp:")]
    assert len(gcp_resources) >= 13
    for r in gcp_resources:
        provider = eu_west.provider_of(r)
        assert provider is not None, r.name
        assert provider.plain_inputs["project"] == "gpu-fleet-prod", r.name
        assert provider.plain_inputs["region"] == "europe-west4", r.name
    component = next(r for r in eu_west.resources if r.type == "gpufleet:index:GkeCluster")
    assert all(r.parent == component.urn for r in gcp_resources)


def test_kubeconfig_is_a_secret_for_the_gke_auth_plugin(eu_west):
    assert "kubeconfig" in eu_west.secret_outputs
    doc = yaml.safe_load(eu_west.stack_outputs["kubeconfig"])
    context = "gke_gpu-fleet-prod_europe-west4_eu-west-cluster"
    assert doc["current-context"] == context
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://172.16.0.34"
    assert cluster["certificate-authority-data"] == mock_outputs._CA
    user = doc["users"][0]["user"]["exec"]
    assert user["command"] == "gke-gcloud-auth-plugin"
    assert user["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert user["provideClusterInfo"] is True
    assert eu_west.stack_outputs["clusterName"] == "eu-west-cluster"


def test_kubernetes_provider_from_the_kubeconfig(eu_west):
    provider = eu_west.named("pulumi:providers:kubernetes", "eu-west-cluster-k8s")
    component = next(r for r in eu_west.resources if r.type == "gpufleet:index:GkeCluster")
    assert provider.parent == component.urn
    assert is_secret(provider.inputs["kubeconfig"])
    assert provider.plain_inputs["kubeconfig"] == eu_west.stack_outputs["kubeconfig"]
    assert provider.plain_inputs["enableServerSideApply"] in (True, "true")
    # Helm releases through it wait for pods, so the system nodes must exist first; GPU pools
    # are not waited for (a GPU capacity shortage holds back only the models).
    system = _pool(eu_west, "system")
    assert system.urn in provider.depends_on
    assert not {p.urn for p in eu_west.of_type(NODE_POOL) if p.urn != system.urn} & set(provider.depends_on)


def test_weight_cache_storage_class_is_filestore_basic_ssd(eu_west):
    assert eu_west.stack_outputs["storageClass"] == "premium-rwx"


def test_spot_pool(fleet):
    def spot(raw):
        raw["gpuPools"][0]["capacity"] = ["spot"]

    rec = _run(fleet, _cfg(spot))
    i = _pool(rec, "h100").plain_inputs
    assert i["nodeConfig"]["spot"] is True
    assert i["autoscaling"]["locationPolicy"] == "ANY"


def test_reservation_affinity(fleet):
    def reserved(raw):
        raw["gpuPools"][0].update(capacity=["reserved"], reservations=["h100-eu-west4-b"], zones=["europe-west4-b"])

    rec = _run(fleet, _cfg(reserved))
    i = _pool(rec, "h100").plain_inputs
    assert i["nodeConfig"]["reservationAffinity"] == {
        "consumeReservationType": "SPECIFIC_RESERVATION",
        "key": "compute.googleapis.com/reservation-name",
        "values": ["h100-eu-west4-b"],
    }
    assert i["nodeConfig"]["spot"] is False
    assert i["nodeLocations"] == ["europe-west4-b"]
    assert i["autoscaling"]["locationPolicy"] == "ANY"


def test_reservations_then_on_demand_fall_back(fleet):
    def reserved(raw):
        raw["gpuPools"][0].update(capacity=["reserved", "on-demand"], reservations=["h100-eu-west4-b"])

    rec = _run(fleet, _cfg(reserved))
    nc = _pool(rec, "h100").plain_inputs["nodeConfig"]
    assert nc["reservationAffinity"] == {"consumeReservationType": "ANY_RESERVATION"}
    assert nc["spot"] is False


def test_node_locations_default_to_the_zones_offering_the_shape(fleet):
    def anywhere(raw):
        del raw["gpuPools"][0]["zones"]
        raw["gpuPools"][0]["minNodes"] = 4

    rec = _run(fleet, _cfg(anywhere))
    i = _pool(rec, "h100").plain_inputs
    assert i["nodeLocations"] == ["europe-west4-b", "europe-west4-c"]  # not -a: no H100s there
    assert i["initialNodeCount"] == 0
    assert i["autoscaling"]["totalMinNodeCount"] == 4


def test_public_access_cidrs_open_the_public_endpoint_to_them_only(fleet):
    def public(raw):
        raw["cluster"]["publicAccessCidrs"] = ["203.0.113.0/24"]

    rec = _run(fleet, _cfg(public))
    i = rec.named(CLUSTER, "eu-west-cluster").plain_inputs
    assert i["privateClusterConfig"]["enablePrivateEndpoint"] is False
    assert i["privateClusterConfig"]["enablePrivateNodes"] is True
    assert i["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "203.0.113.0/24", "displayName": "public-access-0"}],
        "gcpPublicCidrsAccessEnabled": False,
    }


def test_existing_network_is_looked_up_not_created(fleet):
    def existing(raw):
        raw["network"] = {"existing": {"network": "shared-vpc", "subnetwork": "gke-eu-west4",
                                       "podsRangeName": "pods", "servicesRangeName": "services"}}

    rec = _run(fleet, _cfg(existing))
    for t in ("network:Network", "subnetwork:Subnetwork", "router:Router", "routerNat:RouterNat"):
        assert rec.of_type(f"gcp:compute/{t}") == []
    calls = {c.token: c for c in rec.calls}
    assert calls["gcp:compute/getNetwork:getNetwork"].args["name"] == "shared-vpc"
    sub_call = calls["gcp:compute/getSubnetwork:getSubnetwork"]
    assert (sub_call.args["name"], sub_call.args["region"]) == ("gke-eu-west4", "europe-west4")
    provider = rec.named("pulumi:providers:gcp", "eu-west-gcp")
    for call in rec.calls:
        assert call.provider.rsplit("::", 1)[0] == provider.urn, call.token
    i = rec.named(CLUSTER, "eu-west-cluster").plain_inputs
    assert i["network"] == "https://www.googleapis.com/compute/v1/projects/gpu-fleet-prod/global/networks/shared-vpc"
    assert i["subnetwork"].endswith("/projects/gpu-fleet-prod/regions/europe-west4/subnetworks/gke-eu-west4")
    assert i["ipAllocationPolicy"] == {"clusterSecondaryRangeName": "pods", "servicesSecondaryRangeName": "services"}
    net = rec.stack_outputs["network"]
    assert net["networkId"] == "projects/gpu-fleet-prod/global/networks/shared-vpc"
    assert (net["nodeCidr"], net["podsCidr"]) == ("10.90.0.0/20", "10.92.0.0/14")


def test_new_network_makes_no_data_source_calls(eu_west):
    assert eu_west.calls == []


# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("base,max_len,expected", [
    ("eu-west-cluster", 40, "eu-west-cluster"),
    ("EU_West", 40, "eu-west"),
])
def test_gcp_name_short(base, max_len, expected):
    assert gke.gcp_name(base, max_len) == expected


def test_gcp_name_truncates_with_a_hash():
    a = gke.gcp_name("a-very-long-stack-name-for-production-europe-cluster-nodes", 30)
    b = gke.gcp_name("a-very-long-stack-name-for-production-europe-cluster-nodez", 30)
    assert len(a) <= 30 and len(b) <= 30 and a != b
    assert a.startswith("a-very-long-stack-name")


@pytest.mark.parametrize("min_nodes,zones", [(0, 3), (1, 2), (2, 3), (4, 3), (6, 2)])
def test_initial_node_count_reaches_the_minimum(min_nodes, zones):
    per_zone = gke.initial_node_count(min_nodes, zones)
    assert per_zone * zones >= min_nodes
    assert per_zone == math.ceil(min_nodes / zones)


def test_kubeconfig_document():
    doc = yaml.safe_load(gke.render_kubeconfig("ctx", "10.0.0.2", "Q0E="))
    assert doc["clusters"] == [{"name": "ctx", "cluster": {"server": "https://10.0.0.2", "certificate-authority-data": "Q0E="}}]
    assert doc["contexts"] == [{"name": "ctx", "context": {"cluster": "ctx", "user": "ctx"}}]


def test_missing_secondary_range_names_what_exists():
    class Range:
        def __init__(self, name, cidr):
            self.range_name, self.ip_cidr_range = name, cidr

    ranges = [Range("gke-pods", "10.1.0.0/16")]
    assert gke.secondary_range_cidr(ranges, "gke-pods", "sub") == "10.1.0.0/16"
    with pytest.raises(ValueError, match="no secondary range 'pods'; it has: gke-pods"):
        gke.secondary_range_cidr(ranges, "pods", "sub")


# --------------------------------------------------------------------------- admins

BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"


def test_admin_accounts_are_bound_to_cluster_admin(eu_west):
    expected = _raw()["cluster"]["adminAccounts"]
    assert any(a.endswith(".iam.gserviceaccount.com") for a in expected)  # the CI preview identity
    binding = eu_west.named(BINDING, "eu-west-cluster-admins")
    inputs = binding.plain_inputs
    assert inputs["metadata"]["name"] == gke.ADMIN_BINDING
    assert inputs["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}
    assert inputs["subjects"] == [{"kind": "User", "name": a, "apiGroup": "rbac.authorization.k8s.io"} for a in expected]
    provider = eu_west.named("pulumi:providers:kubernetes", "eu-west-cluster-k8s")
    assert eu_west.provider_of(binding) is provider
    (manifest,) = [obj for r, obj in eu_west.kubernetes_objects() if r is binding]
    assert validate(manifest) == (True, [])


def test_no_admin_accounts_no_binding(fleet):
    def none(raw):
        raw["cluster"]["adminAccounts"] = []

    rec = _run(fleet, _cfg(none))
    assert rec.of_type(BINDING) == []


def test_admins_do_not_depend_on_who_runs_pulumi(eu_west):
    # GKE's deployer reaches the API through its own IAM role: nothing reads the caller.
    assert not [c for c in eu_west.calls if "ClientConfig" in c.token or "Caller" in c.token]


@pytest.mark.parametrize("field,value,message", [
    ("adminAccounts", ["not-an-email"], r"cluster\.adminAccounts\[0\]"),
    ("adminPrincipalArns", ["arn:aws:iam::123456789012:role/x"], r"cluster\.adminPrincipalArns: only used on aws"),
])
def test_admin_fields_are_validated(field, value, message):
    def bad(raw):
        raw["cluster"][field] = value

    with pytest.raises(ConfigError, match=message):
        _cfg(bad)


def test_the_temporary_default_pool_runs_as_the_node_service_account(eu_west):
    account = eu_west.named("gcp:serviceaccount/account:Account", "eu-west-cluster-nodes")
    cluster = eu_west.named(CLUSTER, "eu-west-cluster")
    nc = cluster.plain_inputs["nodeConfig"]
    # Not the Compute Engine default account, which organisations often disable.
    assert nc["serviceAccount"] == account.outputs["email"]
    assert nc["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert cluster.plain_inputs["removeDefaultNodePool"] is True
    # It only seeds the removed pool: changing it must never replace the cluster.
    assert "nodeConfig" in cluster.ignore_changes
    roles = {m.urn for m in eu_west.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles <= set(cluster.depends_on)


def test_apis_are_not_touched_unless_enabled(eu_west):
    assert eu_west.of_type("gcp:projects/service:Service") == []


def test_enable_apis_enables_each_service_once_and_never_disables_it(fleet):
    rec = _run(fleet, _cfg(edit=lambda r: r["cluster"].update(enableApis=True)))
    services = rec.of_type("gcp:projects/service:Service")
    assert sorted(s.plain_inputs["service"] for s in services) == sorted(gke.REQUIRED_APIS)
    for s in services:
        assert s.plain_inputs["disableOnDestroy"] is False
        assert s.plain_inputs["disableDependentServices"] is False
        assert s.plain_inputs["project"] == "gpu-fleet-prod"
    urns = {s.urn for s in services}
    for type_ in (CLUSTER, NODE_POOL, "gcp:compute/network:Network", "gcp:compute/subnetwork:Subnetwork",
                  "gcp:serviceaccount/account:Account", "gcp:compute/router:Router"):
        for r in rec.of_type(type_):
            assert urns <= set(r.depends_on), f"{type_} {r.name} does not wait for the APIs"


COMPUTE_CLASS = "kubernetes:cloud.google.com/v1:ComputeClass"


def _tolerated(taint: dict, tolerations: list[dict]) -> bool:
    effect = {"NO_SCHEDULE": "NoSchedule"}[taint["effect"]]
    return any(t["key"] == taint["key"] and t["effect"] == effect
               and (t["operator"] == "Exists" or t.get("value") == taint["value"]) for t in tolerations)


@pytest.mark.parametrize("capacity,tiers", [
    (["on-demand", "spot"], [("h100-on-demand", False, None), ("h100-spot", True, None)]),
    (["reserved", "on-demand", "spot"], [("h100-reserved", False, "SPECIFIC_RESERVATION"),
                                         ("h100-on-demand", False, None), ("h100-spot", True, None)]),
])
def test_spot_mixed_with_other_capacity_is_node_pools_ordered_by_a_compute_class(fleet, capacity, tiers):
    def mixed(raw):
        raw["gpuPools"][0].update(capacity=capacity)
        if "reserved" in capacity:
            raw["gpuPools"][0]["reservations"] = ["h100-eu-west4-b"]

    cfg = _cfg(mixed)
    rec = _run(fleet, cfg)
    pools = [_pool(rec, name) for name, _, _ in tiers]
    assert not [r for r in rec.of_type(NODE_POOL) if r.name == "eu-west-cluster-h100"]
    for record, (name, spot, reservation) in zip(pools, tiers):
        i = record.plain_inputs
        nc = i["nodeConfig"]
        assert i["name"] == name and nc["spot"] is spot
        assert nc.get("reservationAffinity", {}).get("consumeReservationType") == reservation
        assert nc["labels"] == {"gpu-fleet/pool": "h100", "gpu-fleet/gpu": "h100",
                                "cloud.google.com/compute-class": "gpu-fleet-h100"}
        assert nc["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"},
                                {"key": "cloud.google.com/compute-class", "value": "gpu-fleet-h100",
                                 "effect": "NO_SCHEDULE"}]
        # Each tier may carry the whole pool; no floor per tier (the placeholders keep minNodes).
        assert i["autoscaling"] == {"totalMinNodeCount": 0, "totalMaxNodeCount": 23, "locationPolicy": "ANY"}
    cc = rec.named(COMPUTE_CLASS, "eu-west-cluster-h100-compute-class")
    assert cc.plain_inputs["metadata"]["name"] == "gpu-fleet-h100"
    assert cc.plain_inputs["spec"] == {"priorities": [{"nodepools": [name]} for name, _, _ in tiers],
                                       "nodePoolAutoCreation": {"enabled": False},
                                       "whenUnsatisfiable": "DoNotScaleUp"}
    # What models and placeholders wait for stands for every tier.
    assert {p.urn for p in pools} <= set(cc.depends_on)

    # Warm placeholders and model pods land on the class's node pools, and only through it.
    from gpu_fleet.components import model_deployment as md
    from gpu_fleet.components import warm_capacity as warm
    from gpu_fleet.components.sizing import size_model
    from gpu_fleet.components.config import pool_offering

    pool = cfg.gpu_pools[0]
    shape = pool_offering(cfg, pool).shape
    model = cfg.models[0]
    pod_specs = [warm.placeholder_deployment_spec("gcp", pool)["template"]["spec"],
                 md.pod_spec(model, pool, shape, size_model(model, shape), startup_budget=600,
                             secret_name="vllm-secrets")]
    for pod in pod_specs:
        assert pod["nodeSelector"]["cloud.google.com/compute-class"] == "gpu-fleet-h100"
        for record in pools:
            nc = record.plain_inputs["nodeConfig"]
            assert pod["nodeSelector"].items() <= nc["labels"].items()
            assert all(_tolerated(t, pod["tolerations"]) for t in nc["taints"])


def test_a_pool_that_is_one_node_pool_has_no_compute_class(eu_west):
    assert eu_west.of_type(COMPUTE_CLASS) == []
    assert "cloud.google.com/compute-class" not in _pool(eu_west, "h100").plain_inputs["nodeConfig"]["labels"]
