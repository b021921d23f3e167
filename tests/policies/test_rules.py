"""The CrossGuard policies of ``policies/rules.py``, one by one, on synthetic resources.

Each policy is called the way pulumi_policy calls it: real ``ResourceValidationArgs`` /
``StackValidationArgs`` whose props sit behind pulumi_policy's unknown-checking proxy
(Mapping/Sequence, not dict/list), numbers as floats where the engine sends floats.
The last test starts the pack exactly as ``pulumi preview --policy-pack policies`` does
and talks to it over the analyzer gRPC protocol.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import unknown_checking_proxy

from gpu_fleet.components import contract
from gpu_fleet.components import hpa as hpa_module
from gpu_fleet.components.config import AutoscalingConfig
from gpu_fleet.components.model_deployment import PROBE_SCRIPT
from gpu_fleet.components.monitoring_rules import AlertSettings, ModelRef, prometheus_rule
from gpu_fleet.policy_check import load_pack

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "policies"


# The pack's modules, loaded as ``gpu-fleet plan`` loads them.
pack = load_pack(REPO)
rules, access, alerts, secrets = pack["rules"], pack["resource_access"], pack["alert_rules"], pack["secret_rules"]
POLICIES = {p.name: p for p in rules.POLICIES}
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def check(policy: str, type_: str, props: dict, config: dict | None = None) -> list[str]:
    """Messages ``policy`` reports for one resource."""
    found: list[str] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), f"urn:pulumi:t::p::{type_}::r", "r", OPTS,
                                  None, config)
    POLICIES[policy].validate(args, lambda message, urn=None: found.append(message))
    return found


def check_stack(policy: str, resources: list[tuple[str, str, dict]], config: dict | None = None) -> list[tuple[str, str]]:
    """``(message, urn)`` ``policy`` reports for a stack of ``(type, name, props)``."""
    found: list[tuple[str, str]] = []
    stack = [PolicyResource(t, unknown_checking_proxy(p), f"urn:pulumi:t::p::{t}::{n}", n, OPTS, None, None, [], {})
             for t, n, p in resources]
    POLICIES[policy].validate(StackValidationArgs(stack, config), lambda message, urn=None: found.append((message, urn)))
    return found


# --------------------------------------------------------------------------- the pack


def test_every_policy_has_a_name_description_level_and_documented_config():
    assert len(POLICIES) == len(rules.POLICIES) == 21  # 19 in rules.py, 2 in cache_rules.py
    levels = {name: p.enforcement_level for name, p in POLICIES.items()}
    assert {n for n, level in levels.items() if level == EnforcementLevel.ADVISORY} == {
        "hpa-gpu-utilization-target", "global-failover-budget"}
    assert all(level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY) for level in levels.values())
    for p in rules.POLICIES:
        assert p.description.endswith(".")
        for key, prop in (p.config_schema.properties if p.config_schema else {}).items():
            assert {"type", "default", "description"} <= set(prop), (p.name, key)
    stack = {p.name for p in rules.POLICIES if isinstance(p, StackValidationPolicy)}
    assert stack == {"model-queue-depth-alert", "global-failover-budget", "gpu-hpa-not-cpu-only", "hpa-queue-metric"}
    assert all(isinstance(p, ResourceValidationPolicy) for p in rules.POLICIES if p.name not in stack)


def test_the_schema_defaults_are_the_fleets_metrics():
    # The names themselves are shared through policies/contract.py (tests/test_layers.py).
    assert contract.GPU_TAINT["effect"] == "NO_SCHEDULE"
    assert rules.GPU_TARGET_SCHEMA.properties["metricName"]["default"] == contract.GPU_UTILIZATION_METRIC
    queue = rules.QUEUE_ALERT_SCHEMA.properties["queueMetrics"]["default"]
    assert contract.PENDING_REQUESTS_METRIC in queue and contract.VLLM_WAITING_METRIC in queue
    assert rules.QUEUE_METRIC_SCHEMA.properties["queueMetrics"]["default"] == queue


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("text, value", [
    ("75", Decimal(75)), ("750m", Decimal("0.75")), ("1.5", Decimal("1.5")), ("2k", Decimal(2000)),
    ("1Ki", Decimal(1024)), ("1.5Gi", Decimal(1610612736)), ("1e3", Decimal(1000)), ("5E-1", Decimal("0.5")),
    (75, Decimal(75)), (75.0, Decimal(75)), ("+8", Decimal(8)), (".5", Decimal("0.5")),
])
def test_quantities(text, value):
    assert access.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "75%", "1.2.3", "m", "7 5", "1KB", True, None])
def test_not_quantities(text):
    with pytest.raises(ValueError):
        access.parse_quantity(text)


@pytest.mark.parametrize("text, seconds", [
    ("2m", 120), ("90s", 90), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), ("1w", 604800), ("0", 0), ("0s", 0),
])
def test_durations(text, seconds):
    assert access.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "m", "1.5m", "30m1h", "2m2m", "2 m", "-1m", 120])
def test_not_durations(text):
    with pytest.raises(ValueError):
        access.parse_duration(text)


# --------------------------------------------------------------------------- HPA

HPA = access.HPA


def seed_hpa(**changes) -> dict:
    spec = hpa_module.hpa_spec(AutoscalingConfig(), "vllm-llama")
    spec.update(changes)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": spec}


def with_behavior(direction: str, **rules_) -> dict:
    h = seed_hpa()
    h["spec"]["behavior"][direction] = rules_
    return h


HPA_POLICIES = ["hpa-min-replicas", "hpa-scale-up-fast", "hpa-scale-down-slow", "hpa-gpu-utilization-target"]


def test_the_seed_hpa_passes_every_hpa_policy():
    for policy in HPA_POLICIES:
        assert check(policy, HPA, seed_hpa()) == [], policy


def test_hpa_policies_ignore_other_resources():
    for policy in HPA_POLICIES:
        assert check(policy, access.DEPLOYMENT, seed_hpa(minReplicas=0)) == []


def test_min_replicas():
    assert check("hpa-min-replicas", HPA, seed_hpa(minReplicas=2.0)) == []
    assert "minReplicas is 1;" in check("hpa-min-replicas", HPA, seed_hpa(minReplicas=1.0))[0]
    h = seed_hpa()
    del h["spec"]["minReplicas"]
    assert "unset: Kubernetes defaults to 1" in check("hpa-min-replicas", HPA, h)[0]


def test_min_replicas_threshold_is_configurable():
    [message] = check("hpa-min-replicas", HPA, seed_hpa(minReplicas=2), {"minReplicas": 3})
    assert "at least 3" in message
    assert check("hpa-min-replicas", HPA, seed_hpa(minReplicas=3), {"minReplicas": 3}) == []


def test_without_behavior_kubernetes_defaults_pass():
    # Scale-up: no window, Pods 4 / Percent 100 per 15 s. Scale-down: 300 s window.
    h = seed_hpa()
    del h["spec"]["behavior"]
    assert check("hpa-scale-up-fast", HPA, h) == []
    assert check("hpa-scale-down-slow", HPA, h) == []
    assert check("hpa-scale-up-fast", HPA, with_behavior("scaleUp")) == []
    one_pod = [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    assert check("hpa-scale-down-slow", HPA, with_behavior("scaleDown", policies=one_pod)) == []


def test_scale_up_window():
    assert check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", stabilizationWindowSeconds=120)) == []
    [message] = check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", stabilizationWindowSeconds=180))
    assert "180 s" in message and "120 s" in message
    assert check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", stabilizationWindowSeconds=180),
                 {"maxStabilizationWindowSeconds": 300}) == []


def test_scale_up_needs_a_policy_adding_pods_every_two_minutes():
    slow = [{"type": "Pods", "value": 4, "periodSeconds": 300}]
    [message] = check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", policies=slow))
    assert "Pods 4 per 300 s" in message
    mixed = slow + [{"type": "Percent", "value": 50, "periodSeconds": 60}]
    assert check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", policies=mixed)) == []
    # With Min the most restrictive policy wins: the slow one decides.
    [message] = check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", policies=mixed, selectPolicy="Min"))
    assert "selectPolicy Min" in message
    assert "Disabled" in check("hpa-scale-up-fast", HPA, with_behavior("scaleUp", selectPolicy="Disabled"))[0]


def test_scale_down_window_between_five_and_ten_minutes():
    for window in (300, 450, 600):
        assert check("hpa-scale-down-slow", HPA, with_behavior("scaleDown", stabilizationWindowSeconds=window)) == []
    assert "flap" in check("hpa-scale-down-slow", HPA, with_behavior("scaleDown", stabilizationWindowSeconds=60))[0]
    assert "idle GPUs" in check("hpa-scale-down-slow", HPA, with_behavior("scaleDown", stabilizationWindowSeconds=900))[0]
    assert "never released" in check("hpa-scale-down-slow", HPA, with_behavior("scaleDown", selectPolicy="Disabled"))[0]
    assert check("hpa-scale-down-slow", HPA, with_behavior("scaleDown", stabilizationWindowSeconds=60),
                 {"minStabilizationWindowSeconds": 60}) == []


def gpu_hpa(average_value, target_type="AverageValue") -> dict:
    h = seed_hpa()
    target = {"type": target_type, "averageValue" if target_type == "AverageValue" else "value": average_value}
    h["spec"]["metrics"][0]["external"]["target"] = target
    return h


@pytest.mark.parametrize("value", ["70", "75", "80", "75000m", 75.0])
def test_gpu_target_in_range(value):
    assert check("hpa-gpu-utilization-target", HPA, gpu_hpa(value)) == []


@pytest.mark.parametrize("value, shown", [("750m", "0.75"), ("85", "85"), ("69", "69")])
def test_gpu_target_out_of_range(value, shown):
    [message] = check("hpa-gpu-utilization-target", HPA, gpu_hpa(value))
    assert f"is {shown} %" in message


def test_gpu_target_type_metric_and_quantity():
    assert "use AverageValue" in check("hpa-gpu-utilization-target", HPA, gpu_hpa("75", "Value"))[0]
    assert "not a Kubernetes quantity" in check("hpa-gpu-utilization-target", HPA, gpu_hpa("75%"))[0]
    h = seed_hpa()
    h["spec"]["metrics"] = h["spec"]["metrics"][1:]
    assert "does not scale on dcgm_gpu_utilization" in check("hpa-gpu-utilization-target", HPA, h)[0]
    assert check("hpa-gpu-utilization-target", HPA, h, {"requireMetric": False}) == []
    assert check("hpa-gpu-utilization-target", HPA, gpu_hpa("60"), {"minTarget": 50, "maxTarget": 65}) == []


# --------------------------------------------------------------------------- pods

VLLM_LABELS = {"app.kubernetes.io/name": "vllm", "gpu-fleet/model": "llama"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
EXEC_MODELS = {"exec": {"command": ["sh", "-c", 'curl -sf -H "Authorization: Bearer $VLLM_API_KEY" '
                                                 "http://localhost:8000/v1/models"]}, "periodSeconds": 10}


def _gpu_stack(hpa_metrics, *, gpus: str = "8", hpa_namespace: str = "llm-serving",
               labels_: dict | None = None) -> list[tuple[str, str, dict]]:
    """A model server Deployment (``gpus`` GPUs) and an HPA scaling it on ``hpa_metrics``
    (None: no metrics field)."""
    deployment = workload([vllm_container(resources={"limits": {"nvidia.com/gpu": gpus}})], labels_=labels_)
    hpa = seed_hpa()
    hpa["metadata"] = {"name": "vllm-llama", "namespace": hpa_namespace}
    hpa["spec"]["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-llama"}
    if hpa_metrics is None:
        del hpa["spec"]["metrics"]
    else:
        hpa["spec"]["metrics"] = hpa_metrics
    return [(access.DEPLOYMENT, "deployment", deployment), (HPA, "hpa", hpa)]


SEED_METRICS = seed_hpa()["spec"]["metrics"]
GPU_METRIC = [m for m in SEED_METRICS if m["external"]["metric"]["name"] == contract.GPU_UTILIZATION_METRIC]
CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}}


def test_the_seed_hpa_on_a_model_server_passes_the_stack_hpa_policies():
    for policy in ("hpa-queue-metric", "gpu-hpa-not-cpu-only"):
        assert check_stack(policy, _gpu_stack(SEED_METRICS)) == [], policy


def test_hpa_without_the_queue_metric_violates():
    [(message, urn)] = check_stack("hpa-queue-metric", _gpu_stack(GPU_METRIC))
    assert urn.endswith("::hpa")
    assert message.startswith("HPA vllm-llama scales Deployment llm-serving/vllm-llama without a queue metric "
                              "(llm_pending_requests, vllm:num_requests_waiting)")
    assert check_stack("hpa-queue-metric", _gpu_stack(None))
    # vLLM's own metric as a Pods metric counts, and the names are configurable.
    pods = [{"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"},
                                      "target": {"type": "AverageValue", "averageValue": "5"}}}]
    assert check_stack("hpa-queue-metric", _gpu_stack(pods)) == []
    assert check_stack("hpa-queue-metric", _gpu_stack(GPU_METRIC), {"queueMetrics": ["dcgm_gpu_utilization"]}) == []


def test_the_queue_metric_is_asked_only_of_model_servers_and_gpu_workloads():
    # A CPU web app may scale on CPU alone; an HPA of another namespace targets something else.
    cpu_app = _gpu_stack([CPU], gpus="0", labels_={"app.kubernetes.io/name": "web"})
    assert check_stack("hpa-queue-metric", cpu_app) == []
    assert check_stack("hpa-queue-metric", _gpu_stack([CPU], hpa_namespace="other")) == []
    # A vLLM server counts even without GPUs (say, on CPU for tests), a GPU workload without the label too.
    assert check_stack("hpa-queue-metric", _gpu_stack([CPU], gpus="0"))
    assert check_stack("hpa-queue-metric", _gpu_stack([CPU], labels_={"app.kubernetes.io/name": "trainer"}))


def test_cpu_only_hpa_on_a_gpu_model_violates():
    [(message, urn)] = check_stack("gpu-hpa-not-cpu-only", _gpu_stack([CPU, MEMORY]))
    assert urn.endswith("::hpa")
    assert "scales GPU workload Deployment llm-serving/vllm-llama on cpu, memory only" in message
    # No metrics at all: autoscaling/v2 scales on CPU.
    [(message, _)] = check_stack("gpu-hpa-not-cpu-only", _gpu_stack(None))
    assert "cpu (the default when metrics is empty)" in message


def test_hpas_with_gpu_or_queue_metrics_or_on_cpu_workloads_pass():
    assert check_stack("gpu-hpa-not-cpu-only", _gpu_stack(GPU_METRIC)) == []
    assert check_stack("gpu-hpa-not-cpu-only", _gpu_stack([CPU, *GPU_METRIC])) == []
    cpu_app = _gpu_stack([CPU], gpus="0", labels_={"app.kubernetes.io/name": "web"})
    assert check_stack("gpu-hpa-not-cpu-only", cpu_app) == []
    assert check_stack("gpu-hpa-not-cpu-only", _gpu_stack([CPU], hpa_namespace="other")) == []


def vllm_container(**changes) -> dict:
    c = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.10.1",
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--api-key", "$(VLLM_API_KEY)"],
        "env": [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-secrets", "key": "VLLM_API_KEY"}}},
                {"name": "HF_HOME", "value": "/cache"}],
        "resources": {"limits": {"nvidia.com/gpu": "8"}, "requests": {"nvidia.com/gpu": "8"}},
        "startupProbe": EXEC_MODELS,
        "readinessProbe": EXEC_MODELS,
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8000}},
    }
    c.update(changes)
    return c


def workload(containers: list, *, labels_=None, kind=access.DEPLOYMENT, **pod) -> dict:
    pod_spec = {"containers": containers, "tolerations": [GPU_TOLERATION], **pod}
    template = {"metadata": {"labels": dict(labels_ if labels_ is not None else VLLM_LABELS)}, "spec": pod_spec}
    if kind == access.POD:
        return {"metadata": {"name": "p", "labels": template["metadata"]["labels"]}, "spec": pod_spec}
    if kind == access.CRON_JOB:
        return {"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}}
    return {"metadata": {"name": "vllm-llama", "namespace": "llm-serving", "labels": dict(labels_ or {})},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template}}


def test_model_server_with_exec_or_http_probes_on_v1_models_passes():
    assert check("model-prewarm-probes", access.DEPLOYMENT, workload([vllm_container()])) == []
    http = {"httpGet": {"path": "/v1/models", "port": 8000}}
    assert check("model-prewarm-probes", access.DEPLOYMENT,
                 workload([vllm_container(startupProbe=http, readinessProbe=http)])) == []
    # A sidecar without probes does not matter once the server container has them.
    assert check("model-prewarm-probes", access.DEPLOYMENT, workload([{"name": "log", "image": "x"}, vllm_container()])) == []


def test_model_server_probing_only_health_or_missing_a_probe_violates():
    health = {"httpGet": {"path": "/health", "port": 8000}}
    [message] = check("model-prewarm-probes", access.DEPLOYMENT, workload([vllm_container(readinessProbe=health)]))
    assert "readinessProbe checks httpGet /health" in message
    c = vllm_container()
    del c["startupProbe"]
    [message] = check("model-prewarm-probes", access.DEPLOYMENT, workload([c]))
    assert "no startupProbe" in message
    # Only vLLM Deployments are model servers.
    assert check("model-prewarm-probes", access.DEPLOYMENT, workload([c], labels_={"app.kubernetes.io/name": "router"})) == []
    only_health = workload([vllm_container(startupProbe=health, readinessProbe=health)])
    assert check("model-prewarm-probes", access.DEPLOYMENT, only_health)
    assert check("model-prewarm-probes", access.DEPLOYMENT, only_health, {"modelLoadedPaths": ["/health"]}) == []


EKS_GPU = {"clusterName": "c", "amiType": "AL2023_x86_64_NVIDIA", "instanceTypes": ["p5.48xlarge"],
           "labels": {"gpu-fleet/pool": "h100", "gpu-fleet/gpu": "h100"},
           "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]}


def eks(**changes) -> dict:
    return {**EKS_GPU, **changes}


def test_eks_gpu_node_groups_need_the_gpu_taint():
    assert check("gpu-node-pool-taint", access.EKS_NODE_GROUP, eks()) == []
    assert "label gpu-fleet/gpu" in check("gpu-node-pool-taint", access.EKS_NODE_GROUP, eks(taints=[]))[0]
    no_label = eks(taints=[], labels={"gpu-fleet/pool": "h100"})
    assert "AMI AL2023_x86_64_NVIDIA" in check("gpu-node-pool-taint", access.EKS_NODE_GROUP, no_label)[0]
    by_type = eks(taints=[], labels={}, amiType="CUSTOM")
    assert "instance type p5.48xlarge" in check("gpu-node-pool-taint", access.EKS_NODE_GROUP, by_type)[0]
    wrong_effect = eks(taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "PREFER_NO_SCHEDULE"}])
    assert check("gpu-node-pool-taint", access.EKS_NODE_GROUP, wrong_effect)
    cpu = {"amiType": "AL2023_x86_64_STANDARD", "instanceTypes": ["m7i.2xlarge"], "labels": {"gpu-fleet/pool": "system"}}
    assert check("gpu-node-pool-taint", access.EKS_NODE_GROUP, cpu) == []


def test_gke_gpu_node_pools_need_the_gpu_taint():
    gpu = {"nodeConfig": {"machineType": "a3-highgpu-8g", "guestAccelerators": [{"type": "nvidia-h100-80gb", "count": 8.0}],
                          "labels": {"gpu-fleet/gpu": "h100"},
                          "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]}}
    assert check("gpu-node-pool-taint", access.GKE_NODE_POOL, gpu) == []
    untainted = {"nodeConfig": {**gpu["nodeConfig"], "taints": []}}
    assert "nodeConfig.taints" in check("gpu-node-pool-taint", access.GKE_NODE_POOL, untainted)[0]
    cpu = {"nodeConfig": {"machineType": "n2-standard-8", "labels": {"gpu-fleet/pool": "system"}}}
    assert check("gpu-node-pool-taint", access.GKE_NODE_POOL, cpu) == []


def test_gpu_pods_request_gpus_in_limits_and_tolerate_the_taint():
    ok = workload([vllm_container()])
    assert check("gpu-workload-scheduling", access.DEPLOYMENT, ok) == []
    requests_only = workload([vllm_container(resources={"requests": {"nvidia.com/gpu": "8"}})])
    assert "without a limit" in check("gpu-workload-scheduling", access.DEPLOYMENT, requests_only)[0]
    unequal = workload([vllm_container(resources={"requests": {"nvidia.com/gpu": 4}, "limits": {"nvidia.com/gpu": 8}})])
    assert "differs from its limit" in check("gpu-workload-scheduling", access.DEPLOYMENT, unequal)[0]
    untolerated = workload([vllm_container()], tolerations=[])
    assert "does not tolerate" in check("gpu-workload-scheduling", access.DEPLOYMENT, untolerated)[0]
    wrong_effect = workload([vllm_container()], tolerations=[{**GPU_TOLERATION, "effect": "NoExecute"}])
    assert check("gpu-workload-scheduling", access.STATEFUL_SET, wrong_effect)
    everything = workload([vllm_container()], tolerations=[{"operator": "Exists"}])
    assert check("gpu-workload-scheduling", access.DEPLOYMENT, everything) == []
    cron = workload([vllm_container()], kind=access.CRON_JOB, tolerations=[])
    assert check("gpu-workload-scheduling", access.CRON_JOB, cron)


def test_pods_on_gpu_nodes_must_request_a_gpu():
    cpu = {"name": "app", "image": "x"}
    selector = workload([cpu], nodeSelector={"gpu-fleet/gpu": "h100"})
    [message] = check("gpu-workload-scheduling", access.DEPLOYMENT, selector)
    assert "selects GPU nodes (gpu-fleet/gpu)" in message
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "Exists"}]}]}}}
    assert check("gpu-workload-scheduling", access.POD, workload([cpu], kind=access.POD, affinity=affinity))
    # Node agents run on GPU nodes without GPUs by design.
    assert check("gpu-workload-scheduling", access.DAEMON_SET, workload([cpu], nodeSelector={"gpu-fleet/gpu": "h100"})) == []
    assert check("gpu-workload-scheduling", access.DEPLOYMENT, workload([cpu], nodeSelector={"gpu-fleet/pool": "system"})) == []


# --------------------------------------------------------------------------- caches

ELASTICACHE = {
    "engine": "valkey", "numCacheClusters": 2.0, "automaticFailoverEnabled": True, "multiAzEnabled": True,
    "transitEncryptionEnabled": True, "transitEncryptionMode": "required", "atRestEncryptionEnabled": True,
    "authToken": Secret("x" * 64),
}
MEMORYSTORE = {"tier": "STANDARD_HA", "replicaCount": 1.0, "authEnabled": True,
               "transitEncryptionMode": "SERVER_AUTHENTICATION", "memorySizeGb": 10.0}


def test_caches_with_tls_encryption_auth_and_failover_pass():
    for policy in ("cache-encryption-and-auth", "cache-high-availability"):
        assert check(policy, access.ELASTICACHE, ELASTICACHE) == []
        assert check(policy, access.MEMORYSTORE, MEMORYSTORE) == []


def test_elasticache_security():
    def problems(**changes):
        return check("cache-encryption-and-auth", access.ELASTICACHE, {**ELASTICACHE, **changes})

    assert "transitEncryptionEnabled" in problems(transitEncryptionEnabled=False)[0]
    assert "preferred" in problems(transitEncryptionMode="preferred")[0]
    assert "atRestEncryptionEnabled" in problems(atRestEncryptionEnabled=False)[0]
    assert "no authentication" in problems(authToken=None)[0]
    assert problems(authToken=None, userGroupIds=["fleet-users"]) == []


def test_elasticache_high_availability():
    def problems(config=None, **changes):
        return check("cache-high-availability", access.ELASTICACHE, {**ELASTICACHE, **changes}, config)

    assert [m.split(" is")[0] for m in problems(automaticFailoverEnabled=False, multiAzEnabled=False)] == [
        "automaticFailoverEnabled", "multiAzEnabled"]
    single = {"numCacheClusters": 1, "automaticFailoverEnabled": False, "multiAzEnabled": False}
    assert "0 replicas; at least 1" in problems(**single)[0]
    assert problems({"minReplicas": 0}, **single) == []
    assert problems(numCacheClusters=None, numNodeGroups=2, replicasPerNodeGroup=1) == []


def test_memorystore():
    assert "authEnabled" in check("cache-encryption-and-auth", access.MEMORYSTORE, {**MEMORYSTORE, "authEnabled": False})[0]
    no_tls = {k: v for k, v in MEMORYSTORE.items() if k != "transitEncryptionMode"}
    assert "unset (DISABLED)" in check("cache-encryption-and-auth", access.MEMORYSTORE, no_tls)[0]
    basic = {**MEMORYSTORE, "tier": "BASIC", "replicaCount": None}
    assert "tier is BASIC" in check("cache-high-availability", access.MEMORYSTORE, basic)[0]
    assert check("cache-high-availability", access.MEMORYSTORE, basic, {"minReplicas": 0}) == []
    assert check("cache-high-availability", access.MEMORYSTORE, MEMORYSTORE, {"minReplicas": 2})


# --------------------------------------------------------------------------- global routing


def test_latency_and_failover_records_need_health_checks():
    latency = {"name": "llm.example.com", "type": "A", "setIdentifier": "us-east", "aliases": [],
               "latencyRoutingPolicies": [{"region": "us-east-1"}], "healthCheckId": "abc"}
    assert check("route53-routing-health-checked", access.ROUTE53_RECORD, latency) == []
    [message] = check("route53-routing-health-checked", access.ROUTE53_RECORD, {**latency, "healthCheckId": None})
    assert "latency record llm.example.com (us-east)" in message
    primary = {"name": "llm", "failoverRoutingPolicies": [{"type": "PRIMARY"}]}
    assert "PRIMARY" in check("route53-routing-health-checked", access.ROUTE53_RECORD, primary)[0]
    secondary = {"name": "llm", "failoverRoutingPolicies": [{"type": "SECONDARY"}]}
    assert check("route53-routing-health-checked", access.ROUTE53_RECORD, secondary) == []
    assert check("route53-routing-health-checked", access.ROUTE53_RECORD, {"name": "x", "records": ["1.2.3.4"]}) == []


def test_shared_latency_labels_are_checked_through_alias_and_weighted_records():
    alias = {"name": "llm.example.com", "type": "CNAME", "setIdentifier": "use1",
             "latencyRoutingPolicies": [{"region": "us-east-1"}],
             "aliases": [{"name": "llm.us-east-1.latency.example.com", "zoneId": "Z", "evaluateTargetHealth": True}]}
    assert check("route53-routing-health-checked", access.ROUTE53_RECORD, alias) == []
    blind = {**alias, "aliases": [{**alias["aliases"][0], "evaluateTargetHealth": False}]}
    assert "evaluates no target health" in check("route53-routing-health-checked", access.ROUTE53_RECORD, blind)[0]
    weighted = {"name": "llm.us-east-1.latency.example.com", "setIdentifier": "use4",
                "weightedRoutingPolicies": [{"weight": 1}], "records": ["llm.use4.example.com"], "healthCheckId": "abc"}
    assert check("route53-routing-health-checked", access.ROUTE53_RECORD, weighted) == []
    [message] = check("route53-routing-health-checked", access.ROUTE53_RECORD, {**weighted, "healthCheckId": None})
    assert message.startswith("weighted record llm.us-east-1.latency.example.com (use4) has no healthCheckId")


def test_health_checks_are_https_on_a_path():
    good = {"type": "HTTPS", "fqdn": "us-east.llm.example.com", "port": 443.0, "resourcePath": "/health",
            "requestInterval": 10.0, "failureThreshold": 2.0}
    assert check("route53-health-check-https", access.ROUTE53_HEALTH_CHECK, good) == []
    assert "type HTTP;" in check("route53-health-check-https", access.ROUTE53_HEALTH_CHECK, {**good, "type": "HTTP"})[0]
    assert "no resourcePath" in check("route53-health-check-https", access.ROUTE53_HEALTH_CHECK, {**good, "resourcePath": ""})[0]
    calculated = {"type": "CALCULATED", "childHealthchecks": ["a"]}
    assert check("route53-health-check-https", access.ROUTE53_HEALTH_CHECK, calculated) == []
    assert check("route53-health-check-https", access.ROUTE53_HEALTH_CHECK, {**good, "type": "HTTP"},
                 {"allowedTypes": ["HTTP", "HTTPS"]}) == []


def routing(budget, target=30, message="dns failover budget ..."):
    props = {"routingMode": "dns", "failoverTargetSeconds": target, "failoverBudget": {"message": message}}
    if budget is not None:
        props["failoverBudgetSeconds"] = budget
    return [(access.GLOBAL_ROUTING, "global", props)]


def test_failover_budget_under_the_target_passes():
    assert check_stack("global-failover-budget", routing(29.0)) == []


def test_failover_budget_missing_the_target_reports_budget_target_and_fix():
    fix = "dns failover budget 40 s (detection 20 s + propagation 10 s + ttl 10 s) misses the 30 s target; set ..."
    [(message, urn)] = check_stack("global-failover-budget", routing(40.0, 30, fix))
    assert "worst-case failover 40 s" in message and "target 30 s" in message and fix in message
    assert urn.endswith("gpufleet:index:GlobalRouting::global")
    # The component's own verdict: "under" the target, so 30 s misses 30 s.
    assert check_stack("global-failover-budget", routing(30.0))
    assert "does not report failoverBudgetSeconds" in check_stack("global-failover-budget", routing(None))[0][0]
    assert check_stack("global-failover-budget", routing(25.0, 60), {"maxFailoverSeconds": 20})
    assert check_stack("global-failover-budget", routing(45.0, 60)), "the pack's 30 s applies even if the stack aims lower"


# --------------------------------------------------------------------------- queue-depth alert

PROMETHEUS_RULE = access.PROMETHEUS_RULE


def model_deployment(model: str, namespace: str = "llm-serving") -> tuple[str, str, dict]:
    labels_ = {"app.kubernetes.io/name": "vllm", "gpu-fleet/model": model}
    props = workload([vllm_container()], labels_=labels_)
    props["metadata"].update(name=f"vllm-{model}", namespace=namespace)
    return access.DEPLOYMENT, f"vllm-{model}", props


def rule_resource(models, alerts=None) -> tuple[str, str, dict]:
    return PROMETHEUS_RULE, "rules", prometheus_rule(models, alerts)


def alert(expr: str, for_: str = "2m", record_rules: tuple = ()) -> tuple[str, str, dict]:
    rules_ = [*record_rules, {"alert": "Queue", "expr": expr, "for": for_}]
    return PROMETHEUS_RULE, "custom", {"spec": {"groups": [{"name": "g", "rules": rules_}]}}


def queue_violations(*resources, config=None) -> list[str]:
    return [m for m, _ in check_stack("model-queue-depth-alert", list(resources), config)]


def test_the_monitoring_components_alerts_cover_every_model():
    models = [ModelRef("llama"), ModelRef("qwen", "research")]
    deployments = [model_deployment("llama"), model_deployment("qwen", "research")]
    assert queue_violations(*deployments, rule_resource(models)) == []
    total = AlertSettings(pending_requests_per_replica=False)
    assert queue_violations(*deployments, rule_resource(models, total)) == []


def test_models_without_a_queue_alert_are_reported_on_their_deployment():
    [(message, urn)] = check_stack("model-queue-depth-alert", [model_deployment("llama")])
    assert message.startswith("model llama (llm-serving/vllm-llama) has no queue-depth alert")
    assert "no alert compares llm_pending_requests or vllm:num_requests_waiting" in message
    assert urn.endswith("kubernetes:apps/v1:Deployment::vllm-llama")
    assert queue_violations(rule_resource([ModelRef("llama")])) == [], "no served model, nothing to alert on"


def test_threshold_and_for_limits():
    llama = model_deployment("llama")
    [message] = queue_violations(llama, rule_resource([ModelRef("llama")], AlertSettings(pending_requests_threshold=50)))
    assert "VllmQueueDepthHigh fires above 50, not 20" in message
    [message] = queue_violations(llama, rule_resource([ModelRef("llama")], AlertSettings(pending_requests_for="5m")))
    assert "waits 300 s ('for'), more than 120 s" in message
    assert queue_violations(llama, rule_resource([ModelRef("llama")]), config={"maxThreshold": 10})
    assert queue_violations(llama, rule_resource([ModelRef("llama")], AlertSettings(pending_requests_for="5m")),
                            config={"maxFor": "5m"}) == []


def test_an_alert_scoped_to_other_models_does_not_cover_a_model():
    [message] = queue_violations(model_deployment("qwen"), rule_resource([ModelRef("llama")]))
    assert 'its selectors exclude the model (model=~"llama")' in message
    other_ns = model_deployment("llama", "research")
    assert "exclude" in queue_violations(other_ns, rule_resource([ModelRef("llama")]))[0]


@pytest.mark.parametrize("expr", [
    "sum by (namespace, model_name) (vllm:num_requests_waiting) > 20",
    "20 < llm_pending_requests",
    "(llm_pending_requests >= 15)",
    'llm_pending_requests{deployment=~"vllm-.*"} > bool 20',
    "max by (model) (avg_over_time(vllm:num_requests_waiting[5m] offset 1m)) > 20 unless on() maintenance_mode",
    'llm_pending_requests{model="llama", namespace="llm-serving"} > 2e1',
])
def test_queue_alerts_read_straight_from_the_metrics(expr):
    assert queue_violations(model_deployment("llama"), alert(expr)) == []


@pytest.mark.parametrize("expr, why", [
    ("llm_pending_requests < 20", "no alert compares"),
    ("llm_pending_requests > 21", "fires above 21"),
    ('llm_pending_requests{model!="llama"} > 10', 'model!="llama"'),
    ('vllm:num_requests_waiting{namespace="other"} > 10', 'namespace="other"'),
    ("vllm:num_requests_running > 10", "no alert compares"),
    ("llm_pending_requests > scalar(queue_limit)", "no alert compares"),
])
def test_queue_alerts_that_do_not_count(expr, why):
    [message] = queue_violations(model_deployment("llama"), alert(expr))
    assert why in message


def test_recording_rules_are_followed_and_cycles_end():
    records = ({"record": "a:queue", "expr": 'sum by (model) (vllm:num_requests_waiting{model=~"llama|qwen"})'},
               {"record": "b:loop", "expr": "c:loop"}, {"record": "c:loop", "expr": "b:loop"})
    assert queue_violations(model_deployment("llama"), alert("a:queue > 20", record_rules=records)) == []
    assert "exclude" in queue_violations(model_deployment("mixtral"), alert("a:queue > 20", record_rules=records))[0]
    assert "no alert compares" in queue_violations(model_deployment("llama"), alert("b:loop > 20", record_rules=records))[0]


def test_promql_selectors_skip_functions_label_lists_and_strings():
    expr = ('label_replace(sum by (namespace, model) (rate(vllm:num_requests_waiting{model=~"a|b", ns!="x"}[5m])), '
            '"deployment", "vllm-$1", "model", "(.+)") * on (namespace) group_left (pod) {__name__="kube_info", a="1"}')
    selectors = alerts.promql_selectors(alerts.promql_tokens(expr))
    assert [(s.metric, [str(m) for m in s.matchers]) for s in selectors] == [
        ("vllm:num_requests_waiting", ['model=~"a|b"', 'ns!="x"']), ("kube_info", ['a="1"'])]
    with pytest.raises(ValueError):
        alerts.promql_tokens("up > 1 #")


# --------------------------------------------------------------------------- secrets

CFG = {k: v["default"] for k, v in rules.K8S_SECRETS_SCHEMA.properties.items()}


@pytest.mark.parametrize("name", ["HF_TOKEN", "VLLM_API_KEY", "REDIS_PASSWORD", "AWS_SECRET_ACCESS_KEY", "clientSecret",
                                  "authToken", "adminPassword", "GOOGLE_APPLICATION_CREDENTIALS", "privateKey", "HFToken"])
def test_credential_names(name):
    assert secrets.secret_name(name, CFG)


@pytest.mark.parametrize("name", ["HF_TOKEN_PATH", "PASSWORD_FILE", "SECRET_NAME", "AWS_ACCESS_KEY_ID", "key",
                                  "MAX_TOKENS", "tokenizer", "existingSecret", "publicKey", "API_KEY_HEADER", "HF_HOME",
                                  "authTokenUpdateStrategy"])
def test_not_credential_names(name):
    assert not secrets.secret_name(name, CFG)


def secrets_in(container: dict, kind=access.DEPLOYMENT) -> list[str]:
    return check("kubernetes-no-plaintext-secrets", kind, workload([container]))


def test_pod_specs_referencing_secrets_pass():
    assert secrets_in(vllm_container()) == []
    sh = vllm_container(command=["sh", "-c", 'exec vllm serve "$MODEL" --api-key "$VLLM_API_KEY"'], args=[])
    assert secrets_in(sh) == []
    code = {"exec": {"command": ["python3", "-c", PROBE_SCRIPT]}}
    assert secrets_in(vllm_container(startupProbe=code, readinessProbe=code)) == []
    assert secrets_in(vllm_container(env=[{"name": "HF_TOKEN_PATH", "value": "/secrets/hf"},
                                          {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/key.json"}])) == []


@pytest.mark.parametrize("changes, expected", [
    ({"env": [{"name": "HF_TOKEN", "value": "hf_abc"}]}, "env HF_TOKEN has a literal value"),
    # In the pod spec a Pulumi secret is as readable as any other value.
    ({"env": [{"name": "VLLM_API_KEY", "value": Secret("sk-1")}]}, "env VLLM_API_KEY has a literal value"),
    ({"env": [{"name": "HF_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "t"}}}]}, "comes from a ConfigMap"),
    ({"readinessProbe": {"httpGet": {"path": "/v1/models", "port": 8000,
                                     "httpHeaders": [{"name": "Authorization", "value": "Bearer sk-1"}]}}},
     "readinessProbe sends header Authorization"),
    ({"startupProbe": {"exec": {"command": ["curl", "-H", "Authorization: Bearer sk-1", "localhost:8000/v1/models"]}}},
     "startupProbe exec command carries a literal credential header"),
    ({"readinessProbe": {"exec": {"command": ["python3", "-c", "u.Request(url, headers={'Authorization': 'Bearer sk-1'})"]}}},
     "readinessProbe exec command carries a literal credential header"),
    ({"command": ["sh", "-c", 'curl -H "X-Api-Key: sk-1" localhost:8000'], "args": []}, "literal credential header"),
    ({"env": [{"name": "LMCACHE_REMOTE_URL", "value": "redis://:s3cret@10.0.0.5:6379"}]},
     "env LMCACHE_REMOTE_URL is a URL with a password in it"),
    ({"env": [{"name": "DATABASE", "value": "postgresql://app:pw@db:5432/app"}]}, "env DATABASE is a URL with a password"),
    ({"args": ["--model", "m", "--api-key", "sk-1"]}, "--api-key is given literally"),
    ({"args": ["--model", "m", "--api-key=sk-1"]}, "--api-key is given literally"),
    ({"command": ["sh", "-c", "vllm serve m --api-key sk-1"], "args": []}, "--api-key is given literally"),
])
def test_credentials_written_into_pod_specs(changes, expected):
    [message] = secrets_in(vllm_container(**changes))
    assert message.startswith("container vllm: ") and expected in message


def test_urls_without_a_written_password_pass():
    for value in ("$(REDIS_URL)", "$(REDIS_URL)?ssl_ca_certs=/etc/redis-tls/ca.crt", "rediss://:$(REDIS_PASSWORD)@h:6379",
                  "https://huggingface.co/meta-llama", "redis://default@cache:6379", "http://user:@h/"):
        assert secrets_in(vllm_container(env=[{"name": "LMCACHE_REMOTE_URL", "value": value}])) == [], value
    assert secrets.url_credential("rediss://:p%40ss@h:6379") and not secrets.url_credential("not a url @ all")


def test_init_containers_and_pods_are_checked_too():
    init = {"name": "fetch", "image": "x", "env": [{"name": "HF_TOKEN", "value": "hf_abc"}]}
    assert check("kubernetes-no-plaintext-secrets", access.POD,
                 workload([vllm_container()], kind=access.POD, initContainers=[init])) == [
        "container fetch: env HF_TOKEN has a literal value; use valueFrom.secretKeyRef."]


def test_configmaps_must_not_hold_credentials():
    settings = {"data": {"LOG_LEVEL": "info", "HF_TOKEN_PATH": "/s"}}
    assert check("kubernetes-no-plaintext-secrets", access.CONFIG_MAP, settings) == []
    [message] = check("kubernetes-no-plaintext-secrets", access.CONFIG_MAP, {"data": {"REDIS_PASSWORD": "p"}})
    assert "data.REDIS_PASSWORD looks like a credential" in message
    [message] = check("kubernetes-no-plaintext-secrets", access.CONFIG_MAP, {"data": {"CACHE": "redis://:p@h:6379"}})
    assert "data.CACHE looks like a credential" in message


INPUT_CFG = {"secretMarkers": True}
RELEASE = "kubernetes:helm.sh/v3:Release"


def test_credential_inputs_must_be_pulumi_secrets():
    values = {"grafana": {"adminPassword": "prom-operator", "existingSecret": "grafana-admin"},
              "env": [{"name": "HF_TOKEN", "value": "hf_abc"}, {"name": "LOG_LEVEL", "value": "debug"}]}
    [message] = check("secret-inputs-encrypted", RELEASE, {"chart": "c", "values": values}, INPUT_CFG)
    assert "values.grafana.adminPassword, values.env[0][name=HF_TOKEN].value" in message
    secret = {"grafana": {"adminPassword": Secret("prom-operator")}, "env": Secret([{"name": "HF_TOKEN", "value": "hf"}])}
    assert check("secret-inputs-encrypted", RELEASE, {"chart": "c", "values": secret}, INPUT_CFG) == []
    plain_token = {**ELASTICACHE, "authToken": "x" * 64}
    assert "authToken" in check("secret-inputs-encrypted", access.ELASTICACHE, plain_token, INPUT_CFG)[0]
    assert check("secret-inputs-encrypted", access.ELASTICACHE, ELASTICACHE, INPUT_CFG) == []
    # Pod specs are the Kubernetes policy's: a Pulumi secret does not make them safe.
    literal_env = workload([vllm_container(env=[{"name": "HF_TOKEN", "value": "x"}])])
    assert check("secret-inputs-encrypted", access.DEPLOYMENT, literal_env, INPUT_CFG) == []


def test_without_secret_markers_the_check_is_not_applicable():
    # What a Pulumi run looks like: the secret arrives decrypted and unmarked.
    with pytest.raises(_NotApplicableError) as raised:
        check("secret-inputs-encrypted", RELEASE, {"values": {"grafana": {"adminPassword": "prom-operator"}}})
    assert raised.value.reason.startswith("values.grafana.adminPassword may be Pulumi secrets")
    assert check("secret-inputs-encrypted", RELEASE, {"values": {"grafana": {"enabled": False}}}) == []


# --------------------------------------------------------------------------- the pack under Pulumi

SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


@pytest.fixture
def served_pack():
    """The pack started the way the Pulumi CLI starts a Python policy pack: ``python -m
    pulumi.policy <engine address> .`` in the pack's folder; yields its analyzer stub."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], cwd=PACK,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # The pack prints its port once serving; never wait on a pack that hangs.
        assert select.select([proc.stdout], [], [], 30)[0], "the pack printed no port within 30 s"
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.poll() is not None else port
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_pulumi_runs_the_pack_from_its_folder(served_pack):
    started = time.perf_counter()
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "gpu-fleet"
    assert [p.name for p in info.policies] == [p.name for p in rules.POLICIES]
    schema = json_format.MessageToDict(next(p for p in info.policies if p.name == "hpa-min-replicas").configSchema)
    assert schema["properties"]["minReplicas"]["default"] == 2

    hpa = seed_hpa(minReplicas=1)
    resp = served_pack.Analyze(analyzer_pb2.AnalyzeRequest(type=HPA, properties=_struct(hpa), urn="urn:h", name="h"))
    assert [d.policyName for d in resp.diagnostics] == ["hpa-min-replicas"]

    # Secrets arrive decrypted without a marker: the inputs check steps aside, the
    # Kubernetes check (which never relies on secretness) still sees the literal.
    release = {"values": {"grafana": {"adminPassword": {**SECRET_SIG, "value": "prom-operator"}}}}
    resp = served_pack.Analyze(analyzer_pb2.AnalyzeRequest(type=RELEASE, properties=_struct(release), urn="urn:r", name="r"))
    assert not resp.diagnostics
    assert [n.policy_name for n in resp.not_applicable] == ["secret-inputs-encrypted"]
    deployment = workload([vllm_container(env=[{"name": "HF_TOKEN", **{"value": {**SECRET_SIG, "value": "hf_abc"}}}])])
    resp = served_pack.Analyze(analyzer_pb2.AnalyzeRequest(type=access.DEPLOYMENT, properties=_struct(deployment),
                                                           urn="urn:d", name="d"))
    assert [d.policyName for d in resp.diagnostics] == ["kubernetes-no-plaintext-secrets"]

    llama = model_deployment("llama")[2]
    stack = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=access.DEPLOYMENT, properties=_struct(llama), urn="urn:llama", name="llama")])
    resp = served_pack.AnalyzeStack(stack)
    assert [(d.policyName, d.urn) for d in resp.diagnostics] == [("model-queue-depth-alert", "urn:llama")]
    assert time.perf_counter() - started < 10


# --------------------------------------------------------------------------- regional cache clients


def _cache_client(url: str, labels: dict) -> dict:
    return {"metadata": {"name": "vllm-m"}, "spec": {"template": {
        "metadata": {"labels": {"app.kubernetes.io/name": "vllm", **labels}},
        "spec": {"containers": [{"name": "vllm", "env": [{"name": "LMCACHE_REMOTE_URL", "value": url}]}]}}}}


def test_cache_clients_use_tls_and_carry_the_network_policy_label():
    ok = _cache_client("$(REDIS_URL)?socket_timeout=2", {"gpu-fleet/cache-client": "true"})
    assert check("cache-client-wiring", access.DEPLOYMENT, ok) == []
    unlabelled = check("cache-client-wiring", access.DEPLOYMENT, _cache_client("$(REDIS_URL)", {}))
    assert len(unlabelled) == 1 and "NetworkPolicy admits only labelled pods" in unlabelled[0]
    plaintext = check("cache-client-wiring", access.DEPLOYMENT,
                      _cache_client("redis://cache.internal:6379", {"gpu-fleet/cache-client": "true"}))
    assert len(plaintext) == 1 and "plaintext" in plaintext[0]
    assert check("cache-client-wiring", access.DEPLOYMENT, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "OTHER", "value": "redis://x"}]}]}}}}) == []
