"""The NVIDIA GPU operator, configured for the cloud's node images.

The operator runs the GPU software stack on GPU nodes as DaemonSets. What the node image
already provides, the operator leaves alone:

- EKS, ``AL2023_x86_64_NVIDIA`` AMI: driver and container toolkit ship in the AMI; the
  operator adds the device plugin, feature discovery and dcgm-exporter.
- GKE, COS: GKE installs the driver and runs its own device plugin (node pools use
  ``gpu_driver_version: LATEST``, see :mod:`gpu_fleet.components.gke_cluster`); the operator adds
  the container toolkit (GKE's driver paths, CDI), feature discovery and dcgm-exporter,
  and leaves ``nvidia.com/gpu`` to GKE's plugin so two plugins never advertise it.

dcgm-exporter runs in Kubernetes mode: ``DCGM_FI_DEV_GPU_UTIL`` carries the ``pod``,
``namespace`` and ``container`` using each GPU, which the HPA recording rules need. Its
ServiceMonitor comes from :func:`gpu_fleet.components.monitoring_rules.gpu_operator_dcgm_values`.
The metric and the exporter's environment variables were read at the version the chart
deploys (:data:`gpu_fleet.components.pins.DCGM_EXPORTER`).
"""

from __future__ import annotations

from typing import Literal, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from . import pins
from .capacity_tiers import COMPUTE_CLASS_KEY
from .contract import FLEET_LABELS, GPU_TOLERATION, SYSTEM_NODE_SELECTOR
from .monitoring_rules import GPU_OPERATOR_NAMESPACE, gpu_operator_dcgm_values

#: The chart pin and its source: :data:`gpu_fleet.components.pins.GPU_OPERATOR`. The value keys
#: below are checked against that version's values.yaml and templates by
#: ``tests/components/test_helm_values.py``.
CHART = pins.GPU_OPERATOR.name
CHART_REPOSITORY = pins.GPU_OPERATOR.repository
CHART_VERSION = pins.GPU_OPERATOR.version
#: The monitoring rules find dcgm-exporter's series by this namespace.
NAMESPACE = GPU_OPERATOR_NAMESPACE
#: Where GKE's driver installer puts the driver; the toolkit installs next to it (a
#: writable, persistent directory on COS), as NVIDIA's GKE guide prescribes.
GKE_NVIDIA_DIR = "/home/kubernetes/bin/nvidia"
#: The operator's DaemonSets and the operator itself ask for these priority classes; GKE
#: admits them outside kube-system only under a ResourceQuota scoped to them.
CRITICAL_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
#: The quota exists to admit those pods, not to cap them: room for every operand pod on
#: the largest cluster the autoscalers reach.
CRITICAL_PODS_QUOTA = "1000"
#: Seconds: the release waits for the operator and the feature-discovery DaemonSet, whose
#: pods land on GPU nodes that may still be booting.
RELEASE_TIMEOUT_SECONDS = 1800
LABELS = {
    "app.kubernetes.io/name": "gpu-operator",
    **FLEET_LABELS,
    "app.kubernetes.io/managed-by": "pulumi",
}


class _RequiredArgs(TypedDict):
    cloud: Literal["aws", "gcp"]


class GpuSoftwareArgs(_RequiredArgs, total=False):
    """Arguments of :class:`GpuSoftware`.

    cloud: ``aws`` (EKS, AL2023 NVIDIA AMI) or ``gcp`` (GKE, COS); required.
    chart_version: the gpu-operator chart version; default :data:`CHART_VERSION`.
    """

    chart_version: Optional[str]


def _env(**variables: str) -> list[dict]:
    return [{"name": k, "value": v} for k, v in variables.items()]


def merge_values(base: dict, extra: dict, path: str = "") -> dict:
    """``base`` with ``extra`` merged in, key by key; two different values for one key
    are an error rather than a silent override (the two halves are owned separately)."""
    out = dict(base)
    for key, value in extra.items():
        where = f"{path}.{key}" if path else key
        if key not in out:
            out[key] = value
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge_values(out[key], value, where)
        elif out[key] != value:
            raise ValueError(f"gpu-operator values: {where} is set twice ({out[key]!r} and {value!r})")
    return out


def gpu_operator_values(cloud: Literal["aws", "gcp"]) -> dict:
    """Helm values of the gpu-operator chart for one cloud (without the ServiceMonitor)."""
    system_nodes = dict(SYSTEM_NODE_SELECTOR)
    dcgm_env = {"DCGM_EXPORTER_KUBERNETES": "true"}
    # On GKE a pool whose capacity order takes one node pool per type taints its nodes with
    # its ComputeClass (gpu_fleet.components.capacity_tiers): the node agents tolerate any class.
    tolerations = [dict(GPU_TOLERATION)]
    if cloud == "gcp":
        tolerations.append({"key": COMPUTE_CLASS_KEY, "operator": "Exists", "effect": "NoSchedule"})
    values: dict = {
        # The controller and NFD's master and garbage collector belong on CPU nodes.
        "operator": {"nodeSelector": system_nodes},
        "daemonsets": {"tolerations": tolerations},
        "node-feature-discovery": {
            "worker": {"tolerations": [dict(t) for t in tolerations]},
            "master": {"nodeSelector": system_nodes},
            "gc": {"nodeSelector": system_nodes},
        },
        # Both node images come with a driver.
        "driver": {"enabled": False},
        # Defaults to enabled since v26.3; serving does not use confidential computing.
        "ccManager": {"enabled": False},
    }
    if cloud == "gcp":
        values |= {
            "hostPaths": {"driverInstallDir": GKE_NVIDIA_DIR},
            "toolkit": {
                "enabled": True,
                "installDir": GKE_NVIDIA_DIR,
                # GKE 1.33+ (containerd 2): the toolkit must edit containerd's config file,
                # not a `containerd config dump`, or it breaks the node's CNI settings.
                # The nvidia runtime stays opt-in (runtimeClassName: nvidia, as the operator's
                # own pods use): as containerd's default it would honour the CUDA images'
                # NVIDIA_VISIBLE_DEVICES=all and hand every GPU of the node to each vLLM pod,
                # bypassing GKE's device plugin allocation.
                "env": _env(RUNTIME_CONFIG_SOURCE="file", CONTAINERD_SET_AS_DEFAULT="false"),
            },
            # cdi.enabled alone makes CDI the default; cdi.default is no longer read
            # (NVIDIA/gpu-operator@v26.3.3 api/nvidia/v1/clusterpolicy_types.go CDIConfigSpec.Default).
            "cdi": {"enabled": True},
            "devicePlugin": {"enabled": False},
        }
        # GKE's device plugin names GPUs nvidia0, nvidia1...: map pods by device name.
        dcgm_env["DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE"] = "device-name"
    else:
        values |= {"toolkit": {"enabled": False}, "devicePlugin": {"enabled": True}}
    values["dcgmExporter"] = {"enabled": True, "env": _env(**dcgm_env)}
    return values


def namespace_manifest() -> dict:
    """The operator's namespace: its operands are privileged, so Pod Security allows it."""
    labels = {
        **LABELS,
        "pod-security.kubernetes.io/enforce": "privileged",
        "pod-security.kubernetes.io/audit": "privileged",
        "pod-security.kubernetes.io/warn": "privileged",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}


def critical_pods_quota_manifest() -> dict:
    """GKE only: the ResourceQuota that admits system-*-critical pods in the namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpu-operator-critical-pods", "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "hard": {"pods": CRITICAL_PODS_QUOTA},
            "scopeSelector": {
                "matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": list(CRITICAL_PRIORITY_CLASSES)}
                ]
            },
        },
    }


class GpuSoftware(pulumi.ComponentResource):
    """The NVIDIA GPU operator in its own namespace (``gpufleet:index:GpuSoftware``)."""

    def __init__(self, name: str, args: GpuSoftwareArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:GpuSoftware", name, None, opts)
        cloud = args["cloud"]
        self.chart_version = args.get("chart_version") or CHART_VERSION
        here = pulumi.ResourceOptions(parent=self)

        ns = namespace_manifest()
        self.namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata=ns["metadata"], opts=here)
        ready = [self.namespace]
        if cloud == "gcp":
            quota = critical_pods_quota_manifest()
            self.critical_pods_quota = k8s.core.v1.ResourceQuota(
                f"{name}-critical-pods",
                metadata={**quota["metadata"], "namespace": self.namespace.metadata["name"]},
                spec=quota["spec"],
                opts=here,
            )
            ready.append(self.critical_pods_quota)

        self.release = k8s.helm.v3.Release(
            name,
            name=CHART,
            chart=CHART,
            version=self.chart_version,
            repository_opts={"repo": CHART_REPOSITORY},
            namespace=self.namespace.metadata["name"],
            create_namespace=False,
            values=merge_values(gpu_operator_values(cloud), gpu_operator_dcgm_values()),
            atomic=True,
            timeout=RELEASE_TIMEOUT_SECONDS,
            max_history=10,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
        )
        self.register_outputs({"namespace": self.namespace.metadata["name"], "chartVersion": self.chart_version})
