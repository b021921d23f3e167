"""GpuSoftware: the NVIDIA GPU operator release, its namespace and GKE quota, offline."""

from __future__ import annotations

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from gpu_fleet.components import gpu_software as gs
from gpu_fleet.components.monitoring_rules import gpu_operator_dcgm_values
from gpu_fleet.engine import Recording
from gpu_fleet.manifests import KUBERNETES_VERSION

RELEASE = "kubernetes:helm.sh/v3:Release"
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _env(values: dict) -> dict:
    return {e["name"]: e["value"] for e in values["dcgmExporter"]["env"]}


def _run(fleet, cloud: str, **extra) -> Recording:
    def program():
        provider = k8s.Provider("cluster-k8s", kubeconfig="{}")
        gs.GpuSoftware("region-gpu-software", {"cloud": cloud, **extra},
                       opts=pulumi.ResourceOptions(providers={"kubernetes": provider}))

    return fleet.run(program, stack="eu-west" if cloud == "gcp" else "us-east")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_both_clouds_use_the_node_images_driver(cloud):
    values = gs.gpu_operator_values(cloud)
    assert values["driver"] == {"enabled": False}
    # GKE node pools of a pool with capacity tiers carry their ComputeClass taint too.
    tolerations = [TOLERATION] + ([{"key": "cloud.google.com/compute-class", "operator": "Exists",
                                    "effect": "NoSchedule"}] if cloud == "gcp" else [])
    assert values["daemonsets"]["tolerations"] == tolerations
    assert values["node-feature-discovery"]["worker"]["tolerations"] == tolerations
    assert values["operator"]["nodeSelector"] == {"gpu-fleet/pool": "system"}
    assert values["node-feature-discovery"]["master"]["nodeSelector"] == {"gpu-fleet/pool": "system"}
    assert values["node-feature-discovery"]["gc"]["nodeSelector"] == {"gpu-fleet/pool": "system"}
    assert values["dcgmExporter"]["enabled"] is True
    # Kubernetes mode: DCGM_FI_DEV_GPU_UTIL carries the pod and namespace using the GPU.
    assert _env(values)["DCGM_EXPORTER_KUBERNETES"] == "true"
    assert values["ccManager"] == {"enabled": False}


def test_eks_ami_ships_the_toolkit_the_operator_adds_the_device_plugin():
    values = gs.gpu_operator_values("aws")
    assert values["toolkit"] == {"enabled": False}
    assert values["devicePlugin"] == {"enabled": True}
    assert "hostPaths" not in values and "cdi" not in values
    assert "DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE" not in _env(values)


def test_gke_follows_nvidias_gke_paths():
    values = gs.gpu_operator_values("gcp")
    assert values["hostPaths"] == {"driverInstallDir": "/home/kubernetes/bin/nvidia"}
    assert values["toolkit"] == {
        "enabled": True,
        "installDir": "/home/kubernetes/bin/nvidia",
        # The nvidia runtime is not containerd's default: GPUs come only from the device plugin.
        "env": [{"name": "RUNTIME_CONFIG_SOURCE", "value": "file"}, {"name": "CONTAINERD_SET_AS_DEFAULT", "value": "false"}],
    }
    assert values["cdi"] == {"enabled": True}
    # GKE's own device plugin advertises nvidia.com/gpu; a second one must not.
    assert values["devicePlugin"] == {"enabled": False}
    assert _env(values)["DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE"] == "device-name"


def test_values_differ_per_cloud():
    aws, gcp = gs.gpu_operator_values("aws"), gs.gpu_operator_values("gcp")
    assert aws["toolkit"]["enabled"] is False and gcp["toolkit"]["enabled"] is True
    assert aws["devicePlugin"] != gcp["devicePlugin"]


def test_merge_values_merges_nested_keys_and_refuses_conflicts():
    base = {"dcgmExporter": {"enabled": True, "env": []}}
    merged = gs.merge_values(base, {"dcgmExporter": {"serviceMonitor": {"enabled": True}}, "x": 1})
    assert merged == {"dcgmExporter": {"enabled": True, "env": [], "serviceMonitor": {"enabled": True}}, "x": 1}
    assert base == {"dcgmExporter": {"enabled": True, "env": []}}
    assert gs.merge_values(base, {"dcgmExporter": {"enabled": True}}) == base
    with pytest.raises(ValueError, match="dcgmExporter.enabled is set twice"):
        gs.merge_values(base, {"dcgmExporter": {"enabled": False}})


def test_monitoring_values_merge_into_both_clouds():
    for cloud in ("aws", "gcp"):
        merged = gs.merge_values(gs.gpu_operator_values(cloud), gpu_operator_dcgm_values())
        assert merged["dcgmExporter"]["env"] == gs.gpu_operator_values(cloud)["dcgmExporter"]["env"]


# --------------------------------------------------------------------------- component


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_release_is_pinned_atomic_and_uses_the_values(fleet, cloud):
    rec = _run(fleet, cloud)
    release = rec.named(RELEASE, "region-gpu-software")
    i = release.plain_inputs
    assert (i["chart"], i["name"], i["version"]) == ("gpu-operator", "gpu-operator", "v26.3.3")
    assert i["repositoryOpts"] == {"repo": "https://helm.ngc.nvidia.com/nvidia"}
    assert i["namespace"] == "gpu-operator"
    assert i["createNamespace"] is False
    assert i["atomic"] is True
    assert i["timeout"] == 1800
    assert i["values"] == gs.merge_values(gs.gpu_operator_values(cloud), gpu_operator_dcgm_values())
    provider = rec.provider_of(release)
    assert provider is not None and provider.name == "cluster-k8s"
    assert rec.named("kubernetes:core/v1:Namespace", "region-gpu-software-namespace").urn in release.depends_on


def test_gke_quota_admits_critical_priority_pods_before_the_release(fleet):
    rec = _run(fleet, "gcp")
    quota = rec.named("kubernetes:core/v1:ResourceQuota", "region-gpu-software-critical-pods")
    spec = quota.plain_inputs["spec"]
    assert spec["scopeSelector"] == {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["system-node-critical", "system-cluster-critical"]}
    ]}
    assert spec["hard"] == {"pods": "1000"}
    assert quota.plain_inputs["metadata"]["namespace"] == "gpu-operator"
    assert quota.urn in rec.named(RELEASE, "region-gpu-software").depends_on


def test_eks_needs_no_quota(fleet):
    rec = _run(fleet, "aws")
    assert rec.of_type("kubernetes:core/v1:ResourceQuota") == []


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_namespace_allows_privileged_pods(fleet, cloud):
    rec = _run(fleet, cloud)
    labels = rec.named("kubernetes:core/v1:Namespace", "region-gpu-software-namespace").plain_inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["app.kubernetes.io/part-of"] == "gpu-fleet"


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_every_kubernetes_object_is_strictly_valid(fleet, cloud):
    objects = _run(fleet, cloud).kubernetes_objects()
    assert {m["kind"] for _, m in objects} == ({"Namespace", "ResourceQuota"} if cloud == "gcp" else {"Namespace"})
    for record, manifest in objects:
        assert manifest["metadata"]["name"], record.name
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_chart_version_can_be_overridden(fleet):
    rec = _run(fleet, "aws", chart_version="v26.7.1")
    assert rec.named(RELEASE, "region-gpu-software").plain_inputs["version"] == "v26.7.1"
