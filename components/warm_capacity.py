"""Warm GPU nodes: ``minNodes`` spare nodes per pool, kept by placeholder pods (both clouds).

Neither Karpenter (no minimum size) nor GKE's autoscaler (its minimum is a floor under the
models' own nodes, not spare room beside them) keeps a node free for the next replica. The
over-provisioning pattern does: ``minNodes`` pods per pool each ask for a whole node's GPUs
at a negative priority; a model pod (priority 0) that finds no free GPUs preempts one, takes
its node at once, and the evicted placeholder goes Pending, so the autoscaler brings the
next node while the model serves. Placeholders never preempt anything (``preemptionPolicy:
Never``) and are not awaited: in a shortage they stay Pending without holding back
``pulumi up``. The priority (-10) is not below the cluster autoscaler's default cutoff for
expendable pods (-10: pods below it never trigger a scale-up; kubernetes/autoscaler
cluster-autoscaler FAQ, unverified here for GKE's managed autoscaler).
"""

from __future__ import annotations

from typing import Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from . import pins
from .capacity_tiers import compute_class_tolerations, pool_node_selector
from .config import GpuPoolConfig
from .contract import FLEET_LABELS, GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL
from .model_deployment import SKIP_AWAIT_ANNOTATION

#: Below every workload's priority (0), so any model pod preempts them.
WARM_PRIORITY_CLASS = "gpu-fleet-warm-capacity"
WARM_PRIORITY = -10
#: A container that does nothing (gpu_fleet.components.pins.PAUSE).
PAUSE_IMAGE = pins.PAUSE.image
#: The pause image's conventional unprivileged user (nobody).
PLACEHOLDER_UID = 65535
NAMESPACE = "kube-system"


def placeholder_labels(pool: GpuPoolConfig) -> dict:
    return {"app.kubernetes.io/name": "gpu-warm-capacity", POOL_LABEL: pool.name}


def placeholder_deployment_spec(cloud: str, pool: GpuPoolConfig) -> dict:
    """``minNodes`` pods that each hold one whole node of the pool until a model needs it.

    They select and tolerate what the pool's model pods do (gpu_fleet.components.capacity_tiers), so
    a warm node comes from the same NodePools (by weight) or ComputeClass priorities.
    """
    labels = placeholder_labels(pool)
    return {
        "replicas": pool.min_nodes,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": {**labels, **FLEET_LABELS}},
            "spec": {
                "priorityClassName": WARM_PRIORITY_CLASS,
                "nodeSelector": pool_node_selector(cloud, pool),
                "tolerations": [dict(GPU_TOLERATION), *compute_class_tolerations(cloud, pool)],
                # Preempted at once: a model pod is waiting for the GPUs.
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": PLACEHOLDER_UID, "runAsGroup": PLACEHOLDER_UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "pause",
                    "image": PAUSE_IMAGE,
                    # All the node's GPUs: one placeholder per node, so each is a whole warm node.
                    "resources": {
                        "requests": {GPU_RESOURCE: pool.gpus_per_node, "cpu": "10m", "memory": "16Mi"},
                        "limits": {GPU_RESOURCE: pool.gpus_per_node, "cpu": "10m", "memory": "16Mi"},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "runAsNonRoot": True, "runAsUser": PLACEHOLDER_UID,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            },
        },
    }


def placeholder_network_policy_spec(pool: GpuPoolConfig) -> dict:
    """Placeholders talk to nothing and nothing talks to them."""
    return {"podSelector": {"matchLabels": placeholder_labels(pool)},
            "policyTypes": ["Ingress", "Egress"]}




class WarmCapacityArgs(TypedDict):
    """Arguments of :class:`WarmCapacity`: the region's cloud and GPU pools (``minNodes``
    placeholders each)."""

    cloud: str
    pools: list[GpuPoolConfig]


class WarmCapacity(pulumi.ComponentResource):
    """The warm-capacity PriorityClass and each pool's placeholders
    (``gpufleet:index:WarmCapacity``). Pass the pools' provisioning objects in
    ``opts.depends_on`` (on EKS the NodePools must exist for the placeholders to get nodes)."""

    def __init__(self, name: str, args: WarmCapacityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:WarmCapacity", name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        warm = k8s.scheduling.v1.PriorityClass(
            f"{name}-priority", metadata={"name": WARM_PRIORITY_CLASS, "labels": dict(FLEET_LABELS)},
            value=WARM_PRIORITY, global_default=False, preemption_policy="Never",
            description="Placeholder pods keeping GPU nodes warm; any workload preempts them.", opts=here,
        )
        for pool in args["pools"]:
            if not pool.min_nodes:
                continue
            meta = {"name": f"gpu-warm-{pool.name}", "namespace": NAMESPACE, "labels": dict(FLEET_LABELS)}
            k8s.networking.v1.NetworkPolicy(f"{name}-{pool.name}", metadata=meta,
                                            spec=placeholder_network_policy_spec(pool), opts=here)
            k8s.apps.v1.Deployment(
                f"{name}-{pool.name}",
                # Pending in a shortage by design: never hold back pulumi up.
                metadata={**meta, "annotations": {SKIP_AWAIT_ANNOTATION: "true"}},
                spec=placeholder_deployment_spec(args["cloud"], pool),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[warm]),
            )
        self.register_outputs({})
