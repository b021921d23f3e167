"""The metrics pipeline behind the HPA's External metrics, and the fleet's alerts.

Pure (no Pulumi import): :class:`gpu_fleet.components.monitoring.Monitoring` deploys what these
functions return, and the tests run the rule groups through ``promtool``.

What flows where
----------------
- dcgm-exporter (GPU operator, namespace ``gpu-operator``, Kubernetes mode) exports
  ``DCGM_FI_DEV_GPU_UTIL`` per GPU with the ``pod``/``namespace``/``container`` of the pod
  using that GPU. Its ServiceMonitor (:func:`gpu_operator_dcgm_values`) scrapes with
  ``honorLabels: false``, so those arrive as ``exported_pod``/``exported_namespace``
  (the target's own ``namespace`` is ``gpu-operator``).
- vLLM serves ``/metrics`` on its ``http`` port; :func:`vllm_pod_monitor` scrapes it and
  copies the pod label ``gpu-fleet/model`` onto every sample as ``model``.
- Recording rules (:func:`prometheus_rule_groups`) turn both into one series per
  Deployment, ``{namespace=<workload ns>, deployment="vllm-<model>", model=<model>}``:

  - ``dcgm_gpu_utilization`` = SUM over the Deployment's pods of each pod's MEAN
    utilisation over its GPUs. The HPA's AverageValue target then asks for
    ``ceil(sum / 75) = ceil(pods * mean / 75)`` replicas. Summing raw per-GPU series
    instead would make one 8-GPU pod at 75 % read 600 and ask for 8 replicas.
  - ``llm_pending_requests`` = SUM of ``vllm:num_requests_waiting`` over its pods.

- prometheus-adapter (:func:`adapter_rules`) serves both as External metrics in the
  workload's namespace; the HPA selects ``deployment=vllm-<model>``.

Pod -> Deployment mapping (one source of truth: the pod label ``gpu-fleet/model``)
--------------------------------------------------------------------------------
- vLLM samples carry it from the scrape itself (PodMonitor relabeling), so the queue
  metric needs no join and keeps working while kube-state-metrics restarts.
- dcgm samples are scraped from the exporter, not from the vLLM pod, so they cannot be
  relabeled with the vLLM pod's labels; they are joined on ``(namespace, pod)`` with
  kube-state-metrics' ``kube_pod_labels``, which exposes ``gpu-fleet/model`` as
  ``label_gpu_fleet_model`` because :func:`kube_prometheus_stack_values` allow-lists it
  (``--metric-labels-allowlist=pods=[app.kubernetes.io/name,gpu-fleet/model]``).
  Rejected alternative: ``label_replace`` of the pod-name prefix
  (``vllm-<model>-<rs-hash>-<suffix>``) depends on the ReplicaSet naming scheme and
  silently mis-assigns any other pod whose name happens to start with ``vllm-``.

In both cases the Deployment name is derived as ``vllm-<model>`` (the lead's naming
convention), the same string :func:`gpu_fleet.components.hpa.hpa_spec` selects on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import urlsplit

from . import pins
from .contract import (
    DEPLOYMENT_LABEL,
    DEPLOYMENT_PREFIX,
    FLEET_LABELS,
    GPU_UTILIZATION_METRIC,
    MODEL_LABEL,
    PENDING_REQUESTS_METRIC,
    SYSTEM_NODE_SELECTOR,
    VLLM_NAME,
    VLLM_NAME_LABEL,
    deployment_name,
)

# --------------------------------------------------------------------------- constants

#: Pinned Helm charts, with their upstream sources, in :mod:`gpu_fleet.components.pins`.
KUBE_PROMETHEUS_STACK_CHART_VERSION = pins.KUBE_PROMETHEUS_STACK.version
PROMETHEUS_ADAPTER_CHART_VERSION = pins.PROMETHEUS_ADAPTER.version
PROMETHEUS_COMMUNITY_REPO = pins.PROMETHEUS_COMMUNITY_REPO

MONITORING_NAMESPACE = "monitoring"
DEFAULT_SERVING_NAMESPACE = "llm-serving"
GPU_OPERATOR_NAMESPACE = "gpu-operator"
#: Helm release names; pinned (with ``fullnameOverride``) so service names are stable.
KUBE_PROMETHEUS_STACK_RELEASE = "kube-prometheus-stack"
PROMETHEUS_ADAPTER_RELEASE = "prometheus-adapter"
#: The Prometheus Service kube-prometheus-stack creates (``<fullname>-prometheus``).
PROMETHEUS_URL = f"http://{KUBE_PROMETHEUS_STACK_RELEASE}-prometheus.{MONITORING_NAMESPACE}.svc:9090"
#: Labels on the fleet's PodMonitors and PrometheusRule that a Prometheus selects them by
#: (kube-prometheus-stack's own Prometheus selects every one; another may select these).
PROMETHEUS_SELECTOR_LABELS = {"release": KUBE_PROMETHEUS_STACK_RELEASE}


VLLM_METRICS_PORT = "http"
VLLM_METRICS_PATH = "/metrics"

#: Intermediate recording rules (``level:metric:operations``).
POD_MODEL_INFO = "gpu_fleet:pod_model:info"
POD_GPU_UTILIZATION = "gpu_fleet:pod_gpu_utilization:avg"
DEPLOYMENT_GPU_UTILIZATION_AVG = "gpu_fleet:deployment_gpu_utilization:avg"
POD_PENDING_REQUESTS = "gpu_fleet:vllm_pending_requests:sum"
PENDING_REQUESTS_PER_POD = "gpu_fleet:pending_requests_per_pod:avg"
HPA_TARGET_INFO = "gpu_fleet:hpa_target:info"

RECORDING_GROUP = "gpu-fleet.recording"
ALERTS_GROUP = "gpu-fleet.alerts"
#: The HPA syncs every 15 s; recording at the same pace keeps its input fresh.
RECORDING_INTERVAL = "15s"
SCRAPE_INTERVAL_FAST = "15s"

ALERT_QUEUE = "VllmQueueDepthHigh"
ALERT_GPU_SATURATED = "VllmGpuSaturated"
ALERT_HPA_AT_MAX = "VllmHpaAtMaxReplicas"
ALERT_REPLICAS_UNAVAILABLE = "VllmReplicasUnavailable"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ModelRef:
    """A served model as monitoring sees it: Deployment ``vllm-<name>`` in ``namespace``."""

    name: str
    namespace: str = DEFAULT_SERVING_NAMESPACE

    def __post_init__(self) -> None:
        # Both end up inside PromQL regexes and Kubernetes names: DNS labels only, so no
        # character needs escaping.
        for what, value in (("name", self.name), ("namespace", self.namespace)):
            if not _DNS_LABEL.match(value or "") or len(value) > 63:
                raise ValueError(f"ModelRef.{what} {value!r} is not a DNS label")

    @property
    def deployment(self) -> str:
        return deployment_name(self.name)


@dataclass(frozen=True)
class AlertSettings:
    """Alert thresholds. Defaults follow the seed's best-practice table.

    pending_requests_threshold: queue alert fires above this many waiting requests ...
    pending_requests_for: ... held this long (seed: > 20 for > 2 minutes).
    pending_requests_per_replica: True (default) compares the Deployment's waiting
        requests *per ready-to-serve replica* with the threshold; False compares the
        Deployment's total. Per replica is the default because the HPA itself targets
        10 waiting requests per replica: a fixed threshold on the total would fire
        permanently at 3+ replicas even when scaling works as designed.
    gpu_saturation_percent / gpu_saturation_for: the Deployment's mean GPU utilisation
        above this, this long.
    hpa_at_max_for: the HPA's current replicas at (or above) its maxReplicas this long.
    replicas_unavailable_for: available replicas below desired this long. 15 m rather
        than 10 m because a scale-up onto a fresh GPU node (node boot, driver, a 10+ GB
        image, weight loading) routinely takes 10 minutes by itself.
    """

    pending_requests_threshold: float = 20
    pending_requests_for: str = "2m"
    pending_requests_per_replica: bool = True
    gpu_saturation_percent: float = 95
    gpu_saturation_for: str = "10m"
    hpa_at_max_for: str = "15m"
    replicas_unavailable_for: str = "15m"

    def __post_init__(self) -> None:
        for name in ("pending_requests_for", "gpu_saturation_for", "hpa_at_max_for", "replicas_unavailable_for"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _DURATION.match(value):
                raise ValueError(f"AlertSettings.{name} {value!r} is not a Prometheus duration (e.g. '2m')")
        if self.pending_requests_threshold < 0:
            raise ValueError("AlertSettings.pending_requests_threshold must be >= 0")
        if not 0 < self.gpu_saturation_percent <= 100:
            raise ValueError("AlertSettings.gpu_saturation_percent must be in (0, 100]")

    @classmethod
    def from_config(cls, cfg: Any) -> "AlertSettings":
        """From ``gpu_fleet.components.config.AlertsConfig`` (minutes as integers)."""
        return cls(
            pending_requests_threshold=cfg.pending_requests_threshold,
            pending_requests_for=f"{cfg.pending_requests_for_minutes}m",
            pending_requests_per_replica=cfg.pending_requests_per_replica,
            gpu_saturation_percent=cfg.gpu_saturation_percent,
            gpu_saturation_for=f"{cfg.gpu_saturation_for_minutes}m",
        )


# --------------------------------------------------------------------------- PromQL helpers


def _alternation(values: Iterable[str]) -> str:
    """``a|b|c`` of distinct values, sorted (stable rule text for stable diffs)."""
    return "|".join(sorted(set(values)))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _derive_deployment(expr: str, from_label: str) -> str:
    return f'label_replace({expr}, "{DEPLOYMENT_LABEL}", "{DEPLOYMENT_PREFIX}$1", "{from_label}", "(.+)")'


@dataclass(frozen=True)
class _Scope:
    """Matchers restricting every rule to the configured models and their namespaces."""

    namespaces: str
    models: str

    @property
    def deployments(self) -> str:
        return f"{DEPLOYMENT_PREFIX}({self.models})"


def _scope(models: Sequence[ModelRef]) -> _Scope:
    return _Scope(namespaces=_alternation(m.namespace for m in models), models=_alternation(m.name for m in models))


# --------------------------------------------------------------------------- rule groups


def recording_rules(models: Sequence[ModelRef]) -> list[dict]:
    s = _scope(models)
    ns = f'namespace=~"{s.namespaces}"'

    # Pod -> (deployment, model), from kube-state-metrics (needs the labels allowlist).
    pod_model = (
        "max by (namespace, pod, deployment, model) ("
        + _derive_deployment(
            'label_replace(kube_pod_labels{%s, label_app_kubernetes_io_name="%s", label_gpu_fleet_model=~"%s"}, '
            '"model", "$1", "label_gpu_fleet_model", "(.+)")' % (ns, VLLM_NAME, s.models),
            "label_gpu_fleet_model",
        )
        + ")"
    )
    # Each workload pod's MEAN utilisation over its GPUs. Averaged by the exported_* labels
    # first (GPUs not allocated to any pod have an empty exported_pod and are dropped),
    # then renamed to the workload's namespace/pod so it joins with kube_pod_labels.
    pod_gpu = (
        "max by (namespace, pod) (label_replace(label_replace("
        'avg by (exported_namespace, exported_pod) (DCGM_FI_DEV_GPU_UTIL{exported_namespace=~"%s", exported_pod!=""}), '
        '"namespace", "$1", "exported_namespace", "(.+)"), '
        '"pod", "$1", "exported_pod", "(.+)"))' % s.namespaces
    )
    joined = f"{POD_GPU_UTILIZATION} * on (namespace, pod) group_left (deployment, model) {POD_MODEL_INFO}"
    # vLLM pods carry `model` from the PodMonitor relabeling; sum over engines per pod.
    pod_pending = 'sum by (namespace, pod, model) (vllm:num_requests_waiting{%s, model=~"%s"})' % (ns, s.models)
    hpa_target = (
        "max by (namespace, horizontalpodautoscaler, deployment, model) (label_replace(label_replace("
        'kube_horizontalpodautoscaler_info{%s, scaletargetref_kind="Deployment", scaletargetref_name=~"%s"}, '
        '"%s", "$1", "scaletargetref_name", "(.+)"), '
        '"model", "$1", "scaletargetref_name", "%s(.+)"))' % (ns, s.deployments, DEPLOYMENT_LABEL, DEPLOYMENT_PREFIX)
    )
    return [
        {"record": POD_MODEL_INFO, "expr": pod_model},
        {"record": POD_GPU_UTILIZATION, "expr": pod_gpu},
        # The HPA metric: sum over pods of per-pod means (NOT a sum over GPUs).
        {"record": GPU_UTILIZATION_METRIC, "expr": f"sum by (namespace, deployment, model) ({joined})"},
        {"record": DEPLOYMENT_GPU_UTILIZATION_AVG, "expr": f"avg by (namespace, deployment, model) ({joined})"},
        {"record": POD_PENDING_REQUESTS, "expr": pod_pending},
        {
            "record": PENDING_REQUESTS_METRIC,
            "expr": _derive_deployment(f"sum by (namespace, model) ({POD_PENDING_REQUESTS})", "model"),
        },
        {
            "record": PENDING_REQUESTS_PER_POD,
            "expr": _derive_deployment(f"avg by (namespace, model) ({POD_PENDING_REQUESTS})", "model"),
        },
        {"record": HPA_TARGET_INFO, "expr": hpa_target},
    ]


def alert_rules(models: Sequence[ModelRef], alerts: AlertSettings) -> list[dict]:
    s = _scope(models)
    ns = f'namespace=~"{s.namespaces}"'
    by_hpa = "max by (namespace, horizontalpodautoscaler)"
    hpa_key = "on (namespace, horizontalpodautoscaler)"

    queue_series = PENDING_REQUESTS_PER_POD if alerts.pending_requests_per_replica else PENDING_REQUESTS_METRIC
    queue_what = "per replica" if alerts.pending_requests_per_replica else "in total"
    threshold = _num(alerts.pending_requests_threshold)

    hpa_at_max = (
        f"(({by_hpa} (kube_horizontalpodautoscaler_status_current_replicas{{{ns}}})"
        f" >= {hpa_key} {by_hpa} (kube_horizontalpodautoscaler_spec_max_replicas{{{ns}}}))"
        # An HPA with minReplicas == maxReplicas is always "at max": nothing to report.
        f" unless {hpa_key} ({by_hpa} (kube_horizontalpodautoscaler_spec_min_replicas{{{ns}}})"
        f" == {hpa_key} {by_hpa} (kube_horizontalpodautoscaler_spec_max_replicas{{{ns}}})))"
        f" * {hpa_key} group_left (deployment, model) {HPA_TARGET_INFO}"
    )
    dep = f'{ns}, deployment=~"{s.deployments}"'
    unavailable = (
        f"label_replace(max by (namespace, deployment) (kube_deployment_status_replicas_available{{{dep}}})"
        f" < on (namespace, deployment) max by (namespace, deployment) (kube_deployment_spec_replicas{{{dep}}}),"
        f' "model", "$1", "deployment", "{DEPLOYMENT_PREFIX}(.+)")'
    )
    return [
        {
            "alert": ALERT_QUEUE,
            "expr": f"{queue_series} > {threshold}",
            "for": alerts.pending_requests_for,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "vLLM {{ $labels.model }}: requests are queueing",
                "description": (
                    "{{ $labels.namespace }}/{{ $labels.deployment }} has {{ $value }} requests waiting "
                    f"{queue_what} (threshold {threshold}) for more than {alerts.pending_requests_for}: "
                    "scaling is not keeping up with traffic."
                ),
            },
        },
        {
            "alert": ALERT_GPU_SATURATED,
            "expr": f"{DEPLOYMENT_GPU_UTILIZATION_AVG} > {_num(alerts.gpu_saturation_percent)}",
            "for": alerts.gpu_saturation_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "vLLM {{ $labels.model }}: GPUs saturated",
                "description": (
                    "Mean GPU utilisation of {{ $labels.namespace }}/{{ $labels.deployment }} is {{ $value }} % "
                    f"(above {_num(alerts.gpu_saturation_percent)} %) for more than {alerts.gpu_saturation_for}."
                ),
            },
        },
        {
            "alert": ALERT_HPA_AT_MAX,
            "expr": hpa_at_max,
            "for": alerts.hpa_at_max_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "vLLM {{ $labels.model }}: autoscaler pinned at maxReplicas",
                "description": (
                    "HPA {{ $labels.namespace }}/{{ $labels.horizontalpodautoscaler }} has run at its maximum of "
                    f"{{{{ $value }}}} replicas for more than {alerts.hpa_at_max_for}: raise maxReplicas or GPU quota."
                ),
            },
        },
        {
            "alert": ALERT_REPLICAS_UNAVAILABLE,
            "expr": unavailable,
            "for": alerts.replicas_unavailable_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "vLLM {{ $labels.model }}: replicas not available",
                "description": (
                    "{{ $labels.namespace }}/{{ $labels.deployment }} has only {{ $value }} available replicas, "
                    f"fewer than desired, for more than {alerts.replicas_unavailable_for} "
                    "(pending GPU capacity, image pull or model load failing)."
                ),
            },
        },
    ]


def prometheus_rule_groups(models: Sequence[ModelRef], alerts: Optional[AlertSettings] = None) -> list[dict]:
    """The ``groups:`` of the fleet's rule file / PrometheusRule spec (empty without models)."""
    models = list(models)
    if not models:
        return []
    alerts = alerts or AlertSettings()
    return [
        {"name": RECORDING_GROUP, "interval": RECORDING_INTERVAL, "rules": recording_rules(models)},
        {"name": ALERTS_GROUP, "rules": alert_rules(models, alerts)},
    ]


# --------------------------------------------------------------------------- prometheus-adapter


def _external_rule(metric: str) -> dict:
    return {
        "seriesQuery": f'{metric}{{namespace!="",{DEPLOYMENT_LABEL}!=""}}',
        # The adapter adds the HPA's namespace as a matcher on this label; the recording
        # rules already put the workload's namespace there.
        "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
        "name": {"matches": f"^{metric}$", "as": metric},
        # One recorded series per Deployment; <<.LabelMatchers>> carries namespace and the
        # HPA's selector (deployment=vllm-<model>).
        "metricsQuery": f"sum by (namespace, {DEPLOYMENT_LABEL}) (<<.Series>>{{<<.LabelMatchers>>}})",
    }


def adapter_rules() -> dict:
    """prometheus-adapter Helm values ``rules:``: only the two External metrics.

    ``default: false`` and no ``custom``/``resource`` rules: no custom.metrics.k8s.io or
    metrics.k8s.io APIService is registered, so nothing competes with metrics-server.
    """
    return {
        "default": False,
        "custom": [],
        "external": [_external_rule(GPU_UTILIZATION_METRIC), _external_rule(PENDING_REQUESTS_METRIC)],
    }


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"prometheus_url {url!r} must be http(s)://host[:port][/path]")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}", port, parts.path.rstrip("/")


def prometheus_adapter_values(prometheus_url: str = PROMETHEUS_URL, *,
                              node_selector: Optional[dict[str, str]] = None) -> dict:
    """Helm values of the prometheus-adapter chart (keys as in its 5.x ``values.yaml``).
    ``node_selector``: where its pods run; default the fleet's system pool."""
    url, port, path = _split_url(prometheus_url)
    return {
        "fullnameOverride": PROMETHEUS_ADAPTER_RELEASE,
        # The chart renders --prometheus-url=<url>:<port><path>.
        "prometheus": {"url": url, "port": port, "path": path},
        # Two replicas and a PDB: while the external metrics API is down, no HPA scales.
        "replicas": 2,
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        # The API server calls the adapter (an aggregated API). A private GKE control plane may
        # reach nodes only on 443 and 10250, so the default 6443 would leave the External
        # metrics API unavailable and every HPA without metrics (prometheus-adapter#534).
        "listenPort": 10250,
        "nodeSelector": dict(SYSTEM_NODE_SELECTOR if node_selector is None else node_selector),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        # Must be >= the scrape interval (the adapter lists series seen since the last relist).
        "metricsRelistInterval": "1m",
        "rules": adapter_rules(),
    }


# --------------------------------------------------------------------------- kube-prometheus-stack


def kube_state_metrics_allowlist() -> list[str]:
    """``--metric-labels-allowlist`` entries: the pod labels the dcgm join needs."""
    return [f"pods=[{VLLM_NAME_LABEL},{MODEL_LABEL}]"]


def kube_prometheus_stack_values(
    *,
    retention: str = "15d",
    retention_size: str = "45GiB",
    storage_size: str = "50Gi",
    storage_class: Optional[str] = None,
) -> dict:
    """Helm values of kube-prometheus-stack (keys as in its ``values.yaml``).

    retention / retention_size: how long and how much TSDB data Prometheus keeps (the size
        cap stays below the volume so compaction never fills it).
    storage_size / storage_class: Prometheus' PersistentVolumeClaim; ``storage_class``
        None uses the cluster's default StorageClass.
    """
    if not _DURATION.match(retention):
        raise ValueError(f"retention {retention!r} is not a Prometheus duration")
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage_size}},
    }
    if storage_class:
        pvc_spec["storageClassName"] = storage_class
    system = dict(SYSTEM_NODE_SELECTOR)
    return {
        "fullnameOverride": KUBE_PROMETHEUS_STACK_RELEASE,
        "crds": {"enabled": True},
        # Grafana off here; gpu_fleet.components.monitoring turns it on with
        # gpu_fleet.components.dashboards.grafana_values (a generated admin password, never the
        # chart's well-known default).
        "grafana": {"enabled": False},
        # EKS and GKE run the control plane (and GKE Dataplane V2 has no kube-proxy; EKS's
        # binds its metrics to localhost): these targets are unreachable and would only
        # raise TargetDown alerts, so neither scrape them nor load their rules.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "defaultRules": {
            "create": True,
            "rules": {
                "etcd": False,
                "kubeControllerManager": False,
                "kubeSchedulerAlerting": False,
                "kubeSchedulerRecording": False,
                "kubeProxy": False,
            },
        },
        "prometheusOperator": {
            "nodeSelector": system,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "admissionWebhooks": {"patch": {"nodeSelector": system}},
        },
        "alertmanager": {
            "alertmanagerSpec": {
                "nodeSelector": system,
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            },
        },
        "kube-state-metrics": {
            # kube_pod_labels{label_app_kubernetes_io_name, label_gpu_fleet_model}: the
            # pod -> Deployment mapping of the dcgm recording rules.
            "metricLabelsAllowlist": kube_state_metrics_allowlist(),
            "nodeSelector": system,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        },
        "prometheus": {
            "prometheusSpec": {
                "nodeSelector": system,
                "resources": {"requests": {"cpu": "500m", "memory": "3Gi"}, "limits": {"memory": "6Gi"}},
                "retention": retention,
                "retentionSize": retention_size,
                "scrapeInterval": "30s",
                "evaluationInterval": "30s",
                "storageSpec": {"volumeClaimTemplate": {"spec": pvc_spec}},
                # Select ServiceMonitors / PodMonitors / PrometheusRules / Probes /
                # ScrapeConfigs from every namespace, not only this release's: the GPU
                # operator's dcgm ServiceMonitor (gpu-operator) and our PodMonitor and
                # PrometheusRule carry no `release` label.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "serviceMonitorSelector": {},
                "serviceMonitorNamespaceSelector": {},
                "podMonitorSelector": {},
                "podMonitorNamespaceSelector": {},
                "ruleSelector": {},
                "ruleNamespaceSelector": {},
            },
        },
    }


# --------------------------------------------------------------------------- scrape objects


def vllm_pod_monitor(namespace: str = DEFAULT_SERVING_NAMESPACE, *, monitor_namespace: str = MONITORING_NAMESPACE,
                     selector_labels: Optional[dict[str, str]] = None) -> dict:
    """PodMonitor scraping every vLLM pod of ``namespace`` on port ``http`` at ``/metrics``.

    ``selector_labels``: labels a Prometheus selects it by; default
    :data:`PROMETHEUS_SELECTOR_LABELS`.

    It lives in ``monitor_namespace`` (which exists before the serving namespace does) and
    selects ``namespace`` through ``namespaceSelector``. The relabeling copies the pod label
    ``gpu-fleet/model`` to ``model``: the recording rules derive ``deployment`` from it.
    """
    if not _DNS_LABEL.match(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS label")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": f"vllm-{namespace}",
            "namespace": monitor_namespace,
            "labels": {**FLEET_LABELS, **(PROMETHEUS_SELECTOR_LABELS if selector_labels is None else selector_labels)},
        },
        "spec": {
            "selector": {"matchLabels": {VLLM_NAME_LABEL: VLLM_NAME}},
            "namespaceSelector": {"matchNames": [namespace]},
            "podMetricsEndpoints": [
                {
                    "port": VLLM_METRICS_PORT,
                    "path": VLLM_METRICS_PATH,
                    "interval": SCRAPE_INTERVAL_FAST,
                    "relabelings": [
                        {
                            "action": "replace",
                            "sourceLabels": ["__meta_kubernetes_pod_label_gpu_fleet_model"],
                            "targetLabel": "model",
                        },
                    ],
                }
            ],
        },
    }


def gpu_operator_dcgm_values(*, selector_labels: Optional[dict[str, str]] = None) -> dict:
    """Values to merge into the NVIDIA GPU operator release: its dcgm-exporter ServiceMonitor,
    labelled with ``selector_labels`` (default :data:`PROMETHEUS_SELECTOR_LABELS`).

    Keys from ``deployments/gpu-operator/values.yaml`` (``dcgmExporter.serviceMonitor``:
    enabled, interval, honorLabels, additionalLabels, relabelings). ``honorLabels: false``
    is what the recording rules expect (``exported_pod`` / ``exported_namespace``).
    The ServiceMonitor CRD comes from kube-prometheus-stack: install monitoring first.
    """
    return {
        "dcgmExporter": {
            "serviceMonitor": {
                "enabled": True,
                "interval": SCRAPE_INTERVAL_FAST,
                "honorLabels": False,
                "additionalLabels": dict(PROMETHEUS_SELECTOR_LABELS if selector_labels is None else selector_labels),
                "relabelings": [
                    {
                        "action": "replace",
                        "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                        "targetLabel": "node",
                    }
                ],
            }
        }
    }


def prometheus_rule(models: Sequence[ModelRef], alerts: Optional[AlertSettings] = None,
                    *, name: str = "gpu-fleet", namespace: str = MONITORING_NAMESPACE,
                    selector_labels: Optional[dict[str, str]] = None) -> dict:
    """The PrometheusRule manifest holding :func:`prometheus_rule_groups`; ``selector_labels``
    as for :func:`vllm_pod_monitor`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**FLEET_LABELS, **(PROMETHEUS_SELECTOR_LABELS if selector_labels is None else selector_labels)},
        },
        "spec": {"groups": prometheus_rule_groups(models, alerts)},
    }


def serving_namespaces(models: Sequence[ModelRef]) -> list[str]:
    """The distinct namespaces the models run in, sorted."""
    return sorted({m.namespace for m in models})


__all__ = [
    "AlertSettings",
    "ModelRef",
    "KUBE_PROMETHEUS_STACK_CHART_VERSION",
    "PROMETHEUS_ADAPTER_CHART_VERSION",
    "PROMETHEUS_COMMUNITY_REPO",
    "PROMETHEUS_URL",
    "adapter_rules",
    "alert_rules",
    "gpu_operator_dcgm_values",
    "kube_prometheus_stack_values",
    "prometheus_adapter_values",
    "prometheus_rule",
    "prometheus_rule_groups",
    "recording_rules",
    "serving_namespaces",
    "vllm_pod_monitor",
]
