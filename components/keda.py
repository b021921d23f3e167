"""KEDA: the autoscaling engine that can scale a non-production model to zero.

Pure (no Pulumi import): :class:`gpu_fleet.components.monitoring.Monitoring` installs the chart with
:func:`keda_values`, :class:`gpu_fleet.components.model_deployment.ModelDeployment` creates what
:func:`scaled_object` returns, and the tests validate it against the ScaledObject CRD.

One External metrics API per cluster
------------------------------------
KEDA's metrics server and prometheus-adapter both serve ``external.metrics.k8s.io``, and
the API server registers one APIService per group and version (``v1beta1.external.
metrics.k8s.io``; kedacore/keda#470). So a stack picks one engine for all its models
(``gpu_fleet.components.config`` refuses a mix): with ``engine: keda`` KEDA is installed and
prometheus-adapter is not, and every model gets a ScaledObject instead of an HPA. KEDA
then creates and owns each model's HPA (named ``vllm-<model>`` as in HPA mode, so
alerts and dashboards see the same object) and serves its metrics.

Switching a live stack: from ``hpa`` to ``keda``, the ScaledObject adopts the existing
HPA (:data:`TRANSFER_HPA_OWNERSHIP_ANNOTATION`); Pulumi then deletes the HPA it created
and KEDA, which reconciles the HPAs it owns, creates it again (unverified in a cluster:
until then the model does not scale). From ``keda`` back to ``hpa``,
Pulumi would create the HPA while KEDA's of the same name still exists and fail: delete
the ScaledObjects first (``kubectl delete scaledobject -n <ns> vllm-<model>``).

The ScaledObject keeps the HPA mode's numbers: the same two signals (the recorded
``dcgm_gpu_utilization`` and ``llm_pending_requests`` of the Deployment, read straight
from Prometheus), the same AverageValue targets, min/max and ``behavior``. What KEDA adds
is the step between 0 and 1 replica, which an HPA cannot take: the model is *active*
while either signal is above its activation threshold, and after ``idleSeconds``
(``cooldownPeriod``) inactive it goes to zero.

What happens at zero (read before enabling it)
----------------------------------------------
At zero replicas there is no vLLM process: nothing counts waiting requests and no GPU is
busy, so neither signal can wake the model by itself. Requests are not held anywhere:
the load balancer has no ready target and answers 503 at once, and the model's health
check fails (the global stack moves that model's traffic to another region serving it).
A model is woken by pausing its autoscaling at one replica
(``kubectl annotate scaledobject -n <ns> vllm-<model> autoscaling.keda.sh/paused-replicas=1``,
removed once traffic flows). The wake takes up to :func:`gpu_fleet.components.sizing.cold_start`
(node, image pull, start-up budget), which the plan prints per model.
"""

from __future__ import annotations

from typing import Mapping

from . import pins
from .config import AutoscalingConfig
from .contract import DEPLOYMENT_LABEL, FLEET_LABELS, GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC, POOL_LABEL, SYSTEM_POOL
from .hpa import behavior

#: The KEDA Helm chart (gpu_fleet.components.pins.KEDA; KEDA 2.20 supports the clusters' Kubernetes 1.33).
KEDA_CHART_VERSION = pins.KEDA.version
KEDA_REPO = pins.KEDA.repository
KEDA_RELEASE = "keda"
KEDA_NAMESPACE = "keda"

#: ``keda.sh/v1alpha1`` ScaledObject (kedacore/charts@v2.20.2
#: ``keda/templates/crds/crd-scaledobjects.yaml``).
SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_KIND = "ScaledObject"
#: Lets a ScaledObject adopt the HPA of the same name that HPA mode created, so switching a
#: live model from ``hpa`` to ``keda`` is not refused by KEDA's admission webhook (which
#: rejects a second autoscaler on one Deployment); https://keda.sh/docs/latest/reference/
#: scaledobject-spec/ ("transfer an existing HPA ownership to this ScaledObject").
TRANSFER_HPA_OWNERSHIP_ANNOTATION = "scaledobject.keda.sh/transfer-hpa-ownership"
#: How often KEDA evaluates the triggers; the HPA's own sync period is 15 s as well.
POLLING_INTERVAL_SECONDS = 15
#: The port KEDA's metrics server and webhooks listen on. The API server calls both; a
#: private GKE control plane reaches nodes only on 443 and 10250, so the chart defaults
#: (6443, 9443) would leave every ScaledObject without metrics (same reason as
#: prometheus-adapter's ``listenPort`` in components/monitoring_rules.py).
CONTROL_PLANE_REACHABLE_PORT = 10250


def keda_values() -> dict:
    """Helm values of the KEDA chart; every key read at kedacore/charts@v2.20.2
    ``keda/values.yaml`` (``crds.install``, ``nodeSelector``, ``resources.{operator,
    metricServer,webhooks}``, ``podDisruptionBudget.*``, ``service.portHttpsTarget``,
    ``webhooks.port``)."""
    small = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    return {
        "crds": {"install": True},
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "resources": {"operator": small, "metricServer": small, "webhooks": small},
        # One replica each (the chart's default: only one operator and one metrics server
        # serve at a time); the PDB keeps a node drain from taking both down at once.
        "podDisruptionBudget": {"operator": {"maxUnavailable": 1}, "metricServer": {"maxUnavailable": 1},
                                "webhooks": {"maxUnavailable": 1}},
        "service": {"portHttpsTarget": CONTROL_PLANE_REACHABLE_PORT},
        "webhooks": {"port": CONTROL_PLANE_REACHABLE_PORT},
    }


def _trigger(metric: str, deployment_name: str, namespace: str, threshold: int, activation: int,
             prometheus_url: str) -> dict:
    # The recorded series is one per Deployment already; sum() makes the answer a single
    # element, as the scaler requires, and 0 when it is absent (ignoreNullValues).
    query = f'sum({metric}{{namespace="{namespace}",{DEPLOYMENT_LABEL}="{deployment_name}"}})'
    return {
        "type": "prometheus",
        "name": metric,
        # AverageValue: KEDA divides by the replicas, as the HPA mode's External metric does.
        "metricType": "AverageValue",
        # Keys from https://keda.sh/docs/2.20/scalers/prometheus/ (all values are strings).
        "metadata": {
            "serverAddress": prometheus_url,
            "query": query,
            "threshold": str(threshold),
            "activationThreshold": str(activation),
            "ignoreNullValues": "true",
        },
    }


def scaled_object(autoscaling: AutoscalingConfig, deployment_name: str, namespace: str, *,
                  labels: Mapping[str, str], prometheus_url: str, initial_cooldown_seconds: int) -> dict:
    """The ScaledObject of one model: the HPA mode's signals, targets, bounds and behaviour,
    plus the idle period and activation thresholds of scale to zero.

    initial_cooldown_seconds: how long after creation KEDA leaves the Deployment alone
        (``initialCooldownPeriod``): the first rollout must finish before it may go to zero.
    """
    zero = autoscaling.scale_to_zero
    return {
        "apiVersion": SCALED_OBJECT_API_VERSION,
        "kind": SCALED_OBJECT_KIND,
        "metadata": {"name": deployment_name, "namespace": namespace, "labels": {**labels, **FLEET_LABELS},
                     "annotations": {TRANSFER_HPA_OWNERSHIP_ANNOTATION: "true"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
            "minReplicaCount": autoscaling.min_replicas,
            "maxReplicaCount": autoscaling.max_replicas,
            "pollingInterval": POLLING_INTERVAL_SECONDS,
            "cooldownPeriod": zero.idle_seconds,
            "initialCooldownPeriod": initial_cooldown_seconds,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"name": deployment_name, "behavior": behavior(autoscaling)},
            },
            "triggers": [
                _trigger(GPU_UTILIZATION_METRIC, deployment_name, namespace, autoscaling.gpu_utilization_target,
                         zero.activation_gpu_utilization, prometheus_url),
                _trigger(PENDING_REQUESTS_METRIC, deployment_name, namespace, autoscaling.pending_requests_target,
                         zero.activation_pending_requests, prometheus_url),
            ],
        },
    }


def uses_keda(engines: "list[str] | set[str]") -> bool:
    """Whether a stack whose models use ``engines`` runs KEDA (see the module docstring)."""
    return "keda" in set(engines)


__all__ = [
    "KEDA_CHART_VERSION",
    "KEDA_NAMESPACE",
    "KEDA_RELEASE",
    "KEDA_REPO",
    "keda_values",
    "scaled_object",
    "uses_keda",
]
