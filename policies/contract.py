"""The names the fleet and its policy pack must agree on, defined once.

``components/contract.py`` is the source; ``policies/contract.py`` is a byte-for-byte copy
because the pack runs in its own virtualenv and cannot import gpu-fleet
(tests/test_layers.py fails when the two differ: edit this file, then copy it). Standard
library only, for the same reason.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

# --------------------------------------------------------------------------- nodes

#: Node label every pool carries; workloads select their pool with it.
POOL_LABEL = "gpu-fleet/pool"
#: Node label with the GPU kind (``h100``, ``a100-80gb``...) on GPU pools.
GPU_LABEL = "gpu-fleet/gpu"
SYSTEM_POOL = "system"
#: The CPU system nodes every add-on (monitoring, operators) runs on.
SYSTEM_NODE_SELECTOR = {POOL_LABEL: SYSTEM_POOL}
#: The extended resource a GPU is requested as.
GPU_RESOURCE = "nvidia.com/gpu"
#: Keeps everything but GPU workloads off GPU nodes (GKE puts the same taint on GPU nodes
#: itself). EKS and GKE both spell the effect ``NO_SCHEDULE`` in their node pool APIs.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NO_SCHEDULE"}
#: Tolerates :data:`GPU_TAINT` whatever its value.
GPU_TOLERATION = {"key": GPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}

# --------------------------------------------------------------------------- objects and pods

#: On every Kubernetes object the fleet creates (and as tags on its global resources).
FLEET_LABELS = {"app.kubernetes.io/part-of": "gpu-fleet"}
#: The stack's ``environment`` (``production`` / ``non-production``) on its serving
#: namespace and autoscaling objects; the policy pack allows scale to zero only under
#: ``non-production``.
ENVIRONMENT_LABEL = "gpu-fleet/environment"
NON_PRODUCTION = "non-production"
#: Pod labels of every vLLM model server.
VLLM_NAME_LABEL = "app.kubernetes.io/name"
VLLM_NAME = "vllm"
VLLM_POD_LABELS = {VLLM_NAME_LABEL: VLLM_NAME}
MODEL_LABEL = "gpu-fleet/model"
#: The label of pods that use the cache (the gateway's, or LMCache on): only they get its
#: credentials and its egress NetworkPolicy.
CACHE_CLIENT_LABEL = "gpu-fleet/cache-client"
CACHE_CLIENT_LABELS = {CACHE_CLIENT_LABEL: "true"}
#: The variable LMCache reads its remote storage URL from (lmcache 0.3.5 lmcache/v1/config.py:
#: ``LMCACHE_`` + the setting's name, ``remote_url``).
LMCACHE_URL_ENV = "LMCACHE_REMOTE_URL"

#: Deployment, Service, PDB and HPA of a model are ``vllm-<model>``; the recording rules
#: derive the model from that name.
DEPLOYMENT_PREFIX = "vllm-"


def deployment_name(model_name: str) -> str:
    """``vllm-<model>``."""
    return f"{DEPLOYMENT_PREFIX}{model_name}"


# --------------------------------------------------------------------------- secrets

#: The Secret in the serving namespace holding the Hugging Face token and the API key,
#: and its keys.
SERVING_SECRET = "vllm-secrets"
HF_TOKEN_KEY = "HF_TOKEN"
API_KEY_KEY = "VLLM_API_KEY"
#: The Secret with the regional cache's URL and AUTH token.
CONNECTION_SECRET = "redis-connection"

# --------------------------------------------------------------------------- metrics

#: External metric names served by prometheus-adapter (or read by KEDA) and scaled on.
GPU_UTILIZATION_METRIC = "dcgm_gpu_utilization"
PENDING_REQUESTS_METRIC = "llm_pending_requests"
#: vLLM's own count of waiting requests.
VLLM_WAITING_METRIC = "vllm:num_requests_waiting"
#: The label the recording rules put on both metrics and the HPA selects on.
DEPLOYMENT_LABEL = "deployment"

# --------------------------------------------------------------------------- Kubernetes defaults
# autoscaling/v2 defaults (kubernetes/kubernetes pkg/apis/autoscaling/v2/defaults.go and the
# controller's --horizontal-pod-autoscaler-downscale-stabilization, default 5 m).

HPA_DEFAULT_MIN_REPLICAS = 1
HPA_DEFAULT_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}],
}
#: KEDA's ScaledObject ``minReplicaCount`` default (kedacore/keda-docs
#: ``content/docs/2.15/reference/scaledobject-spec.md``: "Optional. Default: 0").
KEDA_DEFAULT_MIN_REPLICA_COUNT = 0
HPA_DEFAULT_SCALE_DOWN = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}

# --------------------------------------------------------------------------- quantities

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE])?$")
_QUANTITY_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity (``"75"``, ``"750m"``, ``"1.5Gi"``, ``"1e3"``, or a
    JSON number) as a Decimal; ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    m = _QUANTITY.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _QUANTITY_SUFFIX[suffix]
