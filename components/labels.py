"""Labels and taints shared across components, whatever the cloud.

Workloads select pools by these labels and tolerate this taint, so the EKS and GKE
clusters must agree on them exactly.
"""

from __future__ import annotations

#: Node label every pool carries; workloads select their pool with it.
POOL_LABEL = "gpu-fleet/pool"
#: Node label with the GPU kind (``h100``, ``a100-80gb``...) on GPU pools.
GPU_LABEL = "gpu-fleet/gpu"
SYSTEM_POOL = "system"
#: On every Kubernetes object the fleet creates (and as tags on its global resources).
FLEET_LABELS = {"app.kubernetes.io/part-of": "gpu-fleet"}
#: Keeps everything but GPU workloads off GPU nodes (GKE puts the same taint on GPU nodes
#: itself). EKS and GKE both spell the effect ``NO_SCHEDULE`` in their node pool APIs.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
#: The stack's ``environment`` (``production`` / ``non-production``) on its serving
#: namespace and autoscaling objects; the policy pack allows scale to zero only under
#: ``non-production``.
ENVIRONMENT_LABEL = "gpu-fleet/environment"
