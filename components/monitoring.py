"""Monitoring: kube-prometheus-stack, prometheus-adapter, the vLLM PodMonitor and the
fleet's PrometheusRule (``gpufleet:index:Monitoring``); or, for a cluster that already runs
a Prometheus, only the fleet's pieces on top of it (``gpufleet:index:MetricsPipeline``).

A thin component: every value, rule and manifest comes from the pure module
:mod:`gpu_fleet.components.monitoring_rules`, which documents the metrics pipeline and is tested
with ``promtool``. This module only creates the Kubernetes resources in order.
"""

from __future__ import annotations

from typing import Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from .dashboards import (
    GRAFANA_ADMIN_PASSWORD_KEY,
    GRAFANA_ADMIN_SECRET,
    GRAFANA_ADMIN_USER,
    GRAFANA_ADMIN_USER_KEY,
    dashboard_config_maps,
    grafana_values,
)
from .keda import KEDA_CHART_VERSION, KEDA_NAMESPACE, KEDA_RELEASE, KEDA_REPO, keda_values
from .contract import FLEET_LABELS, SYSTEM_NODE_SELECTOR
from .monitoring_rules import (
    KUBE_PROMETHEUS_STACK_CHART_VERSION,
    KUBE_PROMETHEUS_STACK_RELEASE,
    MONITORING_NAMESPACE,
    PROMETHEUS_ADAPTER_CHART_VERSION,
    PROMETHEUS_ADAPTER_RELEASE,
    PROMETHEUS_COMMUNITY_REPO,
    PROMETHEUS_SELECTOR_LABELS,
    PROMETHEUS_URL,
    AlertSettings,
    ModelRef,
    gpu_operator_dcgm_values,
    kube_prometheus_stack_values,
    kube_state_metrics_allowlist,
    prometheus_adapter_values,
    prometheus_rule,
    serving_namespaces,
    vllm_pod_monitor,
)

__all__ = ["AlertSettings", "MetricsPipeline", "MetricsPipelineArgs", "ModelRef", "Monitoring", "MonitoringArgs"]

#: Helm waits for every workload of the release; kube-prometheus-stack also installs its
#: CRDs and an admission-webhook job, which takes a few minutes on a fresh cluster.
KUBE_PROMETHEUS_STACK_TIMEOUT_SECONDS = 900
PROMETHEUS_ADAPTER_TIMEOUT_SECONDS = 600
KEDA_TIMEOUT_SECONDS = 600


class _MonitoringArgsRequired(TypedDict):
    models: list[ModelRef]


class MonitoringArgs(_MonitoringArgsRequired, total=False):
    """Arguments of :class:`Monitoring`.

    models: the served models (``ModelRef(name, namespace)``); required, may be empty.
        A plain list, not an Output: it decides how many PodMonitors are created (one per
        serving namespace) and the text of the recording and alert rules.
    alerts: alert thresholds (``AlertSettings``); default ``AlertSettings()`` (more than
        20 waiting requests per replica for 2 m, GPUs above 95 % for 10 m, HPA at
        maxReplicas for 15 m, replicas unavailable for 15 m).
    kube_prometheus_stack_version: chart version; default
        ``KUBE_PROMETHEUS_STACK_CHART_VERSION`` (:data:`gpu_fleet.components.pins.KUBE_PROMETHEUS_STACK`).
    prometheus_adapter_version: chart version; default
        ``PROMETHEUS_ADAPTER_CHART_VERSION`` (:data:`gpu_fleet.components.pins.PROMETHEUS_ADAPTER`).
    prometheus_retention: how long Prometheus keeps data; default ``"15d"``.
    prometheus_storage_size: size of Prometheus' volume; default ``"50Gi"``.
    prometheus_storage_class: StorageClass of that volume; default None (the cluster's
        default StorageClass).
    autoscaling_engine: ``"hpa"`` (default): prometheus-adapter serves the External
        metrics the models' HPAs read. ``"keda"``: KEDA is installed instead (it serves
        that API itself; see :mod:`gpu_fleet.components.keda`) and prometheus-adapter is not.
    lmcache_models: models running LMCache; the model dashboard gets its panels.
    """

    alerts: AlertSettings
    kube_prometheus_stack_version: pulumi.Input[str]
    prometheus_adapter_version: pulumi.Input[str]
    prometheus_retention: str
    prometheus_storage_size: str
    prometheus_storage_class: Optional[str]
    autoscaling_engine: str
    lmcache_models: list[str]


class Monitoring(pulumi.ComponentResource):
    """Prometheus, the External metrics API and the fleet's rules, in namespace ``monitoring``.

    Creates (all children of this component, through the provider the caller passes in
    ``opts``): the ``monitoring`` Namespace; Grafana's admin Secret (a generated
    password); the kube-prometheus-stack release (Prometheus, Alertmanager, Grafana) and
    either the prometheus-adapter release or, with ``autoscaling_engine: keda``, the KEDA
    release in its own namespace (pinned chart versions); one vLLM PodMonitor per serving
    namespace; one PrometheusRule with the recording and alert rules; the dashboard
    ConfigMaps (:mod:`gpu_fleet.components.dashboards`). The
    PodMonitors and the PrometheusRule depend on the kube-prometheus-stack release, which
    installs their CRDs.

    ``gpu_operator_values`` holds the values to merge into the GPU operator release so
    that its dcgm-exporter gets a ServiceMonitor; install that release after this one.
    """

    def __init__(self, name: str, args: MonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:Monitoring", name, None, opts)
        models = list(args["models"])
        alerts = args.get("alerts") or AlertSettings()
        child = pulumi.ResourceOptions(parent=self)

        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": MONITORING_NAMESPACE, "labels": {**FLEET_LABELS}},
            opts=child,
        )
        namespace = self.namespace.metadata["name"]

        # Grafana's admin login: a generated password in a Secret the chart reads
        # (grafana.admin.existingSecret), so it never appears in the Helm values.
        self.grafana_password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False, opts=child)
        self.grafana_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": namespace, "labels": {**FLEET_LABELS}},
            type="Opaque",
            string_data={
                GRAFANA_ADMIN_USER_KEY: GRAFANA_ADMIN_USER,
                GRAFANA_ADMIN_PASSWORD_KEY: pulumi.Output.secret(self.grafana_password.result),
            },
            opts=child,
        )
        stack_values = kube_prometheus_stack_values(
            retention=args.get("prometheus_retention") or "15d",
            storage_size=args.get("prometheus_storage_size") or "50Gi",
            storage_class=args.get("prometheus_storage_class"),
        )
        stack_values["grafana"] = grafana_values(SYSTEM_NODE_SELECTOR)

        self.kube_prometheus_stack = _chart_release(
            f"{name}-kube-prometheus-stack", KUBE_PROMETHEUS_STACK_RELEASE, "kube-prometheus-stack",
            args.get("kube_prometheus_stack_version") or KUBE_PROMETHEUS_STACK_CHART_VERSION, PROMETHEUS_COMMUNITY_REPO,
            namespace, stack_values, KUBE_PROMETHEUS_STACK_TIMEOUT_SECONDS,
            pulumi.ResourceOptions(parent=self, depends_on=[self.grafana_secret]))

        # Exactly one of the two serves external.metrics.k8s.io (kedacore/keda#470).
        self.engine = args.get("autoscaling_engine") or "hpa"
        if self.engine not in ("hpa", "keda"):
            raise ValueError(f"autoscaling_engine {self.engine!r}: expected 'hpa' or 'keda'")
        self.prometheus_adapter = None
        self.keda = None
        if self.engine == "hpa":
            self.prometheus_adapter = _adapter_release(
                name, namespace, args.get("prometheus_adapter_version"), prometheus_adapter_values(PROMETHEUS_URL), child)
        else:
            keda_ns = k8s.core.v1.Namespace(
                f"{name}-keda-ns", metadata={"name": KEDA_NAMESPACE, "labels": {**FLEET_LABELS}}, opts=child)
            self.keda = _chart_release(f"{name}-keda", KEDA_RELEASE, "keda", KEDA_CHART_VERSION, KEDA_REPO,
                                       keda_ns.metadata["name"], keda_values(), KEDA_TIMEOUT_SECONDS, child)
        #: What the models' autoscaling objects need first (the External metrics API, and
        #: with KEDA the ScaledObject CRD).
        self.autoscaler = self.keda or self.prometheus_adapter

        # Custom resources need the CRDs the kube-prometheus-stack release installs.
        after_stack = pulumi.ResourceOptions(parent=self, depends_on=[self.kube_prometheus_stack])
        self.pod_monitors, self.prometheus_rule = _monitors_and_rules(
            name, models, alerts, MONITORING_NAMESPACE, PROMETHEUS_SELECTOR_LABELS, after_stack)
        self.dashboards = [
            k8s.core.v1.ConfigMap(f"{name}-{cm['metadata']['name']}", metadata={**cm["metadata"], "namespace": namespace},
                                  data=cm["data"], opts=child)
            for cm in dashboard_config_maps(models, args.get("lmcache_models") or [])
        ]

        self.prometheus_url = PROMETHEUS_URL
        self.gpu_operator_values = gpu_operator_dcgm_values()
        self.register_outputs(
            {
                "namespace": namespace,
                "prometheusUrl": self.prometheus_url,
                "kubePrometheusStackStatus": self.kube_prometheus_stack.status,
                "autoscalerStatus": self.autoscaler.status,
            }
        )


class _MetricsPipelineArgsRequired(TypedDict):
    models: list[ModelRef]


class MetricsPipelineArgs(_MetricsPipelineArgsRequired, total=False):
    """Arguments of :class:`MetricsPipeline`.

    models: the served models (``ModelRef(name, namespace)``), as for :class:`Monitoring`.
    namespace: an existing namespace for the PodMonitors, the PrometheusRule and the
        adapter; default ``monitoring``.
    selector_labels: labels your Prometheus selects PodMonitors and PrometheusRules by
        (its ``podMonitorSelector`` / ``ruleSelector``); default
        ``{"release": "kube-prometheus-stack"}``.
    alerts: alert thresholds (``AlertSettings``); default ``AlertSettings()``.
    prometheus_url: your Prometheus' URL, which prometheus-adapter queries; default the
        kube-prometheus-stack one Monitoring installs.
    install_adapter: install prometheus-adapter with the fleet's External metrics rules;
        default True. False when the cluster already serves ``external.metrics.k8s.io``:
        add :func:`gpu_fleet.components.monitoring_rules.adapter_rules` to that adapter instead.
    adapter_node_selector: nodeSelector of the adapter's pods; default none.
    prometheus_adapter_version: chart version; default ``PROMETHEUS_ADAPTER_CHART_VERSION``.
    """

    namespace: str
    selector_labels: dict[str, str]
    alerts: AlertSettings
    prometheus_url: str
    install_adapter: bool
    adapter_node_selector: dict[str, str]
    prometheus_adapter_version: pulumi.Input[str]


class MetricsPipeline(pulumi.ComponentResource):
    """The fleet's metrics pipeline on a Prometheus you already run (``gpufleet:index:MetricsPipeline``).

    Creates the vLLM PodMonitors (one per serving namespace), the PrometheusRule with the
    recording and alert rules the models' HPAs and alerts read, and (``install_adapter``)
    prometheus-adapter serving them as External metrics. Nothing else: no Prometheus, no
    namespace. Your cluster must provide what the rules join on, exposed here as plain values:
    ``kube_state_metrics_allowlist`` (kube-state-metrics' ``--metric-labels-allowlist``
    entries) and ``gpu_operator_values`` (the GPU operator's dcgm-exporter ServiceMonitor,
    labelled with ``selector_labels``). ``autoscaler`` is what the models' HPAs need first (the adapter, or None).
    """

    def __init__(self, name: str, args: MetricsPipelineArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:MetricsPipeline", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = args.get("namespace") or MONITORING_NAMESPACE
        selector_labels = args.get("selector_labels", PROMETHEUS_SELECTOR_LABELS)
        self.pod_monitors, self.prometheus_rule = _monitors_and_rules(
            name, list(args["models"]), args.get("alerts") or AlertSettings(), namespace, selector_labels, child)
        self.prometheus_url = args.get("prometheus_url") or PROMETHEUS_URL
        self.prometheus_adapter = None
        if args.get("install_adapter", True):
            values = prometheus_adapter_values(self.prometheus_url, node_selector=args.get("adapter_node_selector", {}))
            self.prometheus_adapter = _adapter_release(name, namespace, args.get("prometheus_adapter_version"),
                                                       values, child)
        self.autoscaler = self.prometheus_adapter
        self.kube_state_metrics_allowlist = kube_state_metrics_allowlist()
        self.gpu_operator_values = gpu_operator_dcgm_values(selector_labels=selector_labels)
        self.register_outputs({"prometheusUrl": self.prometheus_url})


def _monitors_and_rules(name: str, models: list[ModelRef], alerts: AlertSettings, namespace: str,
                        selector_labels: dict[str, str], opts: pulumi.ResourceOptions,
                        ) -> tuple[list[k8s.apiextensions.CustomResource], k8s.apiextensions.CustomResource]:
    """One vLLM PodMonitor per serving namespace and the fleet's PrometheusRule, in ``namespace``."""
    monitors = [
        _custom_resource(f"{name}-vllm-{ns}", vllm_pod_monitor(ns, monitor_namespace=namespace,
                                                               selector_labels=selector_labels), opts)
        for ns in serving_namespaces(models)
    ]
    rule = _custom_resource(f"{name}-rules", prometheus_rule(models, alerts, namespace=namespace,
                                                              selector_labels=selector_labels), opts)
    return monitors, rule


def _chart_release(resource_name: str, release: str, chart: str, version: pulumi.Input[str], repo: str,
                   namespace: pulumi.Input[str], values: dict, timeout_seconds: int,
                   opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    """A metrics-pipeline chart: atomic (a failed install or upgrade is rolled back and cleaned
    up), with a bounded release history."""
    return k8s.helm.v3.Release(
        resource_name,
        name=release,
        chart=chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repo),
        namespace=namespace,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        timeout=timeout_seconds,
        max_history=10,
        opts=opts,
    )


def _adapter_release(name: str, namespace: pulumi.Input[str], version: Optional[pulumi.Input[str]], values: dict,
                     opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    return _chart_release(f"{name}-prometheus-adapter", PROMETHEUS_ADAPTER_RELEASE, "prometheus-adapter",
                          version or PROMETHEUS_ADAPTER_CHART_VERSION, PROMETHEUS_COMMUNITY_REPO, namespace, values,
                          PROMETHEUS_ADAPTER_TIMEOUT_SECONDS, opts)


def _custom_resource(resource_name: str, manifest: dict, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=opts,
    )
