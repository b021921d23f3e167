"""HPA and KEDA ScaledObject policies: replicas, scale-up and scale-down behaviour, the GPU and queue metrics."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Iterator, Optional

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs

from contract import (
    ENVIRONMENT_LABEL,
    GPU_UTILIZATION_METRIC,
    HPA_DEFAULT_MIN_REPLICAS,
    HPA_DEFAULT_SCALE_DOWN,
    HPA_DEFAULT_SCALE_UP,
    KEDA_DEFAULT_MIN_REPLICA_COUNT,
    NON_PRODUCTION,
    PENDING_REQUESTS_METRIC,
    VLLM_WAITING_METRIC,
)
from resource_access import (
    DEPLOYMENT,
    HPA,
    SCALED_OBJECT,
    STATEFUL_SET,
    _containers,
    get,
    _gpu_amount,
    _is_model_server,
    items,
    mapping,
    _num,
    parse_quantity,
    pod_spec,
    _schema,
    _seconds,
    settings,
)

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
    metricName={"type": "string", "default": GPU_UTILIZATION_METRIC,
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
QUEUE_METRICS = [PENDING_REQUESTS_METRIC, VLLM_WAITING_METRIC]

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
