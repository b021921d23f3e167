"""gpu-fleet's CrossGuard policies: the seed's scaling best practices and the fleet's
security rules, checked on what ``pulumi preview`` / ``pulumi up`` would deploy.

One module, two runners:

- ``pulumi preview --policy-pack policies`` runs ``policies/__main__.py``, which wraps
  :data:`POLICIES` in a ``PolicyPack``. Pulumi starts the pack with ``python -m
  pulumi.policy <engine> .`` inside ``policies/`` (its own virtualenv, from
  ``requirements.txt``); ``runpy.run_path(".")`` puts that folder first on ``sys.path``, so
  ``from rules import POLICIES`` resolves to this file. Hence this module imports only
  ``pulumi_policy`` and the standard library: the pack's virtualenv has nothing else.
- ``gpu-fleet plan`` evaluates the same policy objects offline
  (:mod:`gpu_fleet.policy_check`) against the recorded plan.

What each policy reads
----------------------
Resource policies get the resource's *inputs* (camelCase, as the engine sees them);
stack policies get every resource of the stack with its *outputs* (for the Kubernetes
objects read here, the same keys; a component's outputs are what it registers, so
``gpufleet:index:GlobalRouting`` registers its failover props as outputs too). Values may be
``Mapping``/``Sequence`` proxies rather than dicts and lists, and numbers may be floats:
every accessor below copes with both.

Thresholds come from ``args.get_config()`` and fall back to each policy's
``config_schema`` defaults, so an organisation tunes them with
``--policy-pack-config`` (or ``pulumi policy enable --config``) without code changes.

Secrets
-------
``pulumi preview``/``up`` hand policies secret values already decrypted and unmarked
(pulumi_policy's ``Analyze`` deserialises without secret markers; pulumi/pulumi-policy#241:
a policy cannot tell whether a value is a Pulumi secret). So:

- ``kubernetes-no-plaintext-secrets`` never depends on secretness: a credential written
  literally into a pod spec or ConfigMap is readable by anyone who may read that object,
  whether or not Pulumi encrypts it in its state. Same verdict in both runners.
- ``secret-inputs-encrypted`` asks that credential-like inputs of every other resource
  (Helm values, cache AUTH tokens, provider credentials...) be Pulumi secrets, so the
  state and the plan never hold them in plaintext. It needs secret markers: values that
  are Pulumi secrets arrive wrapped in ``pulumi_policy.Secret`` (the class pulumi_policy
  itself uses for secrets in remediations). gpu-fleet's offline evaluation keeps them and
  sets the policy's ``secretMarkers`` config; in a Pulumi run ``secretMarkers`` stays
  false and the policy reports itself not applicable instead of flagging every secret
  as plaintext.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit
from decimal import Decimal
from typing import Any, Iterator, NamedTuple, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "gpu-fleet"

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

# --------------------------------------------------------------------------- fleet conventions
# Copies of the components' names (the pack cannot import the components); the tests
# check they stay equal.

#: Pod and Deployment labels of every vLLM model server (components.monitoring_rules).
VLLM_NAME_LABEL = "app.kubernetes.io/name"
VLLM_NAME = "vllm"
MODEL_LABEL = "gpu-fleet/model"
#: The label of pods the cache's egress NetworkPolicy admits (components.cache.CACHE_CLIENT_LABELS)
#: and the variable LMCache reads the cache's URL from (components.model_deployment).
CACHE_CLIENT_LABEL = "gpu-fleet/cache-client"
LMCACHE_URL_ENV = "LMCACHE_REMOTE_URL"
#: Node label of GPU pools (components.labels.GPU_LABEL) and the GPU taint's key.
GPU_LABEL = "gpu-fleet/gpu"
GPU_RESOURCE = "nvidia.com/gpu"
#: The stack's environment label (components.labels.ENVIRONMENT_LABEL) and the value
#: that allows scale to zero.
ENVIRONMENT_LABEL = "gpu-fleet/environment"
NON_PRODUCTION = "non-production"

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


# --------------------------------------------------------------------------- units

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
    value = plain(value)
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


# --------------------------------------------------------------------------- HPA


def _hpa_spec(args: ResourceValidationArgs) -> Optional[Mapping]:
    return mapping(get(args.props, "spec")) if args.resource_type == HPA else None


def _behavior_spec(args: ResourceValidationArgs) -> Optional[Mapping]:
    """What carries an HPA ``behavior``: an HPA's spec, or for a KEDA ScaledObject the HPA
    KEDA creates from ``advanced.horizontalPodAutoscalerConfig``."""
    if args.resource_type == SCALED_OBJECT:
        return mapping(get(args.props, "spec", "advanced", "horizontalPodAutoscalerConfig"))
    return _hpa_spec(args)


def _scaling_rules(spec: Mapping, direction: str) -> dict:
    """``behavior.scaleUp``/``scaleDown`` with Kubernetes' defaults for unset fields.

    Without ``behavior`` the controller's legacy path applies; its limits are the same
    numbers for these checks (no scale-up window, 300 s scale-down window).
    """
    default = HPA_DEFAULT_SCALE_UP if direction == "scaleUp" else HPA_DEFAULT_SCALE_DOWN
    rules = mapping(get(spec, "behavior", direction))
    return {
        "stabilizationWindowSeconds": get(rules, "stabilizationWindowSeconds", default=default["stabilizationWindowSeconds"]),
        "selectPolicy": get(rules, "selectPolicy", default=default["selectPolicy"]),
        "policies": items(get(rules, "policies")) or default["policies"],
    }


MIN_REPLICAS_SCHEMA = _schema(
    minReplicas={"type": "integer", "minimum": 1, "default": 2,
                 "description": "Fewest replicas an HPA may keep (seed: always >= 2 for high availability)."},
)


def validate_hpa_min_replicas(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _hpa_spec(args)
    if spec is None:
        return
    want = settings(args, MIN_REPLICAS_SCHEMA)["minReplicas"]
    have = get(spec, "minReplicas", default=HPA_DEFAULT_MIN_REPLICAS)
    if have < want:
        unset = "" if "minReplicas" in spec else " (unset: Kubernetes defaults to 1)"
        report(f"minReplicas is {_num(have)}{unset}; keep at least {_num(want)} so the model stays served "
               "while one replica restarts, is rescheduled or its node is drained.")


def validate_scale_to_zero_non_production(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != SCALED_OBJECT:
        return
    spec = mapping(get(args.props, "spec"))
    want = settings(args, MIN_REPLICAS_SCHEMA)["minReplicas"]
    have = get(spec, "minReplicaCount", default=KEDA_DEFAULT_MIN_REPLICA_COUNT)
    environment = mapping(get(args.props, "metadata", "labels")).get(ENVIRONMENT_LABEL)
    if have < want and environment != NON_PRODUCTION:
        unset = "" if "minReplicaCount" in spec else " (unset: KEDA defaults to 0)"
        report(f"minReplicaCount is {_num(have)}{unset}, but the object is not labelled {ENVIRONMENT_LABEL}="
               f"{NON_PRODUCTION} (it is {environment or 'unlabelled'}): only a non-production stack may scale a "
               f"model below {_num(want)} replicas, let alone to zero, where its first requests fail until a cold "
               "start completes.")


SCALE_UP_SCHEMA = _schema(
    maxStabilizationWindowSeconds={"type": "integer", "minimum": 0, "default": 120,
                                   "description": "Longest scale-up stabilisation window (seed: scale up within 1-2 minutes)."},
    maxPeriodSeconds={"type": "integer", "minimum": 1, "default": 120,
                      "description": "A scale-up policy must allow adding pods at least this often."},
)


def validate_hpa_scale_up(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _behavior_spec(args)
    if spec is None:
        return
    cfg = settings(args, SCALE_UP_SCHEMA)
    up = _scaling_rules(spec, "scaleUp")
    if up["selectPolicy"] == "Disabled":
        report("behavior.scaleUp.selectPolicy is Disabled: the HPA never adds replicas, so traffic peaks queue up.")
        return
    window, max_window = up["stabilizationWindowSeconds"], cfg["maxStabilizationWindowSeconds"]
    if window > max_window:
        report(f"scale-up stabilisation window is {_seconds(window)}; at most {_seconds(max_window)} so new "
               "replicas start within 1-2 minutes of a peak.")
    max_period = cfg["maxPeriodSeconds"]

    def fast(p: Mapping) -> bool:
        return get(p, "value", default=0) > 0 and get(p, "periodSeconds", default=0) <= max_period

    policies = up["policies"]
    described = ", ".join(f"{get(p, 'type')} {_num(get(p, 'value'))} per {_seconds(get(p, 'periodSeconds'))}" for p in policies)
    if up["selectPolicy"] == "Min":
        if not all(fast(p) for p in policies):
            report(f"scale-up policies ({described}) with selectPolicy Min: the most restrictive one wins, so every "
                   f"policy must allow adding pods at least every {_seconds(max_period)}.")
    elif not any(fast(p) for p in policies):
        report(f"no scale-up policy ({described}) allows adding pods at least every {_seconds(max_period)}.")


SCALE_DOWN_SCHEMA = _schema(
    minStabilizationWindowSeconds={"type": "integer", "minimum": 0, "default": 300,
                                   "description": "Shortest scale-down stabilisation window (seed: 5-10 minutes, "
                                                  "avoids flapping)."},
    maxStabilizationWindowSeconds={"type": "integer", "minimum": 0, "default": 600,
                                   "description": "Longest scale-down stabilisation window (idle GPUs cost money)."},
)


def validate_hpa_scale_down(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _behavior_spec(args)
    if spec is None:
        return
    cfg = settings(args, SCALE_DOWN_SCHEMA)
    down = _scaling_rules(spec, "scaleDown")
    if down["selectPolicy"] == "Disabled":
        report("behavior.scaleDown.selectPolicy is Disabled: replicas, and the GPU nodes under them, are never released.")
        return
    window = down["stabilizationWindowSeconds"]
    low, high = cfg["minStabilizationWindowSeconds"], cfg["maxStabilizationWindowSeconds"]
    if not low <= window <= high:
        why = "replicas flap down and up again, reloading weights each time" if window < low else "idle GPUs stay paid for"
        report(f"scale-down stabilisation window is {_seconds(window)}; keep it between {_seconds(low)} and "
               f"{_seconds(high)} ({why}).")


GPU_TARGET_SCHEMA = _schema(
    metricName={"type": "string", "default": "dcgm_gpu_utilization",
                "description": "The GPU utilisation metric (percent) the HPAs scale on."},
    minTarget={"type": "number", "default": 70, "description": "Lowest AverageValue target, in percent."},
    maxTarget={"type": "number", "default": 80,
               "description": "Highest AverageValue target, in percent (seed: 70-80 %, leave headroom)."},
    requireMetric={"type": "boolean", "default": True,
                   "description": "Whether every HPA must scale on the metric (false: only check it where present)."},
)


def _metric_targets(spec: Mapping, name: str) -> Iterator[tuple[str, Mapping]]:
    """``(metric type, target)`` of every metric of ``spec`` named ``name``."""
    for metric in items(get(spec, "metrics")):
        kind = get(metric, "type")
        source = {"External": "external", "Pods": "pods", "Object": "object"}.get(kind)
        if source and get(metric, source, "metric", "name") == name:
            yield kind, mapping(get(metric, source, "target"))


def validate_hpa_gpu_target(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = _hpa_spec(args)
    if spec is None:
        return
    cfg = settings(args, GPU_TARGET_SCHEMA)
    name, low, high = cfg["metricName"], Decimal(str(cfg["minTarget"])), Decimal(str(cfg["maxTarget"]))
    found = list(_metric_targets(spec, name))
    if not found and cfg["requireMetric"]:
        report(f"the HPA does not scale on {name}; add an External metric with an AverageValue target between "
               f"{_num(low)} and {_num(high)} (GPU utilisation is what saturates first).")
    for kind, target in found:
        target_type = get(target, "type")
        if target_type != "AverageValue":
            report(f"{name} has a {target_type} target; use AverageValue: the metric is summed over the "
                   "Deployment's pods, so only a per-replica target scales with the replica count.")
            continue
        raw = get(target, "averageValue")
        try:
            value = parse_quantity(raw)
        except ValueError:
            report(f"{name} target {raw!r} is not a Kubernetes quantity.")
            continue
        if not low <= value <= high:
            report(f"{name} target is {_num(value)} % ({raw!r}); keep it between {_num(low)} and {_num(high)} % "
                   "so replicas are added before the GPUs saturate, without idling them.")


#: Metrics counting requests waiting for a model: the HPAs' queue metric and vLLM's own.
QUEUE_METRICS = ["llm_pending_requests", "vllm:num_requests_waiting"]

QUEUE_METRIC_SCHEMA = _schema(
    queueMetrics={"type": "array", "items": {"type": "string"}, "default": QUEUE_METRICS,
                  "description": "Metrics counting waiting requests; an HPA must scale on one of them."},
)


def _workload_key(r: PolicyResource) -> tuple[str, str, str]:
    """``(namespace, kind, name)`` of a Deployment or StatefulSet, as an HPA's
    ``scaleTargetRef`` names it."""
    kind = "Deployment" if r.resource_type == DEPLOYMENT else "StatefulSet"
    return (str(get(r.props, "metadata", "namespace", default="default")), kind,
            str(get(r.props, "metadata", "name", default=r.name)))


def _requests_gpu(r: PolicyResource) -> bool:
    spec = pod_spec(r)
    return spec is not None and any(
        (_gpu_amount(mapping(get(c, "resources", section))) or 0) > 0
        for c in _containers(spec) for section in ("limits", "requests"))


def _scaled_workloads(resources: list[PolicyResource]) -> Iterator[tuple[PolicyResource, Mapping, str]]:
    """Every HPA of the stack that scales a model server or a GPU workload of the stack:
    ``(hpa, its spec, "<kind> <namespace>/<name>")``."""
    targets = {_workload_key(r) for r in resources
               if r.resource_type in (DEPLOYMENT, STATEFUL_SET) and (_is_model_server(r) or _requests_gpu(r))}
    for r in resources:
        if r.resource_type != HPA:
            continue
        spec = mapping(get(r.props, "spec"))
        key = (str(get(r.props, "metadata", "namespace", default="default")),
               str(get(spec, "scaleTargetRef", "kind", default="")), str(get(spec, "scaleTargetRef", "name", default="")))
        if key in targets:
            yield r, spec, f"{key[1]} {key[0]}/{key[2]}"


def validate_hpa_queue_metric(args: StackValidationArgs, report: ReportViolation) -> None:
    names = list(settings(args, QUEUE_METRIC_SCHEMA)["queueMetrics"])
    for hpa, spec, target in _scaled_workloads(args.resources):
        if not any(True for name in names for _ in _metric_targets(spec, name)):
            report(f"HPA {get(hpa.props, 'metadata', 'name', default=hpa.name)} scales {target} without a queue metric "
                   f"({', '.join(names)}); add one: GPU utilisation alone stays near 100 % once a replica is busy "
                   "and cannot tell how many requests are waiting.", hpa.urn)


def validate_gpu_hpa_metrics(args: StackValidationArgs, report: ReportViolation) -> None:
    for hpa, spec, target in _scaled_workloads(args.resources):
        metrics = items(get(spec, "metrics"))
        # autoscaling/v2 defaults an empty metrics list to 80 % average CPU utilisation.
        if all(get(m, "type") in ("Resource", "ContainerResource") for m in metrics):
            used = sorted({str(get(m, "resource", "name", default=get(m, "containerResource", "name", default="?")))
                           for m in metrics}) or ["cpu (the default when metrics is empty)"]
            report(f"HPA {get(hpa.props, 'metadata', 'name', default=hpa.name)} scales GPU workload {target} on "
                   f"{', '.join(used)} only; a GPU model's CPU and memory do not follow its load. Scale on GPU "
                   "utilisation and the queue depth.", hpa.urn)


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


PROBES_SCHEMA = _schema(
    modelLoadedPaths={"type": "array", "items": {"type": "string"}, "default": ["/v1/models"],
                      "description": "HTTP paths that answer only once the model is loaded (vLLM's /health does not prove it)."},
)


def _probe_loads_model(probe: Mapping, paths: list[str]) -> bool:
    path = get(probe, "httpGet", "path")
    if isinstance(path, str) and path.split("?", 1)[0] in paths:
        return True
    command = " ".join(str(plain(c)) for c in items(get(probe, "exec", "command")))
    return any(p in command for p in paths)


def _probe_summary(probe: Mapping) -> str:
    if get(probe, "httpGet") is not None:
        return f"httpGet {get(probe, 'httpGet', 'path', default='/')}"
    if get(probe, "exec") is not None:
        return "exec " + " ".join(str(plain(c)) for c in items(get(probe, "exec", "command")))
    return next((k for k in ("tcpSocket", "grpc") if get(probe, k) is not None), "no handler")


def validate_model_probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _is_model_server(args):
        return
    paths = list(settings(args, PROBES_SCHEMA)["modelLoadedPaths"])
    containers = [c for c in items(get(pod_spec(args), "containers")) if isinstance(c, Mapping)]
    problems = []
    for c in containers:
        missing = []
        for kind in ("startupProbe", "readinessProbe"):
            probe = mapping(get(c, kind))
            if not probe:
                missing.append(f"no {kind}")
            elif not _probe_loads_model(probe, paths):
                missing.append(f"{kind} checks {_probe_summary(probe)}")
        if not missing:
            return
        problems.append(f"container {get(c, 'name', default='?')}: {', '.join(missing)}")
    report(f"a vLLM model server needs a startupProbe and a readinessProbe on a path that answers only once the "
           f"model is loaded ({' or '.join(paths)}; httpGet path or an exec command calling it), so no traffic "
           f"reaches a replica before its weights are in GPU memory; {'; '.join(problems) or 'no containers'}.")


GPU_TAINT_SCHEMA = _schema(
    taintKey={"type": "string", "default": GPU_RESOURCE, "description": "Key of the taint GPU nodes must carry."},
    gpuLabel={"type": "string", "default": GPU_LABEL, "description": "Node label marking a GPU pool."},
    gpuInstanceTypePattern={"type": "string", "default": r"^(p[0-9]+|g[0-9]+)[a-z]*\.",
                            "description": "Regex of EC2 instance types with NVIDIA GPUs."},
)

#: EKS AMI types with NVIDIA drivers (AL2023_*_NVIDIA, BOTTLEROCKET_*_NVIDIA, AL2_x86_64_GPU).
_EKS_GPU_AMI = re.compile(r"NVIDIA|_GPU$")


def _has_gpu_taint(taints: list, key: str) -> bool:
    return any(get(t, "key") == key and get(t, "effect") == "NO_SCHEDULE" for t in taints)


def validate_gpu_node_pool_taint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, GPU_TAINT_SCHEMA)
    key = cfg["taintKey"]
    props = args.props
    if args.resource_type == EKS_NODE_GROUP:
        labels = mapping(get(props, "labels"))
        instance_types = [str(t) for t in items(get(props, "instanceTypes"))]
        why = (
            f"label {cfg['gpuLabel']}" if cfg["gpuLabel"] in labels
            else f"AMI {get(props, 'amiType')}" if _EKS_GPU_AMI.search(str(get(props, "amiType", default="")))
            else next((f"instance type {t}" for t in instance_types if re.match(cfg["gpuInstanceTypePattern"], t)), None)
        )
        if why and not _has_gpu_taint(items(get(props, "taints")), key):
            report(f"GPU node group ({why}) has no taint {key} with effect NO_SCHEDULE: pods without a GPU request "
                   "can land on GPU nodes and keep them (and the autoscaler) from scaling down.")
    elif args.resource_type == GKE_NODE_POOL:
        accelerators = [a for a in items(get(props, "nodeConfig", "guestAccelerators")) if get(a, "count", default=1) > 0]
        gpu_label = cfg["gpuLabel"] in mapping(get(props, "nodeConfig", "labels"))
        if (accelerators or gpu_label) and not _has_gpu_taint(items(get(props, "nodeConfig", "taints")), key):
            report(f"GPU node pool has no nodeConfig.taints entry {key} with effect NO_SCHEDULE. GKE adds it to the "
                   "nodes itself; declaring it keeps the config and the nodes equal (no drift, no surprise on recreate).")


WORKLOAD_GPU_SCHEMA = _schema(
    taintKey={"type": "string", "default": GPU_RESOURCE, "description": "Key of the GPU nodes' NoSchedule taint."},
    gpuNodeLabels={"type": "array", "items": {"type": "string"},
                   "default": [GPU_LABEL, "cloud.google.com/gke-accelerator", "nvidia.com/gpu.present"],
                   "description": "Node labels that select GPU nodes."},
)


def _tolerates(tolerations: list, key: str) -> bool:
    for t in tolerations:
        effect = get(t, "effect", default="")
        if effect not in ("", "NoSchedule"):
            continue
        operator = get(t, "operator", default="Equal")
        # An empty key with Exists tolerates every taint. Equal's value cannot be compared
        # with the node pools' taint from here: the key and effect decide.
        if get(t, "key", default="") == key or (operator == "Exists" and not get(t, "key")):
            return True
    return False


def _gpu_node_selection(spec: Mapping, labels: list[str]) -> list[str]:
    selected = [k for k in mapping(get(spec, "nodeSelector")) if k in labels]
    terms = items(get(spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"))
    for term in terms:
        for expr in items(get(term, "matchExpressions")):
            if get(expr, "key") in labels and get(expr, "operator") in ("In", "Exists"):
                selected.append(get(expr, "key"))
    return sorted(set(selected))


def validate_gpu_workloads(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args)
    if spec is None:
        return
    cfg = settings(args, WORKLOAD_GPU_SCHEMA)
    gpu_containers = []
    for c in _containers(spec):
        requests, limits = mapping(get(c, "resources", "requests")), mapping(get(c, "resources", "limits"))
        requested, limited = _gpu_amount(requests), _gpu_amount(limits)
        if requested is None and limited is None:
            continue
        gpu_containers.append(c)
        name = get(c, "name", default="?")
        if limited is None or limited <= 0:
            report(f"container {name} requests {GPU_RESOURCE} without a limit: Kubernetes takes extended resources "
                   "from limits (requests must equal them), so set resources.limits.")
        elif requested is not None and requested != limited:
            report(f"container {name}: {GPU_RESOURCE} request {_num(requested)} differs from its limit {_num(limited)}; "
                   "extended resources cannot be overcommitted, set them equal.")
    if gpu_containers:
        if not _tolerates(items(get(spec, "tolerations")), cfg["taintKey"]):
            report(f"the pod requests GPUs but does not tolerate the {cfg['taintKey']} NoSchedule taint every GPU node "
                   "carries: it would stay Pending.")
    elif args.resource_type != DAEMON_SET:
        # Node agents (DaemonSets) legitimately run on GPU nodes without a GPU.
        selected = _gpu_node_selection(spec, list(cfg["gpuNodeLabels"]))
        if selected:
            report(f"the pod selects GPU nodes ({', '.join(selected)}) but no container has a {GPU_RESOURCE} limit: "
                   "it would take room on a GPU node without using a GPU and keep that node from scaling down.")


# --------------------------------------------------------------------------- caches


def validate_cache_security(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p = args.props
    if args.resource_type == ELASTICACHE:
        if get(p, "transitEncryptionEnabled") is not True:
            report("transitEncryptionEnabled is not true: clients talk to the cache, AUTH token included, in plaintext.")
        elif get(p, "transitEncryptionMode") == "preferred":
            report("transitEncryptionMode is preferred: the cache still accepts unencrypted connections; set required.")
        if get(p, "atRestEncryptionEnabled") not in (True, "true"):
            report("atRestEncryptionEnabled is not true: snapshots and swapped data are stored unencrypted.")
        if not (get(p, "authToken") or get(p, "authTokenWo") or items(get(p, "userGroupIds"))):
            report("no authentication: set authToken (a Pulumi secret) or userGroupIds; without it any pod that can "
                   "reach the cache's port reads and writes it.")
    elif args.resource_type == MEMORYSTORE:
        if get(p, "authEnabled") is not True:
            report("authEnabled is not true: any client on the authorized network reads and writes the cache.")
        if get(p, "transitEncryptionMode") != "SERVER_AUTHENTICATION":
            report(f"transitEncryptionMode is {get(p, 'transitEncryptionMode', default='unset (DISABLED)')}; use "
                   "SERVER_AUTHENTICATION so clients reach the cache over TLS.")


CACHE_HA_SCHEMA = _schema(
    minReplicas={"type": "integer", "minimum": 0, "default": 1,
                 "description": "Replicas every cache must have (0 allows single-node caches, e.g. a dev stack)."},
)


def validate_cache_high_availability(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p = args.props
    want = settings(args, CACHE_HA_SCHEMA)["minReplicas"]
    if args.resource_type == ELASTICACHE:
        replicas = max(get(p, "numCacheClusters", default=1) - 1, get(p, "replicasPerNodeGroup", default=0))
        if replicas < want:
            report(f"{_num(replicas)} replicas; at least {_num(want)}: losing the only node loses the cache "
                   "until ElastiCache replaces it.")
        if replicas > 0:
            for key in ("automaticFailoverEnabled", "multiAzEnabled"):
                if get(p, key) is not True:
                    report(f"{key} is not true: with replicas, a failed primary must be replaced by a replica in "
                           "another zone automatically.")
    elif args.resource_type == MEMORYSTORE:
        tier = get(p, "tier", default="BASIC")
        if tier != "STANDARD_HA":
            if want > 0:
                report(f"tier is {tier}: a single node without failover; use STANDARD_HA (a replica in another "
                       "zone that takes over automatically).")
        elif get(p, "replicaCount") is not None and get(p, "replicaCount") < want:
            report(f"replicaCount is {_num(get(p, 'replicaCount'))}; at least {_num(want)}.")


def _cache_urls(args: Any) -> list[str]:
    """The LMCache remote URLs the object's containers are given (literal or ``$(VAR)``)."""
    spec = pod_spec(args)
    if spec is None:
        return []
    return [str(plain(get(e, "value", default=""))) for c in _containers(spec) for e in items(get(c, "env"))
            if get(e, "name") == LMCACHE_URL_ENV]


def validate_cache_clients(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for url in _cache_urls(args):
        if url.startswith("redis://"):
            report(f"{LMCACHE_URL_ENV} is {url.split('@')[-1]!r}: redis:// is plaintext; the caches accept TLS "
                   "only (rediss://, from the cache Secret's REDIS_URL).")
        if _labels(args).get(CACHE_CLIENT_LABEL) != "true":
            report(f"uses the regional cache ({LMCACHE_URL_ENV}) without the label {CACHE_CLIENT_LABEL}=true: the "
                   "cache's egress NetworkPolicy admits only labelled pods, so every lookup would time out.")
            break


# --------------------------------------------------------------------------- global routing


def validate_route53_record_health(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROUTE53_RECORD:
        return
    p = args.props
    name = f"{get(p, 'name', default=args.name)} ({get(p, 'setIdentifier', default='no set identifier')})"
    # An alias that evaluates its target's health is checked through the records it points at (Route 53
    # developer guide, "How health checks work in complex Amazon Route 53 configurations").
    checked = bool(get(p, "healthCheckId")) or any(get(a, "evaluateTargetHealth") for a in items(get(p, "aliases")))
    if items(get(p, "latencyRoutingPolicies")) and not checked:
        report(f"latency record {name} has no healthCheckId and evaluates no target health: Route 53 keeps sending "
               "the nearest clients to this endpoint while its region is down.")
    if items(get(p, "weightedRoutingPolicies")) and not checked:
        report(f"weighted record {name} has no healthCheckId: Route 53 considers it always healthy and keeps "
               "answering with it while its region is down.")
    for policy in items(get(p, "failoverRoutingPolicies")):
        # A SECONDARY without a check is Route 53's documented last resort (treated healthy).
        if get(policy, "type") == "PRIMARY" and not checked:
            report(f"failover PRIMARY record {name} has no healthCheckId: Route 53 never fails over from it.")


HEALTH_CHECK_SCHEMA = _schema(
    allowedTypes={"type": "array", "items": {"type": "string"}, "default": ["HTTPS", "HTTPS_STR_MATCH"],
                  "description": "Route 53 health check types allowed for endpoints."},
)


def validate_route53_health_check(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROUTE53_HEALTH_CHECK:
        return
    p = args.props
    kind = get(p, "type")
    if kind == "CALCULATED":
        return  # an aggregate of other checks; those are checked themselves
    allowed = list(settings(args, HEALTH_CHECK_SCHEMA)["allowedTypes"])
    if kind not in allowed:
        report(f"health check type {kind}; use {' or '.join(allowed)}: the check must take the clients' path, "
               "TLS included, or a broken certificate or listener goes unnoticed.")
    if not get(p, "resourcePath"):
        report("no resourcePath: the check must request a path that proves the region serves (the model's health "
               "URL), not only that a TCP port answers.")


BUDGET_SCHEMA = _schema(
    maxFailoverSeconds={"type": "number", "exclusiveMinimum": 0, "default": 30,
                        "description": "Regional failover must be detected and switched in under this many seconds "
                                       "(seed: < 30 s)."},
)


def validate_failover_budget(args: StackValidationArgs, report: ReportViolation) -> None:
    limit = settings(args, BUDGET_SCHEMA)["maxFailoverSeconds"]
    for r in args.resources:
        if r.resource_type != GLOBAL_ROUTING:
            continue
        budget, target = get(r.props, "failoverBudgetSeconds"), get(r.props, "failoverTargetSeconds")
        mode, why = get(r.props, "routingMode", default="?"), get(r.props, "failoverBudget", "message", default="")
        if budget is None:
            report(f"global routing {r.name} does not report failoverBudgetSeconds, so its failover time is unknown.", r.urn)
            continue
        bound = min(limit, target) if target is not None else limit
        if budget >= bound:
            report(f"global routing {r.name} ({mode}): worst-case failover {_seconds(budget)}, target "
                   f"{_seconds(target) if target is not None else 'unset'}, policy limit under {_seconds(limit)}. {why}",
                   r.urn)


# --------------------------------------------------------------------------- queue-depth alert


class Matcher(NamedTuple):
    """A PromQL label matcher, ``label op "value"``."""

    label: str
    op: str
    value: str

    def accepts(self, actual: str) -> bool:
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        try:
            # PromQL regexes are fully anchored RE2; Python's re agrees on what rules use.
            hit = re.fullmatch(self.value, actual) is not None
        except re.error:
            return True  # cannot tell: do not claim the model is excluded
        return hit == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


class Selector(NamedTuple):
    metric: str
    matchers: tuple[Matcher, ...]


_PROMQL_TOKEN = re.compile(
    r"""\s+
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<duration>[0-9]+(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*(?![A-Za-z0-9_:]))
    |(?P<number>(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?![A-Za-z_:]))
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],@])""",
    re.VERBOSE,
)
_AGGREGATORS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values", "limitk", "limit_ratio"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}
_COMPARISONS = {">", ">=", "<", "<=", "==", "!="}
_FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
_OPEN, _CLOSE = {"(", "{", "["}, {")", "}", "]"}
Token = tuple[str, str]


def promql_tokens(expr: str) -> list[Token]:
    """``(kind, text)`` tokens of a PromQL expression; ValueError on a character PromQL has not."""
    out, pos = [], 0
    while pos < len(expr):
        m = _PROMQL_TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        if m.lastgroup:
            out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def _closing(tokens: list[Token], start: int) -> int:
    """Index of the bracket closing the one at ``start``."""
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i][1] in _OPEN and tokens[i][0] == "op":
            depth += 1
        elif tokens[i][1] in _CLOSE and tokens[i][0] == "op":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced brackets")


def _top_level(tokens: list[Token]) -> Iterator[int]:
    """Indexes of the tokens outside any bracket."""
    i = 0
    while i < len(tokens):
        yield i
        i = _closing(tokens, i) + 1 if tokens[i][0] == "op" and tokens[i][1] in _OPEN else i + 1


def _unwrap(tokens: list[Token]) -> list[Token]:
    while tokens and tokens[0] == ("op", "(") and _closing(tokens, 0) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return tokens


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text[1:-1])


def _matchers(tokens: list[Token]) -> tuple[Matcher, ...]:
    out = []
    for i in range(len(tokens) - 2):
        (k1, label), (k2, op), (k3, value) = tokens[i:i + 3]
        if k1 == "ident" and k2 == "op" and op in ("=", "!=", "=~", "!~") and k3 == "string":
            out.append(Matcher(label, op, _unquote(value)))
    return tuple(out)


def promql_selectors(tokens: list[Token]) -> list[Selector]:
    """Every series selector in ``tokens`` (metric name and label matchers)."""
    out, i = [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == "ident":
            if text in _LABEL_LISTS and following == ("op", "("):
                i = _closing(tokens, i + 1) + 1
            elif text in _AGGREGATORS or text in _KEYWORDS or text in _LABEL_LISTS or following == ("op", "(") \
                    or text.lower() in ("inf", "nan"):
                i += 1
            elif following == ("op", "{"):
                close = _closing(tokens, i + 1)
                out.append(Selector(text, _matchers(tokens[i + 2:close])))
                i = close + 1
            else:
                out.append(Selector(text, ()))
                i += 1
        elif (kind, text) == ("op", "{"):
            close = _closing(tokens, i)
            matchers = _matchers(tokens[i + 1:close])
            name = next((m.value for m in matchers if m.label == "__name__" and m.op == "="), None)
            if name:
                out.append(Selector(name, tuple(m for m in matchers if m.label != "__name__")))
            i = close + 1
        else:
            i += 1
    return out


def _number(tokens: list[Token]) -> Optional[float]:
    tokens = _unwrap(tokens)
    sign = 1.0
    if len(tokens) == 2 and tokens[0][1] in ("-", "+"):
        sign, tokens = (-1.0 if tokens[0][1] == "-" else 1.0), tokens[1:]
    if len(tokens) == 1 and tokens[0][0] == "number":
        text = tokens[0][1]
        return sign * (int(text, 16) if text.lower().startswith("0x") else float(text))
    return None


def _after_operator(tokens: list[Token]) -> list[Token]:
    """The right operand without ``bool`` and vector-matching clauses."""
    while tokens and tokens[0][0] == "ident" and (tokens[0][1] == "bool" or tokens[0][1] in _LABEL_LISTS):
        tokens = tokens[_closing(tokens, 1) + 1:] if len(tokens) > 1 and tokens[1] == ("op", "(") else tokens[1:]
    return tokens


class Threshold(NamedTuple):
    """A comparison ``series > value`` (or ``>=``) found in an alert expression."""

    series: list[Token]
    op: str
    value: float


def promql_thresholds(expr: str) -> list[Threshold]:
    """Every ``series >|>= number`` comparison of an alert expression, one per operand of its
    top-level ``and``/``or``/``unless`` (``number <|<= series`` counts too)."""
    tokens = _unwrap(promql_tokens(expr))
    operands, start = [], 0
    for i in _top_level(tokens):
        if tokens[i][0] == "ident" and tokens[i][1] in ("and", "or", "unless"):
            operands.append(tokens[start:i])
            start = i + 1
    operands.append(tokens[start:])
    out = []
    for operand in operands:
        operand = _unwrap(operand)
        comparisons = [i for i in _top_level(operand) if operand[i][0] == "op" and operand[i][1] in _COMPARISONS]
        if not comparisons:
            continue
        i = comparisons[-1]
        left, op, right = operand[:i], operand[i][1], _after_operator(operand[i + 1:])
        value = _number(right)
        if value is None and _number(left) is not None:
            left, op, value = right, _FLIPPED[op], _number(left)
        if value is not None and op in (">", ">="):
            out.append(Threshold(left, op, value))
    return out


class ModelServer(NamedTuple):
    name: str
    namespace: str
    deployment: str
    urn: str


class QueueAlert(NamedTuple):
    alert: str
    threshold: float
    for_seconds: float
    #: Matchers on each chain of selectors (through recording rules) reaching a queue metric.
    paths: list[tuple[Matcher, ...]]


QUEUE_ALERT_SCHEMA = _schema(
    queueMetrics={"type": "array", "items": {"type": "string"},
                  "default": QUEUE_METRICS,
                  "description": "Metrics counting requests waiting for a model (read through recording rules)."},
    maxThreshold={"type": "number", "minimum": 0, "default": 20,
                  "description": "The alert must fire at this many waiting requests or fewer (seed: > 20)."},
    maxFor={"type": "string", "default": "2m",
            "description": "Longest 'for' (Prometheus duration) before the alert fires (seed: > 2 minutes)."},
)


def _model_servers(resources: list[PolicyResource]) -> list[ModelServer]:
    out = []
    for r in resources:
        if not _is_model_server(r):
            continue
        model = _labels(r).get(MODEL_LABEL)
        if model:
            out.append(ModelServer(
                str(model),
                str(get(r.props, "metadata", "namespace", default="default")),
                str(get(r.props, "metadata", "name", default=r.name)),
                r.urn,
            ))
    return out


def _queue_paths(selector: Selector, records: dict[str, list[str]], queue_metrics: set[str],
                 seen: frozenset = frozenset()) -> list[tuple[Matcher, ...]]:
    if selector.metric in queue_metrics:
        return [selector.matchers]
    if selector.metric not in records or selector.metric in seen:
        return []
    paths = []
    for expr in records[selector.metric]:
        try:
            selectors = promql_selectors(promql_tokens(expr))
        except ValueError:
            continue
        for inner in selectors:
            for path in _queue_paths(inner, records, queue_metrics, seen | {selector.metric}):
                paths.append(selector.matchers + path)
    return paths


def _queue_alerts(resources: list[PolicyResource], queue_metrics: set[str]) -> list[QueueAlert]:
    records: dict[str, list[str]] = {}
    alerts = []
    for r in resources:
        if r.resource_type != PROMETHEUS_RULE:
            continue
        for group in items(get(r.props, "spec", "groups")):
            for rule in items(get(group, "rules")):
                if get(rule, "record"):
                    records.setdefault(get(rule, "record"), []).append(str(get(rule, "expr", default="")))
                elif get(rule, "alert"):
                    alerts.append(rule)
    out = []
    for rule in alerts:
        try:
            thresholds = promql_thresholds(str(get(rule, "expr", default="")))
            for_seconds = parse_duration(get(rule, "for", default="0"))
        except ValueError:
            continue
        for t in thresholds:
            paths = [p for s in promql_selectors(t.series) for p in _queue_paths(s, records, queue_metrics)]
            if paths:
                out.append(QueueAlert(str(get(rule, "alert")), t.value, for_seconds, paths))
    return out


def _excluding(path: tuple[Matcher, ...], model: ModelServer) -> Optional[Matcher]:
    """The first matcher on ``path`` that rejects ``model``'s series, if any."""
    actual = {"model": model.name, "deployment": model.deployment, "namespace": model.namespace}
    return next((m for m in path if m.label in actual and not m.accepts(actual[m.label])), None)


def validate_queue_alert(args: StackValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, QUEUE_ALERT_SCHEMA)
    queue_metrics = set(cfg["queueMetrics"])
    max_threshold, max_for = cfg["maxThreshold"], parse_duration(cfg["maxFor"])
    alerts = _queue_alerts(list(args.resources), queue_metrics)
    for model in _model_servers(list(args.resources)):
        reasons = []
        for a in alerts:
            problems = []
            if a.threshold > max_threshold:
                problems.append(f"fires above {_num(a.threshold)}, not {_num(max_threshold)}")
            if a.for_seconds > max_for:
                problems.append(f"waits {_seconds(a.for_seconds)} ('for'), more than {_seconds(max_for)}")
            excluded = [_excluding(p, model) for p in a.paths]
            if all(excluded):
                problems.append(f"its selectors exclude the model ({excluded[0]})")
            if not problems:
                break
            reasons.append(f"{a.alert} {'; '.join(problems)}")
        else:
            found = ". ".join(reasons) if reasons else (
                f"no alert compares {' or '.join(sorted(queue_metrics))} (directly or through recording rules) "
                "with a threshold")
            report(f"model {model.name} ({model.namespace}/{model.deployment}) has no queue-depth alert firing at "
                   f"more than {_num(max_threshold)} waiting requests for {cfg['maxFor']} or less: {found}.",
                   model.urn)


# --------------------------------------------------------------------------- secrets

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
#: ``Authorization: Bearer <value>`` (and API-key headers) inside a command, in shell or in
#: code (``{'Authorization': 'Bearer ' + key}``); the value is what follows, up to a quote,
#: a ``$``/``{`` expansion or a space, so only a credential written out is captured.
_HEADER_IN_COMMAND = re.compile(
    r"(?i)\b(?:proxy-)?(?:authorization|x-api-key|api-key)[\"']?\s*:\s*[\"']?(?:(?:bearer|basic)\s+)?"
    r"([A-Za-z0-9._~/=-][A-Za-z0-9._~+/=-]*)?")

NAME_PROPERTIES = {
    "secretNameWords": {"type": "array", "items": {"type": "string"},
                        "default": ["token", "password", "passwd", "secret", "credential", "credentials", "apikey"],
                        "description": "A name whose last word is one of these holds a credential (HF_TOKEN, "
                                       "adminPassword); *_FILE, *_PATH, *_NAME... do not end in one."},
    "keyQualifiers": {"type": "array", "items": {"type": "string"},
                      "default": ["api", "secret", "access", "private", "auth", "client", "signing", "master"],
                      "description": "A name ending in KEY holds a credential when the word before is one of these "
                                     "(VLLM_API_KEY, privateKey; not a taint's or selector's key)."},
}


def secret_name(name: Any, cfg: Mapping) -> bool:
    """Whether a variable, key or header name says it holds a credential."""
    words = [w.lower() for w in _WORD.findall(str(plain(name)))]
    # Helm's existingSecret / public keys name things that are not secret themselves.
    if not words or words[0] == "existing" or "public" in words:
        return False
    last = words[-1]
    return last in cfg["secretNameWords"] or (last == "key" and len(words) > 1 and words[-2] in cfg["keyQualifiers"])


def literal(value: Any) -> bool:
    """Whether ``value`` is a credential written out (not empty, a ``$VAR``/``$(VAR)``
    expansion, a file path or a boolean)."""
    value = plain(value)
    if not isinstance(value, str):
        return False
    value = value.strip()
    return bool(value) and not value.startswith(("$", "/")) and value.lower() not in ("true", "false")


def url_credential(value: Any) -> bool:
    """Whether ``value`` is a URL with a password written into it
    (``redis://:pass@host``, ``https://user:pass@host``); a ``$(VAR)`` expansion is not."""
    value = plain(value)
    if not isinstance(value, str) or "://" not in value or "@" not in value:
        return False
    try:
        password = urlsplit(value.strip()).password
    except ValueError:
        return False
    return bool(password) and literal(password)


def _argv(values: list) -> list[str]:
    """Command-line words; a string with spaces (``sh -c "..."``) is split like a shell would."""
    out = []
    for v in values:
        text = str(plain(v))
        try:
            out += shlex.split(text) if any(ch.isspace() for ch in text) else [text]
        except ValueError:
            out += text.split()
    return out


K8S_SECRETS_SCHEMA = _schema(
    **NAME_PROPERTIES,
    argFlags={"type": "array", "items": {"type": "string"}, "default": ["--api-key", "--token", "--hf-token", "--password"],
              "description": "Command-line flags whose value is a credential."},
    authHeaders={"type": "array", "items": {"type": "string"},
                 "default": ["authorization", "proxy-authorization", "x-api-key", "api-key"],
                 "description": "HTTP headers (probes, lifecycle hooks) whose value is a credential."},
)


def _handlers(container: Mapping) -> Iterator[tuple[str, Mapping]]:
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        yield kind, mapping(get(container, kind))
    for hook in ("postStart", "preStop"):
        yield f"lifecycle.{hook}", mapping(get(container, "lifecycle", hook))


def _container_secrets(c: Mapping, cfg: Mapping) -> Iterator[str]:
    for env in items(get(c, "env")):
        name = get(env, "name")
        if url_credential(get(env, "value")):
            yield f"env {name} is a URL with a password in it; build it from a secretKeyRef ($(VAR) expansion)"
            continue
        if not secret_name(name, cfg):
            continue
        if literal(get(env, "value")):
            yield f"env {name} has a literal value; use valueFrom.secretKeyRef"
        elif get(env, "valueFrom", "configMapKeyRef") is not None:
            yield f"env {name} comes from a ConfigMap; use valueFrom.secretKeyRef"
    headers = [h.lower() for h in cfg["authHeaders"]]
    for where, handler in _handlers(c):
        for header in items(get(handler, "httpGet", "httpHeaders")):
            name = str(get(header, "name", default=""))
            if (name.lower() in headers or secret_name(name, cfg)) and literal(get(header, "value")):
                yield f"{where} sends header {name} with a literal value; probe with exec reading the key from the env"
        command = " ".join(str(plain(word)) for word in items(get(handler, "exec", "command")))
        if any(literal(m.group(1)) for m in _HEADER_IN_COMMAND.finditer(command)):
            yield f"{where} exec command carries a literal credential header; read it from an env variable"
    words = items(get(c, "command")) + items(get(c, "args"))
    argv = _argv(words)
    for i, word in enumerate(argv):
        for flag in cfg["argFlags"]:
            value = argv[i + 1] if word == flag and i + 1 < len(argv) else (
                word[len(flag) + 1:] if word.startswith(flag + "=") else None)
            if value is not None and literal(value):
                yield f"{flag} is given literally on the command line; pass $(ENV_VAR) from a secretKeyRef"
    if any(literal(m.group(1)) for m in _HEADER_IN_COMMAND.finditer(" ".join(str(plain(w)) for w in words))):
        yield "the command line carries a literal credential header; read it from an env variable"


def validate_kubernetes_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, K8S_SECRETS_SCHEMA)
    if args.resource_type == CONFIG_MAP:
        for section in ("data", "binaryData"):
            for key in mapping(get(args.props, section)):
                value = get(args.props, section, key)
                if (secret_name(key, cfg) and literal(value)) or url_credential(value):
                    report(f"ConfigMap {section}.{key} looks like a credential: ConfigMaps are meant to be readable and "
                           "are not encrypted at rest like Secrets; move it to a Secret.")
        return
    spec = pod_spec(args)
    if spec is None:
        return
    for c in _containers(spec):
        for problem in _container_secrets(c, cfg):
            # In the pod spec the value is readable by anyone who may read the object,
            # whether or not it is a Pulumi secret in the state.
            report(f"container {get(c, 'name', default='?')}: {problem}.")


SECRET_INPUTS_SCHEMA = _schema(
    **NAME_PROPERTIES,
    secretMarkers={"type": "boolean", "default": False,
                   "description": "Whether Pulumi secrets arrive wrapped in pulumi_policy.Secret. gpu-fleet's offline "
                                  "evaluation sets it; `pulumi preview`/`up` decrypt secrets without a marker "
                                  "(pulumi/pulumi-policy#241), so there the check reports itself not applicable."},
)


def plaintext_credentials(value: Any, cfg: Mapping, path: str = "") -> Iterator[str]:
    """Paths of credential-like values in ``value`` that are not Pulumi secrets: keys named
    like credentials, and ``{name: <credential name>, value: ...}`` pairs (env lists)."""
    if isinstance(value, Secret):
        return
    if isinstance(value, Mapping):
        if "name" in value and "value" in value and secret_name(value["name"], cfg) \
                and not isinstance(value["value"], Secret) and literal(value["value"]):
            yield f"{path}[name={plain(value['name'])}].value"
        for key in value:
            inner, where = value[key], f"{path}.{key}" if path else str(key)
            if secret_name(key, cfg) and not isinstance(inner, Secret) and literal(inner):
                yield where
            else:
                yield from plaintext_credentials(inner, cfg, where)
    elif _is_list(value):
        for i, inner in enumerate(value):
            yield from plaintext_credentials(inner, cfg, f"{path}[{i}]")


def validate_secret_inputs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in POD_SPEC_PATHS or args.resource_type == CONFIG_MAP:
        return  # kubernetes-no-plaintext-secrets judges these, secret or not
    cfg = settings(args, SECRET_INPUTS_SCHEMA)
    found = list(plaintext_credentials(args.props, cfg))
    if not found:
        return
    if not cfg["secretMarkers"]:
        # Raises: pulumi_policy records the policy as not applicable to this resource.
        args.not_applicable(f"{', '.join(found)} may be Pulumi secrets: this run passes secrets without a marker")
    report(f"credential-like inputs are plaintext, not Pulumi secrets: {', '.join(found)}; wrap them in "
           "pulumi.Output.secret(...) (or read them with Config.require_secret) so the state and every plan keep "
           "them encrypted.")


# --------------------------------------------------------------------------- the pack

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY

POLICIES = [
    ResourceValidationPolicy(
        name="hpa-min-replicas",
        description="HPAs keep at least 2 replicas, so a model stays served through a restart or a node drain.",
        validate=validate_hpa_min_replicas, enforcement_level=MANDATORY, config_schema=MIN_REPLICAS_SCHEMA),
    ResourceValidationPolicy(
        name="scale-to-zero-non-production",
        description="KEDA ScaledObjects keep at least 2 replicas unless their stack is labelled non-production "
                    "(gpu-fleet/environment), the only place a model may scale to zero.",
        validate=validate_scale_to_zero_non_production, enforcement_level=MANDATORY,
        config_schema=MIN_REPLICAS_SCHEMA),
    ResourceValidationPolicy(
        name="hpa-scale-up-fast",
        description="HPAs (and the HPAs KEDA creates) scale up within 1-2 minutes: scale-up window <= 120 s and a "
                    "policy adding pods at least every 120 s.",
        validate=validate_hpa_scale_up, enforcement_level=MANDATORY, config_schema=SCALE_UP_SCHEMA),
    ResourceValidationPolicy(
        name="hpa-scale-down-slow",
        description="HPAs scale down slowly: a scale-down stabilisation window of 5-10 minutes avoids flapping.",
        validate=validate_hpa_scale_down, enforcement_level=MANDATORY, config_schema=SCALE_DOWN_SCHEMA),
    ResourceValidationPolicy(
        name="hpa-gpu-utilization-target",
        description="HPAs scale on GPU utilisation (dcgm_gpu_utilization) with an AverageValue target of 70-80 %.",
        validate=validate_hpa_gpu_target, enforcement_level=ADVISORY, config_schema=GPU_TARGET_SCHEMA),
    StackValidationPolicy(
        name="hpa-queue-metric",
        description="HPAs of model servers and GPU workloads scale on the queue of waiting requests "
                    "(llm_pending_requests), not on GPU utilisation alone.",
        validate=validate_hpa_queue_metric, enforcement_level=MANDATORY, config_schema=QUEUE_METRIC_SCHEMA),
    StackValidationPolicy(
        name="gpu-hpa-not-cpu-only",
        description="An HPA scaling a model server or GPU workload does not scale on CPU or memory alone.",
        validate=validate_gpu_hpa_metrics, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="model-prewarm-probes",
        description="vLLM model servers take traffic only once the model is loaded: startup and readiness probes "
                    "on /v1/models.",
        validate=validate_model_probes, enforcement_level=MANDATORY, config_schema=PROBES_SCHEMA),
    StackValidationPolicy(
        name="model-queue-depth-alert",
        description="Every served model has an alert on waiting requests (> 20 for 2 minutes or less).",
        validate=validate_queue_alert, enforcement_level=MANDATORY, config_schema=QUEUE_ALERT_SCHEMA),
    ResourceValidationPolicy(
        name="gpu-node-pool-taint",
        description="GPU node pools carry the nvidia.com/gpu NO_SCHEDULE taint, so only GPU workloads land on them.",
        validate=validate_gpu_node_pool_taint, enforcement_level=MANDATORY, config_schema=GPU_TAINT_SCHEMA),
    ResourceValidationPolicy(
        name="gpu-workload-scheduling",
        description="GPU pods request GPUs in limits and tolerate the GPU taint; pods on GPU nodes request a GPU.",
        validate=validate_gpu_workloads, enforcement_level=MANDATORY, config_schema=WORKLOAD_GPU_SCHEMA),
    ResourceValidationPolicy(
        name="cache-encryption-and-auth",
        description="Redis caches (ElastiCache, Memorystore) require TLS, encryption at rest and authentication.",
        validate=validate_cache_security, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="cache-high-availability",
        description="Redis caches have a replica in another zone with automatic failover.",
        validate=validate_cache_high_availability, enforcement_level=MANDATORY, config_schema=CACHE_HA_SCHEMA),
    ResourceValidationPolicy(
        name="cache-client-wiring",
        description="Pods given the regional cache's URL reach it over TLS and carry the label its egress "
                    "NetworkPolicy admits.",
        validate=validate_cache_clients, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="route53-routing-health-checked",
        description="Route 53 latency, weighted and failover records have a health check (or, as aliases, "
                    "evaluate their target's health), so a failed region stops receiving traffic.",
        validate=validate_route53_record_health, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="route53-health-check-https",
        description="Route 53 health checks use HTTPS on a resource path.",
        validate=validate_route53_health_check, enforcement_level=MANDATORY, config_schema=HEALTH_CHECK_SCHEMA),
    StackValidationPolicy(
        name="global-failover-budget",
        description="Regional failover is detected and switched in under 30 seconds (the global routing's "
                    "worst-case budget).",
        validate=validate_failover_budget, enforcement_level=ADVISORY, config_schema=BUDGET_SCHEMA),
    ResourceValidationPolicy(
        name="kubernetes-no-plaintext-secrets",
        description="No credential is written into a pod spec (env values, URLs with passwords, probe headers, "
                    "arguments) or a ConfigMap.",
        validate=validate_kubernetes_secrets, enforcement_level=MANDATORY, config_schema=K8S_SECRETS_SCHEMA),
    ResourceValidationPolicy(
        name="secret-inputs-encrypted",
        description="Credential-like resource inputs (Helm values, AUTH tokens, provider credentials) are Pulumi "
                    "secrets.",
        validate=validate_secret_inputs, enforcement_level=MANDATORY, config_schema=SECRET_INPUTS_SCHEMA),
]


def _load_beside(module: str) -> Any:
    """A policy module next to this file, however this file was loaded (by Pulumi from the
    folder, or by path by gpu_fleet.policy_check)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(f"gpu_fleet_{module}", Path(__file__).with_name(f"{module}.py"))
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


POLICIES += _load_beside("cache_rules").policies(globals())
