"""The Monitoring component under Pulumi mocks: what it registers, with which inputs,
under which parent and after which dependencies.

Ad-hoc minimal mocks (the shared recording fixture in tests/conftest.py can replace
them): ``new_resource`` echoes the inputs as state, ``call`` returns ``{}``. A thin
MockMonitor subclass also keeps each registration's parent and dependencies, which the
mocks' ``MockResourceArgs`` do not carry.
"""

from __future__ import annotations

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

from gpu_fleet.components.monitoring import AlertSettings, ModelRef, Monitoring
from gpu_fleet.components.monitoring_rules import (
    KUBE_PROMETHEUS_STACK_CHART_VERSION,
    PROMETHEUS_ADAPTER_CHART_VERSION,
    PROMETHEUS_COMMUNITY_REPO,
    adapter_rules,
    prometheus_rule_groups,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
NAMESPACE = "kubernetes:core/v1:Namespace"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
SYSTEM = {"gpu-fleet/pool": "system"}


class MyMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    """MockMonitor that also remembers type, name, parent and dependencies per URN."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registered: dict[str, dict] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.registered[response.urn] = {
            "type": request.type,
            "name": request.name,
            "parent": request.parent,
            "dependencies": set(request.dependencies),
        }
        return response

    def of_type(self, type_: str) -> list[tuple[str, dict]]:
        return [(urn, rec) for urn, rec in self.registered.items() if rec["type"] == type_]

    def inputs(self, urn: str) -> dict:
        return self.resources[urn].state


@pytest.fixture
def monitor():
    """Fresh mocks per test: set_mocks is process-global."""
    pulumi.runtime.settings.set_root_resource(None)
    recorder = RecordingMonitor(MyMocks())
    pulumi.runtime.set_mocks(MyMocks(), preview=False, monitor=recorder)
    yield recorder
    pulumi.runtime.settings.set_root_resource(None)


MODELS = [ModelRef("llama", "llm-serving"), ModelRef("mistral", "llm-serving"), ModelRef("qwen", "research")]


def _urns(component: Monitoring) -> list[pulumi.Output]:
    children = [
        component.namespace,
        component.kube_prometheus_stack,
        component.prometheus_adapter,
        component.prometheus_rule,
        *component.pod_monitors,
    ]
    return [component.urn, *(c.urn for c in children)]


@pulumi.runtime.test
def test_releases_are_pinned_and_run_on_system_nodes(monitor):
    component = Monitoring("mon", {"models": MODELS})

    def check(_):
        releases = {monitor.inputs(urn)["chart"]: monitor.inputs(urn) for urn, _ in monitor.of_type(RELEASE)}
        assert set(releases) == {"kube-prometheus-stack", "prometheus-adapter"}

        kps = releases["kube-prometheus-stack"]
        assert kps["version"] == KUBE_PROMETHEUS_STACK_CHART_VERSION
        assert kps["repositoryOpts"] == {"repo": PROMETHEUS_COMMUNITY_REPO}
        assert kps["name"] == "kube-prometheus-stack" and kps["namespace"] == "monitoring"
        assert kps["atomic"] is True and kps["timeout"] > 0
        spec = kps["values"]["prometheus"]["prometheusSpec"]
        assert spec["nodeSelector"] == SYSTEM
        assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
        assert spec["podMonitorSelectorNilUsesHelmValues"] is False
        assert spec["ruleSelectorNilUsesHelmValues"] is False
        assert kps["values"]["kube-state-metrics"]["metricLabelsAllowlist"] == [
            "pods=[app.kubernetes.io/name,gpu-fleet/model]"
        ]

        adapter = releases["prometheus-adapter"]
        assert adapter["version"] == PROMETHEUS_ADAPTER_CHART_VERSION
        assert adapter["repositoryOpts"] == {"repo": PROMETHEUS_COMMUNITY_REPO}
        assert adapter["namespace"] == "monitoring" and adapter["atomic"] is True
        assert adapter["values"]["nodeSelector"] == SYSTEM
        assert adapter["values"]["rules"] == adapter_rules()
        assert adapter["values"]["prometheus"]["url"] == "http://kube-prometheus-stack-prometheus.monitoring.svc"
        assert adapter["values"]["prometheus"]["port"] == 9090

        (ns_urn, _), = monitor.of_type(NAMESPACE)
        assert monitor.inputs(ns_urn)["metadata"]["name"] == "monitoring"

    return pulumi.Output.all(*_urns(component)).apply(check)


@pulumi.runtime.test
def test_rules_and_pod_monitors_wait_for_the_crds_and_belong_to_the_component(monitor):
    alerts = AlertSettings(pending_requests_threshold=30)
    component = Monitoring("mon", {"models": MODELS, "alerts": alerts})

    def check(urns):
        component_urn = urns[0]
        (kps_urn,) = [u for u, _ in monitor.of_type(RELEASE) if monitor.inputs(u)["chart"] == "kube-prometheus-stack"]

        children = [urn for urn, rec in monitor.registered.items() if rec["parent"] == component_urn]
        assert {monitor.registered[u]["type"] for u in children} == {
            NAMESPACE, RELEASE, POD_MONITOR, PROMETHEUS_RULE, SECRET, CONFIG_MAP, RANDOM_PASSWORD}
        # namespace, 2 releases, 2 PodMonitors, rules, Grafana's password and Secret, 2 dashboards
        assert len(children) == 1 + 2 + 2 + 1 + 2 + 2

        (rule_urn, rule), = monitor.of_type(PROMETHEUS_RULE)
        assert rule["parent"] == component_urn
        assert kps_urn in rule["dependencies"]
        rule_inputs = monitor.inputs(rule_urn)
        assert rule_inputs["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule_inputs["metadata"]["namespace"] == "monitoring"
        assert rule_inputs["spec"]["groups"] == prometheus_rule_groups(MODELS, alerts)
        queue = next(r for g in rule_inputs["spec"]["groups"] for r in g["rules"] if r.get("alert") == "VllmQueueDepthHigh")
        assert queue["expr"].endswith("> 30")

        monitors = monitor.of_type(POD_MONITOR)
        assert sorted(monitor.inputs(u)["spec"]["namespaceSelector"]["matchNames"][0] for u, _ in monitors) == [
            "llm-serving", "research"]
        for urn, rec in monitors:
            assert rec["parent"] == component_urn
            assert kps_urn in rec["dependencies"]
            endpoint = monitor.inputs(urn)["spec"]["podMetricsEndpoints"][0]
            assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")

    return pulumi.Output.all(*_urns(component)).apply(check)


@pulumi.runtime.test
def test_chart_versions_and_storage_can_be_overridden(monitor):
    component = Monitoring(
        "mon",
        {
            "models": [],
            "kube_prometheus_stack_version": "81.6.2",
            "prometheus_adapter_version": "5.2.1",
            "prometheus_storage_class": "gp3",
            "prometheus_retention": "30d",
        },
    )

    def check(_):
        releases = {monitor.inputs(u)["chart"]: monitor.inputs(u) for u, _ in monitor.of_type(RELEASE)}
        assert releases["kube-prometheus-stack"]["version"] == "81.6.2"
        assert releases["prometheus-adapter"]["version"] == "5.2.1"
        spec = releases["kube-prometheus-stack"]["values"]["prometheus"]["prometheusSpec"]
        assert spec["retention"] == "30d"
        assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "gp3"
        # No models: no PodMonitor, and a PrometheusRule without groups.
        assert monitor.of_type(POD_MONITOR) == []
        (rule_urn, _), = monitor.of_type(PROMETHEUS_RULE)
        assert monitor.inputs(rule_urn)["spec"]["groups"] == []
        assert component.gpu_operator_values["dcgmExporter"]["serviceMonitor"]["enabled"] is True

    return pulumi.Output.all(*_urns(component)).apply(check)


@pulumi.runtime.test
def test_keda_engine_installs_keda_instead_of_prometheus_adapter(monitor):
    """One External metrics API per cluster (kedacore/keda#470): KEDA or the adapter, never both."""
    from gpu_fleet.components.keda import KEDA_CHART_VERSION, KEDA_REPO, keda_values

    component = Monitoring("mon", {"models": MODELS, "autoscaling_engine": "keda"})
    assert component.prometheus_adapter is None and component.autoscaler is component.keda

    def check(_):
        releases = {monitor.inputs(urn)["chart"]: monitor.inputs(urn) for urn, _ in monitor.of_type(RELEASE)}
        assert set(releases) == {"kube-prometheus-stack", "keda"}
        keda = releases["keda"]
        assert (keda["version"], keda["repositoryOpts"], keda["namespace"]) == (KEDA_CHART_VERSION, {"repo": KEDA_REPO},
                                                                               "keda")
        assert keda["values"] == keda_values() and keda["values"]["nodeSelector"] == SYSTEM
        assert sorted(monitor.inputs(u)["metadata"]["name"] for u, _ in monitor.of_type(NAMESPACE)) == ["keda", "monitoring"]

    return pulumi.Output.all(component.urn, component.keda.urn, component.kube_prometheus_stack.urn,
                             component.namespace.urn).apply(check)


def test_an_unknown_engine_is_refused(monitor):
    with pytest.raises(ValueError, match="autoscaling_engine 'knative'"):
        Monitoring("mon", {"models": MODELS, "autoscaling_engine": "knative"})
