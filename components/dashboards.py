"""Grafana dashboards of the fleet, provisioned as ConfigMaps through Grafana's sidecar.

Pure (no Pulumi import): :class:`gpu_fleet.components.monitoring.Monitoring` creates the ConfigMaps
:func:`dashboard_config_maps` returns; the tests run every query through ``promtool`` and
check that it reads only series the recording rules or the exporters produce.

Two dashboards per region (each region has its own Prometheus and Grafana):

- **fleet**: every model side by side: load, ready replicas against the autoscaler's
  bounds, GPU utilisation, waiting requests, time to first token, KV-cache usage.
- **model** (pick one with the ``model`` variable): load, replicas (ready, starting,
  autoscaler desired, min and max), both autoscaling signals as the HPA sees them (the
  Deployment's total that the External metrics API serves, and per replica, which the
  AverageValue target compares), vLLM's latency histograms (time to first token,
  inter-token latency, end to end), KV-cache usage, preemptions, and LMCache's
  hit rate and Redis traffic when a model of the stack runs LMCache.

Where each name comes from (each checked at the version the fleet pins):

- vLLM v0.11.0 (``vllm/v1/metrics/loggers.py`` in the vllm-0.11.0 wheel): counters are
  exposed by prometheus_client with a ``_total`` suffix, histograms as ``_bucket``.
  ``vllm:kv_cache_usage_perc`` replaced ``vllm:gpu_cache_usage_perc`` (hidden since
  0.10) and ``vllm:inter_token_latency_seconds`` replaced
  ``vllm:time_per_output_token_seconds`` (deprecated in 0.11).
- LMCache 0.3.5 (``lmcache/observability.py`` in the lmcache-0.3.5 wheel); its counters
  reach vLLM's ``/metrics`` through prometheus_client's multiprocess directory, which
  the model Deployment sets for LMCache models.
- dcgm-exporter 4.5.3-4.8.2 (the GPU operator v26.3.3's default): ``DCGM_FI_DEV_GPU_UTIL``
  is in NVIDIA/dcgm-exporter@4.5.3-4.8.2 ``etc/default-counters.csv``; the dashboards read
  it through the recording rules only, which map GPUs to Deployments.
- kube-state-metrics v2.18.0 (chart 7.1.0, kube-prometheus-stack 81.4.3's dependency;
  kubernetes/kube-state-metrics@v2.18.0 ``docs/metrics/workload/*.md``).
- The recording rules of :mod:`gpu_fleet.components.monitoring_rules`.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Optional, Sequence

from .contract import DEPLOYMENT_PREFIX, FLEET_LABELS, GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC
from .monitoring_rules import (
    DEPLOYMENT_GPU_UTILIZATION_AVG,
    HPA_TARGET_INFO,
    MONITORING_NAMESPACE,
    ModelRef,
)

#: Grafana's dashboard sidecar loads ConfigMaps carrying this label with this value
#: (kube-prometheus-stack 81.4.3 values ``grafana.sidecar.dashboards.label`` /
#: ``labelValue``).
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"
#: The Prometheus datasource the chart provisions (``grafana.sidecar.datasources.uid``).
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

# vLLM v0.11.0
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_REQUESTS = "vllm:request_success_total"
VLLM_PROMPT_TOKENS = "vllm:prompt_tokens_total"
VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"
VLLM_PREEMPTIONS = "vllm:num_preemptions_total"
VLLM_KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
VLLM_TTFT = "vllm:time_to_first_token_seconds"
VLLM_ITL = "vllm:inter_token_latency_seconds"
VLLM_E2E = "vllm:e2e_request_latency_seconds"
# LMCache 0.3.5
LMCACHE_HIT_TOKENS = "lmcache:num_hit_tokens_total"
LMCACHE_REQUESTED_TOKENS = "lmcache:num_requested_tokens_total"
LMCACHE_REMOTE_READS = "lmcache:num_remote_read_requests_total"
LMCACHE_REMOTE_READ_BYTES = "lmcache:num_remote_read_bytes_total"
# kube-state-metrics v2.18.0
KSM_READY = "kube_deployment_status_replicas_ready"
KSM_UNAVAILABLE = "kube_deployment_status_replicas_unavailable"
KSM_DEPLOYMENT_REPLICAS = "kube_deployment_status_replicas"
KSM_HPA_DESIRED = "kube_horizontalpodautoscaler_status_desired_replicas"
KSM_HPA_MIN = "kube_horizontalpodautoscaler_spec_min_replicas"
KSM_HPA_MAX = "kube_horizontalpodautoscaler_spec_max_replicas"

_HISTOGRAMS = (VLLM_TTFT, VLLM_ITL, VLLM_E2E)
#: Every exporter series a dashboard may read (a test holds each query to these plus the
#: recording rules).
EXPORTER_SERIES = frozenset({
    VLLM_RUNNING, VLLM_REQUESTS, VLLM_PROMPT_TOKENS, VLLM_GENERATION_TOKENS, VLLM_PREEMPTIONS,
    VLLM_KV_CACHE_USAGE, *(f"{h}_bucket" for h in _HISTOGRAMS),
    LMCACHE_HIT_TOKENS, LMCACHE_REQUESTED_TOKENS, LMCACHE_REMOTE_READS, LMCACHE_REMOTE_READ_BYTES,
    KSM_READY, KSM_UNAVAILABLE, KSM_DEPLOYMENT_REPLICAS, KSM_HPA_DESIRED, KSM_HPA_MIN, KSM_HPA_MAX,
})

FLEET_UID = "gpu-fleet-fleet"
MODEL_UID = "gpu-fleet-model"
#: Grafana's own interval variable (a range of at least four scrapes).
RATE = "$__rate_interval"
_VARIABLE = re.compile(r"\$(__rate_interval|namespace|model)\b")


#: The Secret holding Grafana's admin login (keys as the grafana chart reads them:
#: grafana/helm-charts@grafana-10.5.15 ``charts/grafana/values.yaml`` ``admin.userKey`` and
#: ``admin.passwordKey``; 10.5.15 is kube-prometheus-stack 81.4.3's grafana dependency).
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"
GRAFANA_ADMIN_USER = "admin"
#: ``<release>-grafana`` (grafana chart ``grafana.fullname``), port 80 (``service.port``).
GRAFANA_SERVICE = "kube-prometheus-stack-grafana"


def grafana_values(node_selector: dict) -> dict:
    """The ``grafana:`` values of kube-prometheus-stack: Grafana on, its admin login from
    :data:`GRAFANA_ADMIN_SECRET`, dashboards from ConfigMaps labelled for the sidecar.

    Keys: kube-prometheus-stack 81.4.3 ``values.yaml`` (``grafana.enabled``,
    ``grafana.admin.existingSecret``, ``grafana.sidecar.dashboards.*``) and the grafana
    chart 10.5.15 (``nodeSelector``, ``resources``). No Ingress: Grafana is reached with
    ``kubectl port-forward`` (README, "Operating the fleet"). No persistence: the
    dashboards are provisioned, so a restart loses only what was edited in the UI.
    """
    return {
        "enabled": True,
        "admin": {
            "existingSecret": GRAFANA_ADMIN_SECRET,
            "userKey": GRAFANA_ADMIN_USER_KEY,
            "passwordKey": GRAFANA_ADMIN_PASSWORD_KEY,
        },
        "defaultDashboardsTimezone": "utc",
        "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": DASHBOARD_LABEL_VALUE}},
        "nodeSelector": dict(node_selector),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    }


# --------------------------------------------------------------------------- building blocks


def _target(expr: str, legend: str, ref: int) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + ref)}


def _panel(title: str, targets: Sequence[tuple[str, str]], *, unit: str = "short", description: str = "",
           max_value: Optional[float] = None) -> dict:
    defaults: dict = {"unit": unit}
    if max_value is not None:
        defaults.update({"min": 0, "max": max_value})
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [_target(expr, legend, i) for i, (expr, legend) in enumerate(targets)],
    }


def _row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def _layout(panels: list[dict]) -> list[dict]:
    """Grid positions: rows span the width, panels two by two beneath them."""
    out, y, x = [], 0, 0
    for i, p in enumerate(panels, 1):
        p = {**p, "id": i}
        if p["type"] == "row":
            y += 0 if x == 0 else 8
            p["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y, x = y + 1, 0
        else:
            p["gridPos"] = {"h": 8, "w": 12, "x": x, "y": y}
            y, x = (y + 8, 0) if x else (y, 12)
        out.append(p)
    return out


def _dashboard(uid: str, title: str, panels: list[dict], variables: list[dict]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["gpu-fleet"],
        "timezone": "utc",
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "editable": False,
        "templating": {"list": variables},
        "panels": _layout(panels),
    }


def _custom_variable(name: str, label: str, values: Sequence[str]) -> dict:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"text": values[0], "value": values[0]},
        "options": [{"text": v, "value": v, "selected": i == 0} for i, v in enumerate(values)],
        "multi": False,
        "includeAll": False,
    }


def _alternation(values: Iterable[str]) -> str:
    return "|".join(sorted(set(values)))


def _quantiles(metric: str, matchers: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    return [
        (f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{matchers}}}[{RATE}])))",
         f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else ""))
        for q in (0.5, 0.95, 0.99)
    ]


def _by_model(expr: str) -> str:
    """Kubernetes series of the Deployments ``vllm-<model>`` labelled with ``model``."""
    return f'label_replace({expr}, "model", "$1", "deployment", "{DEPLOYMENT_PREFIX}(.+)")'


# --------------------------------------------------------------------------- dashboards


def fleet_dashboard(models: Sequence[ModelRef]) -> dict:
    """Every model of the region side by side."""
    ns = f'namespace=~"{_alternation(m.namespace for m in models)}"'
    names = _alternation(m.name for m in models)
    vllm = f'{ns}, model=~"{names}"'
    dep = f'{ns}, deployment=~"{DEPLOYMENT_PREFIX}({names})"'
    hpa = f"on (namespace, horizontalpodautoscaler) group_left (model) {HPA_TARGET_INFO}"
    panels = [
        _row("Load and capacity"),
        _panel("Requests per second", [(f"sum by (model) (rate({VLLM_REQUESTS}{{{vllm}}}[{RATE}]))", "{{model}}")],
               unit="reqps", description="Finished requests per second, by model."),
        _panel("Generated tokens per second",
               [(f"sum by (model) (rate({VLLM_GENERATION_TOKENS}{{{vllm}}}[{RATE}]))", "{{model}}")], unit="short"),
        _panel("Ready replicas and autoscaler bounds", [
            (f"sum by (model) ({_by_model(f'{KSM_READY}{{{dep}}}')})", "{{model}} ready"),
            (f"max by (model) ({KSM_HPA_DESIRED}{{{ns}}} * {hpa})", "{{model}} desired"),
            (f"max by (model) ({KSM_HPA_MAX}{{{ns}}} * {hpa})", "{{model}} max"),
        ], description="Ready pods per model against the autoscaler's desired count and maxReplicas."),
        _panel("Starting or unavailable replicas",
               [(f"sum by (model) ({_by_model(f'{KSM_UNAVAILABLE}{{{dep}}}')})", "{{model}}")],
               description="Pods the Deployment wants that are not available yet (node, image pull, model load)."),
        _row("Autoscaling signals"),
        _panel("GPU utilisation, mean per replica",
               [(f"max by (model) ({DEPLOYMENT_GPU_UTILIZATION_AVG}{{{dep}}})", "{{model}}")], unit="percent",
               max_value=100),
        _panel("Waiting requests (llm_pending_requests)",
               [(f"max by (model) ({PENDING_REQUESTS_METRIC}{{{dep}}})", "{{model}}")]),
        _row("Latency and memory"),
        _panel("Time to first token, p95",
               [(f"histogram_quantile(0.95, sum by (le, model) (rate({VLLM_TTFT}_bucket{{{vllm}}}[{RATE}])))",
                 "{{model}}")], unit="s"),
        _panel("KV-cache usage, mean over replicas",
               [(f"avg by (model) ({VLLM_KV_CACHE_USAGE}{{{vllm}}})", "{{model}}")], unit="percentunit",
               max_value=1),
    ]
    return _dashboard(FLEET_UID, "gpu-fleet / fleet", panels, [])


def model_dashboard(models: Sequence[ModelRef], lmcache_models: Iterable[str] = ()) -> dict:
    """One model in detail (variables ``namespace`` and ``model``)."""
    vllm = 'namespace="$namespace", model="$model"'
    dep = f'namespace="$namespace", deployment="{DEPLOYMENT_PREFIX}$model"'
    hpa_of = f'on (namespace, horizontalpodautoscaler) group_left () {HPA_TARGET_INFO}{{{dep}}}'
    replicas = f"max({KSM_DEPLOYMENT_REPLICAS}{{{dep}}})"
    panels = [
        _row("Load"),
        _panel("Requests per second", [
            (f"sum(rate({VLLM_REQUESTS}{{{vllm}}}[{RATE}]))", "finished"),
            (f"sum(rate({VLLM_REQUESTS}{{{vllm}}}[{RATE}])) by (finished_reason)", "{{finished_reason}}"),
        ], unit="reqps"),
        _panel("Tokens per second and running requests", [
            (f"sum(rate({VLLM_PROMPT_TOKENS}{{{vllm}}}[{RATE}]))", "prompt tokens/s"),
            (f"sum(rate({VLLM_GENERATION_TOKENS}{{{vllm}}}[{RATE}]))", "generated tokens/s"),
            (f"sum({VLLM_RUNNING}{{{vllm}}})", "running requests"),
        ]),
        _row("Replicas"),
        _panel("Replicas: ready, starting, autoscaler", [
            (f"max({KSM_READY}{{{dep}}})", "ready"),
            (f"max({KSM_UNAVAILABLE}{{{dep}}})", "starting / unavailable"),
            (f"max({KSM_HPA_DESIRED}{{namespace=\"$namespace\"}} * {hpa_of})", "HPA desired"),
            (f"max({KSM_HPA_MIN}{{namespace=\"$namespace\"}} * {hpa_of})", "min"),
            (f"max({KSM_HPA_MAX}{{namespace=\"$namespace\"}} * {hpa_of})", "max"),
        ], description="With KEDA and minReplicas 0 the HPA's min reads 1: KEDA itself moves the model between 0 and 1."),
        _row("Autoscaling signals, as the HPA sees them"),
        _panel(GPU_UTILIZATION_METRIC, [
            (f"max({GPU_UTILIZATION_METRIC}{{{dep}}})", "Deployment total (External metric)"),
            (f"max({GPU_UTILIZATION_METRIC}{{{dep}}}) / {replicas}", "per replica (compared with the target)"),
        ], unit="percent",
            description="Sum over pods of each pod's mean GPU utilisation, and that sum over the replicas: the "
                        "AverageValue the HPA compares with its target."),
        _panel(PENDING_REQUESTS_METRIC, [
            (f"max({PENDING_REQUESTS_METRIC}{{{dep}}})", "Deployment total (External metric)"),
            (f"max({PENDING_REQUESTS_METRIC}{{{dep}}}) / {replicas}", "per replica (compared with the target)"),
        ]),
        _row("Latency"),
        _panel("Time to first token", _quantiles(VLLM_TTFT, vllm), unit="s"),
        _panel("Inter-token latency", _quantiles(VLLM_ITL, vllm), unit="s"),
        _panel("End-to-end request latency", _quantiles(VLLM_E2E, vllm), unit="s"),
        _panel("Preemptions per second", [(f"sum(rate({VLLM_PREEMPTIONS}{{{vllm}}}[{RATE}]))", "preemptions/s")],
               description="Requests evicted from the KV cache to make room: a sign the cache is too small."),
        _row("Memory"),
        _panel("KV-cache usage", [
            (f"avg({VLLM_KV_CACHE_USAGE}{{{vllm}}})", "mean"),
            (f"max({VLLM_KV_CACHE_USAGE}{{{vllm}}})", "fullest replica"),
        ], unit="percentunit", max_value=1),
    ]
    lmcache = sorted(set(lmcache_models))
    if lmcache:
        panels += [
            _row(f"LMCache (KV cache in Redis): {', '.join(lmcache)}"),
            _panel("LMCache hit rate (tokens found in CPU or Redis)", [
                (f"sum(rate({LMCACHE_HIT_TOKENS}{{{vllm}}}[{RATE}])) / sum(rate({LMCACHE_REQUESTED_TOKENS}{{{vllm}}}"
                 f"[{RATE}]))", "hit rate"),
            ], unit="percentunit", max_value=1),
            _panel("Redis reads", [
                (f"sum(rate({LMCACHE_REMOTE_READS}{{{vllm}}}[{RATE}]))", "reads/s"),
                (f"sum(rate({LMCACHE_REMOTE_READ_BYTES}{{{vllm}}}[{RATE}]))", "bytes/s"),
            ]),
        ]
    variables = [
        _custom_variable("namespace", "Namespace", sorted({m.namespace for m in models})),
        _custom_variable("model", "Model", [m.name for m in models]),
    ]
    return _dashboard(MODEL_UID, "gpu-fleet / model", panels, variables)


def dashboards(models: Sequence[ModelRef], lmcache_models: Iterable[str] = ()) -> dict[str, dict]:
    """The region's dashboards by short name (empty without models)."""
    models = list(models)
    if not models:
        return {}
    return {"fleet": fleet_dashboard(models), "model": model_dashboard(models, lmcache_models)}


def dashboard_config_maps(models: Sequence[ModelRef], lmcache_models: Iterable[str] = (),
                          namespace: str = MONITORING_NAMESPACE) -> list[dict]:
    """One ConfigMap per dashboard, labelled for Grafana's sidecar."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"gpu-fleet-dashboard-{name}",
                "namespace": namespace,
                "labels": {**FLEET_LABELS, DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE},
            },
            "data": {f"gpu-fleet-{name}.json": json.dumps(board, indent=1, sort_keys=True)},
        }
        for name, board in dashboards(models, lmcache_models).items()
    ]


def queries(dashboard: dict) -> list[str]:
    """Every PromQL expression of a dashboard, in panel order."""
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def expand(expr: str, *, namespace: str, model: str, rate_interval: str = "1m") -> str:
    """``expr`` with Grafana's variables replaced as Grafana would (for parsers)."""
    values = {"__rate_interval": rate_interval, "namespace": namespace, "model": model}
    return _VARIABLE.sub(lambda m: values[m.group(1)], expr)
