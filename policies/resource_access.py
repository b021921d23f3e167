"""What every rule of the pack reads resources with: the type tokens, value access through
secrets and proxies, and units. Imports only ``pulumi_policy``, the standard library and the
pack's own modules (see ``rules.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Optional

from pulumi_policy import PolicyConfigSchema, Secret

import contract
from contract import GPU_RESOURCE, VLLM_NAME, VLLM_NAME_LABEL

# --------------------------------------------------------------------------- type tokens

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
#: ``k8s.apiextensions.CustomResource`` registers as ``kubernetes:<group>/<version>:<Kind>``.
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
ELASTICACHE = "aws:elasticache/replicationGroup:ReplicationGroup"
MEMORYSTORE = "gcp:redis/instance:Instance"
ROUTE53_RECORD = "aws:route53/record:Record"
ROUTE53_HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
GLOBAL_ROUTING = "gpufleet:index:GlobalRouting"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"

#: Kubernetes objects with a pod template, and where the pod spec sits in each.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    DEPLOYMENT: ("spec", "template", "spec"),
    STATEFUL_SET: ("spec", "template", "spec"),
    DAEMON_SET: ("spec", "template", "spec"),
    JOB: ("spec", "template", "spec"),
    CRON_JOB: ("spec", "jobTemplate", "spec", "template", "spec"),
    POD: ("spec",),
}
POD_LABEL_PATHS: dict[str, tuple[str, ...]] = {
    t: (*path[:-1], "metadata", "labels") if t != POD else ("metadata", "labels") for t, path in POD_SPEC_PATHS.items()
}

# --------------------------------------------------------------------------- value access


def plain(value: Any) -> Any:
    """``value`` without its ``pulumi_policy.Secret`` wrapper(s)."""
    while isinstance(value, Secret):
        value = value.value
    return value


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def get(obj: Any, *path: Any, default: Any = None) -> Any:
    """``obj[path[0]][path[1]]...`` through secrets, Mappings and Sequences; ``default``
    when a step is missing or the value is None."""
    for key in path:
        obj = plain(obj)
        if isinstance(key, int):
            if not _is_list(obj) or not -len(obj) <= key < len(obj):
                return default
        elif not isinstance(obj, Mapping) or key not in obj:
            return default
        obj = obj[key]
    obj = plain(obj)
    return default if obj is None else obj


def items(value: Any) -> list:
    """The elements of a list value (secrets unwrapped), or [] if it is not a list."""
    value = plain(value)
    return [plain(v) for v in value] if _is_list(value) else []


def mapping(value: Any) -> Mapping:
    value = plain(value)
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> str:
    """A number for messages: 2.0 -> ``2``, Decimal("0.750") -> ``0.75``."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return format(Decimal(str(value)).normalize(), "f")
    return str(value)


def settings(args: Any, schema: PolicyConfigSchema) -> dict:
    """The policy's config: its schema defaults, overridden by ``args.get_config()``."""
    merged = {k: v["default"] for k, v in schema.properties.items() if "default" in v}
    merged.update(args.get_config() or {})
    return merged


def _schema(**properties: dict) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


# --------------------------------------------------------------------------- pods


def pod_spec(args: Any) -> Optional[Mapping]:
    path = POD_SPEC_PATHS.get(args.resource_type)
    return mapping(get(args.props, *path)) if path else None


def _containers(spec: Mapping) -> list[Mapping]:
    return [mapping(c) for key in ("initContainers", "containers") for c in items(get(spec, key))]


def _labels(args: Any) -> dict:
    """The object's labels merged with its pod template's."""
    labels = dict(mapping(get(args.props, "metadata", "labels")))
    path = POD_LABEL_PATHS.get(args.resource_type)
    if path:
        labels.update(mapping(get(args.props, *path)))
    return {k: plain(v) for k, v in labels.items()}


def _is_model_server(args: Any) -> bool:
    return args.resource_type in (DEPLOYMENT, STATEFUL_SET) and _labels(args).get(VLLM_NAME_LABEL) == VLLM_NAME


def _gpu_amount(resources: Mapping) -> Optional[Decimal]:
    """The container's ``nvidia.com/gpu`` in ``resources`` (None if absent; 0 if unparsable)."""
    raw = get(resources, GPU_RESOURCE)
    if raw is None:
        return None
    try:
        return parse_quantity(raw)
    except ValueError:
        return Decimal(0)


# --------------------------------------------------------------------------- units

def parse_quantity(value: Any) -> Decimal:
    """:func:`contract.parse_quantity` through secrets."""
    return contract.parse_quantity(plain(value))


_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(value: Any) -> float:
    """A Prometheus duration (``"2m"``, ``"1h30m"``, ``"90s"``, ``"0"``) in seconds;
    ValueError if it is not one."""
    value = plain(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a Prometheus duration")
    if value == "0":
        return 0.0
    pos, total, last_unit = 0, 0.0, None
    order = list(_DURATION_SECONDS)[::-1]  # y w d h m s ms: units must descend
    for m in _DURATION_PART.finditer(value):
        if m.start() != pos or (last_unit is not None and order.index(m.group(2)) <= order.index(last_unit)):
            raise ValueError(f"{value!r} is not a Prometheus duration")
        total += int(m.group(1)) * _DURATION_SECONDS[m.group(2)]
        pos, last_unit = m.end(), m.group(2)
    if pos != len(value):
        raise ValueError(f"{value!r} is not a Prometheus duration")
    return total


def _seconds(value: float) -> str:
    return f"{_num(value)} s"
