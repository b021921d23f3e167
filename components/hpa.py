"""The autoscaling/v2 HPA a model gets, as a plain Kubernetes spec dict.

Pure (no Pulumi import): the model deployment component, the simulator and the policy
checks all read the HPA from here, so the numbers they reason about are the numbers
``pulumi up`` deploys. With default config this is the seed's HPA exactly, plus a
``deployment`` selector on the queue metric so two models in one namespace do not
scale on each other's queue.
"""

from __future__ import annotations

from .config import AutoscalingConfig, ScalingRules
from .contract import DEPLOYMENT_LABEL, GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC


def _external(metric: str, deployment_name: str, average_value: int) -> dict:
    return {
        "type": "External",
        "external": {
            "metric": {"name": metric, "selector": {"matchLabels": {DEPLOYMENT_LABEL: deployment_name}}},
            # Quantities are strings in the Kubernetes API.
            "target": {"type": "AverageValue", "averageValue": str(average_value)},
        },
    }


def _rules(rules: ScalingRules) -> dict:
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": rules.select_policy,
        "policies": [
            {"type": p.type, "value": p.value, "periodSeconds": p.period_seconds} for p in rules.policies
        ],
    }


def behavior(autoscaling: AutoscalingConfig) -> dict:
    """The HPA ``behavior`` (also KEDA's ``advanced.horizontalPodAutoscalerConfig.behavior``)."""
    return {"scaleUp": _rules(autoscaling.scale_up), "scaleDown": _rules(autoscaling.scale_down)}


def hpa_spec(autoscaling: AutoscalingConfig, deployment_name: str) -> dict:
    """The ``spec`` of the HorizontalPodAutoscaler scaling ``deployment_name``."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": [
            _external(GPU_UTILIZATION_METRIC, deployment_name, autoscaling.gpu_utilization_target),
            _external(PENDING_REQUESTS_METRIC, deployment_name, autoscaling.pending_requests_target),
        ],
        "behavior": behavior(autoscaling),
    }
