"""The metrics pipeline's rules, proven with ``promtool test rules`` on realistic series.

Input series carry the labels the real exporters produce once Prometheus has scraped
them: dcgm-exporter's per-GPU ``DCGM_FI_DEV_GPU_UTIL`` with ``exported_pod`` /
``exported_namespace`` / ``exported_container`` (its ServiceMonitor does not honour
labels) and its own target ``namespace="gpu-operator"``; kube-state-metrics'
``kube_pod_labels`` with the allow-listed pod labels; vLLM's
``vllm:num_requests_waiting`` with ``model_name``/``engine`` plus the PodMonitor's
``model`` relabeling.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gpu_fleet.components import contract
from gpu_fleet.components.config import AlertsConfig
from gpu_fleet.components.monitoring_rules import (
    ALERT_GPU_SATURATED,
    ALERT_HPA_AT_MAX,
    ALERT_QUEUE,
    ALERT_REPLICAS_UNAVAILABLE,
    KUBE_PROMETHEUS_STACK_CHART_VERSION,
    PROMETHEUS_ADAPTER_CHART_VERSION,
    AlertSettings,
    ModelRef,
    adapter_rules,
    gpu_operator_dcgm_values,
    kube_prometheus_stack_values,
    prometheus_adapter_values,
    prometheus_rule,
    prometheus_rule_groups,
    vllm_pod_monitor,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")

NS = "llm-serving"
MODELS = [ModelRef("llama", NS), ModelRef("mistral", NS), ModelRef("llama", "research")]


# --------------------------------------------------------------------------- series builders


def _series(name: str, labels: dict[str, str], values: str) -> dict:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def dcgm(*, pod: str, namespace: str, node: int, gpus: int, values: str, container: str = "vllm") -> list[dict]:
    """One dcgm-exporter series per GPU of ``node``, as Prometheus stores them after the scrape."""
    exporter = f"nvidia-dcgm-exporter-{node:05d}"
    out = []
    for gpu in range(gpus):
        out.append(
            _series(
                "DCGM_FI_DEV_GPU_UTIL",
                {
                    "gpu": str(gpu),
                    "UUID": f"GPU-{node:04d}{gpu:04d}-0000-0000-0000-000000000000",
                    "device": f"nvidia{gpu}",
                    "modelName": "NVIDIA H100 80GB HBM3",
                    "Hostname": exporter,
                    "exported_pod": pod,
                    "exported_namespace": namespace,
                    "exported_container": container if pod else "",
                    # the dcgm-exporter target's own labels
                    "namespace": "gpu-operator",
                    "pod": exporter,
                    "container": "nvidia-dcgm-exporter",
                    "service": "nvidia-dcgm-exporter",
                    "endpoint": "gpu-metrics",
                    "job": "nvidia-dcgm-exporter",
                    "instance": f"10.0.{node}.7:9400",
                    "node": f"ip-10-0-{node}-7.ec2.internal",
                },
                values,
            )
        )
    return out


def pod_labels(*, pod: str, namespace: str, model: str | None, values: str, name: str = "vllm") -> dict:
    labels = {"namespace": namespace, "pod": pod, "uid": f"uid-{pod}", "label_app_kubernetes_io_name": name}
    if model is not None:
        labels["label_gpu_fleet_model"] = model
    labels.update(
        {
            "job": "kube-state-metrics",
            "instance": "10.0.3.4:8080",
            "container": "kube-state-metrics",
            "endpoint": "http",
            "service": "kube-prometheus-stack-kube-state-metrics",
        }
    )
    return _series("kube_pod_labels", labels, values)


def vllm_waiting(*, pod: str, namespace: str, model: str, engine: int, values: str) -> dict:
    return _series(
        "vllm:num_requests_waiting",
        {
            "model_name": "meta-llama/Llama-3.1-70B-Instruct" if model == "llama" else f"org/{model}",
            "engine": str(engine),
            "namespace": namespace,
            "pod": pod,
            "container": "vllm",
            "endpoint": "http",
            "instance": f"10.1.0.{engine + 10}:8000",
            "job": f"monitoring/vllm-{namespace}",
            "model": model,
        },
        values,
    )


def ksm(name: str, labels: dict[str, str], values: str) -> dict:
    return _series(
        name,
        {**labels, "job": "kube-state-metrics", "instance": "10.0.3.4:8080", "service": "kube-prometheus-stack-kube-state-metrics"},
        values,
    )


def hpa_series(*, hpa: str, namespace: str, target: str, current: str, min_: int, max_: int) -> list[dict]:
    key = {"namespace": namespace, "horizontalpodautoscaler": hpa}
    return [
        ksm(
            "kube_horizontalpodautoscaler_info",
            {**key, "scaletargetref_api_version": "apps/v1", "scaletargetref_kind": "Deployment", "scaletargetref_name": target},
            "1x120",
        ),
        ksm("kube_horizontalpodautoscaler_spec_min_replicas", key, f"{min_}x120"),
        ksm("kube_horizontalpodautoscaler_spec_max_replicas", key, f"{max_}x120"),
        ksm("kube_horizontalpodautoscaler_status_current_replicas", key, current),
    ]


# --------------------------------------------------------------------------- promtool harness


def run_promtool_tests(tmp_path: Path, tests: list[dict], models=MODELS, alerts: AlertSettings | None = None) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule_groups(models, alerts)}, sort_keys=False))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    spec = tmp_path / "tests.yaml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "15s", "tests": tests}, sort_keys=False)
    )
    proc = subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def sample(metric: str, value: float, **labels: str) -> dict:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"labels": f"{metric}{{{body}}}", "value": value}


# --------------------------------------------------------------------------- (a) + (b) recording rules


@needs_promtool
def test_recording_rules_per_deployment(tmp_path):
    steady = "{}x40"  # 10 minutes at 15 s
    llama_a, llama_b = "vllm-llama-7d9f8b6c5d-abcde", "vllm-llama-7d9f8b6c5d-fghij"
    mistral = "vllm-mistral-5c6d7e8f9a-klmno"
    research = "vllm-llama-6b5c4d3e2f-pqrst"
    sandbox = "vllm-llama-55d4c3b2a1-uvwxy"
    series = [
        # The deployment under test: 2 pods x 8 GPUs, one at 90 %, one at 60 %.
        *dcgm(pod=llama_a, namespace=NS, node=1, gpus=8, values=steady.format(90)),
        *dcgm(pod=llama_b, namespace=NS, node=2, gpus=8, values=steady.format(60)),
        # Another deployment in the same namespace.
        *dcgm(pod=mistral, namespace=NS, node=3, gpus=8, values=steady.format(30)),
        # The same model name in another namespace is another deployment.
        *dcgm(pod=research, namespace="research", node=4, gpus=4, values=steady.format(50)),
        # A namespace no model is configured in.
        *dcgm(pod=sandbox, namespace="sandbox", node=5, gpus=8, values=steady.format(100)),
        # GPUs allocated to no pod, and a non-vLLM GPU pod in the serving namespace.
        *dcgm(pod="", namespace="", node=6, gpus=8, values=steady.format(0)),
        *dcgm(pod="embedder-6f7c9-zzzzz", namespace=NS, node=6, gpus=1, values=steady.format(99), container="embed"),
        pod_labels(pod=llama_a, namespace=NS, model="llama", values=steady.format(1)),
        pod_labels(pod=llama_b, namespace=NS, model="llama", values=steady.format(1)),
        pod_labels(pod=mistral, namespace=NS, model="mistral", values=steady.format(1)),
        pod_labels(pod=research, namespace="research", model="llama", values=steady.format(1)),
        pod_labels(pod=sandbox, namespace="sandbox", model="llama", values=steady.format(1)),
        pod_labels(pod="embedder-6f7c9-zzzzz", namespace=NS, model=None, values=steady.format(1), name="embedder"),
        # Queue depth: llama pod A runs two engines (data parallel), pod B one.
        vllm_waiting(pod=llama_a, namespace=NS, model="llama", engine=0, values=steady.format(4)),
        vllm_waiting(pod=llama_a, namespace=NS, model="llama", engine=1, values=steady.format(3)),
        vllm_waiting(pod=llama_b, namespace=NS, model="llama", engine=0, values=steady.format(5)),
        vllm_waiting(pod=mistral, namespace=NS, model="mistral", engine=0, values=steady.format(2)),
        vllm_waiting(pod=research, namespace="research", model="llama", engine=0, values=steady.format(9)),
        vllm_waiting(pod=sandbox, namespace="sandbox", model="llama", engine=0, values=steady.format(40)),
    ]
    llama = {"namespace": NS, "deployment": "vllm-llama", "model": "llama"}
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "promql_expr_test": [
                {
                    # (a) sum over pods of per-pod means: 90 + 60 = 150, not 8*90 + 8*60 = 1200;
                    # other deployments, namespaces, free GPUs and non-vLLM pods stay out.
                    "expr": "dcgm_gpu_utilization",
                    "eval_time": "2m",
                    "exp_samples": [
                        sample("dcgm_gpu_utilization", 150, **llama),
                        sample("dcgm_gpu_utilization", 30, namespace=NS, deployment="vllm-mistral", model="mistral"),
                        sample("dcgm_gpu_utilization", 50, namespace="research", deployment="vllm-llama", model="llama"),
                    ],
                },
                {
                    # What the HPA reads: selector deployment=vllm-llama in the HPA's namespace,
                    # AverageValue 75 -> ceil(150 / 75) = 2 replicas.
                    "expr": 'ceil(sum(dcgm_gpu_utilization{namespace="llm-serving", deployment="vllm-llama"}) / 75)',
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": 2}],
                },
                {
                    "expr": 'gpu_fleet:deployment_gpu_utilization:avg{deployment="vllm-llama"}',
                    "eval_time": "2m",
                    "exp_samples": [
                        sample("gpu_fleet:deployment_gpu_utilization:avg", 75, **llama),
                        sample("gpu_fleet:deployment_gpu_utilization:avg", 50, namespace="research", deployment="vllm-llama", model="llama"),
                    ],
                },
                {
                    # (b) waiting requests summed over the deployment's pods (and engines) only.
                    "expr": "llm_pending_requests",
                    "eval_time": "2m",
                    "exp_samples": [
                        sample("llm_pending_requests", 12, **llama),
                        sample("llm_pending_requests", 2, namespace=NS, deployment="vllm-mistral", model="mistral"),
                        sample("llm_pending_requests", 9, namespace="research", deployment="vllm-llama", model="llama"),
                    ],
                },
                {
                    "expr": 'gpu_fleet:pending_requests_per_pod:avg{namespace="llm-serving", deployment="vllm-llama"}',
                    "eval_time": "2m",
                    "exp_samples": [sample("gpu_fleet:pending_requests_per_pod:avg", 6, **llama)],
                },
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests)


@needs_promtool
def test_pod_without_kube_state_metrics_labels_is_not_counted(tmp_path):
    """Until kube-state-metrics reports a new pod's labels its GPUs count for no deployment."""
    pod_a, pod_b = "vllm-llama-7d9f8b6c5d-abcde", "vllm-llama-7d9f8b6c5d-newpd"
    tests = [
        {
            "interval": "15s",
            "input_series": [
                *dcgm(pod=pod_a, namespace=NS, node=1, gpus=8, values="80x20"),
                *dcgm(pod=pod_b, namespace=NS, node=2, gpus=8, values="40x20"),
                pod_labels(pod=pod_a, namespace=NS, model="llama", values="1x20"),
                pod_labels(pod=pod_b, namespace=NS, model="llama", values="_x8 1x12"),
            ],
            "promql_expr_test": [
                {"expr": "dcgm_gpu_utilization", "eval_time": "1m",
                 "exp_samples": [sample("dcgm_gpu_utilization", 80, namespace=NS, deployment="vllm-llama", model="llama")]},
                {"expr": "dcgm_gpu_utilization", "eval_time": "4m",
                 "exp_samples": [sample("dcgm_gpu_utilization", 120, namespace=NS, deployment="vllm-llama", model="llama")]},
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests)


# --------------------------------------------------------------------------- (c) queue alert


def queue_labels(deployment: str = "vllm-llama", model: str = "llama", namespace: str = NS) -> dict:
    return {"namespace": namespace, "deployment": deployment, "model": model, "severity": "critical"}


def queue_alert(value: str, *, deployment: str = "vllm-llama", model: str = "llama", what: str = "per replica",
                threshold: str = "20", duration: str = "2m") -> dict:
    """A firing queue alert as promtool must see it (promtool compares annotations too)."""
    return {
        "exp_labels": queue_labels(deployment, model),
        "exp_annotations": {
            "summary": f"vLLM {model}: requests are queueing",
            "description": (
                f"{NS}/{deployment} has {value} requests waiting {what} (threshold {threshold}) "
                f"for more than {duration}: scaling is not keeping up with traffic."
            ),
        },
    }


@needs_promtool
def test_queue_alert_fires_after_two_minutes_above_twenty(tmp_path):
    pod = "vllm-llama-7d9f8b6c5d-abcde"
    tests = [
        {
            "interval": "15s",
            "input_series": [vllm_waiting(pod=pod, namespace=NS, model="llama", engine=0, values="25x40")],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {"eval_time": "1m45s", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {
                    "eval_time": "3m",
                    "alertname": ALERT_QUEUE,
                    # fires, with the value above the threshold in its description
                    "exp_alerts": [queue_alert("25")],
                },
            ],
        },
        {
            # 19 waiting never fires, however long it lasts.
            "interval": "15s",
            "input_series": [vllm_waiting(pod=pod, namespace=NS, model="llama", engine=0, values="19x40")],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {"eval_time": "10m", "alertname": ALERT_QUEUE, "exp_alerts": []},
            ],
        },
        {
            # A burst shorter than 2 minutes resets the timer: above 20 for 1m30s, below, above
            # again from 2m30s. (Checks keep one evaluation step of margin: Prometheus evaluates
            # rule groups independently, so an alert may see a recorded series one step late.)
            "interval": "15s",
            "input_series": [vllm_waiting(pod=pod, namespace=NS, model="llama", engine=0, values="30x5 10x3 30x20")],
            "alert_rule_test": [
                {"eval_time": "2m45s", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {"eval_time": "4m15s", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {"eval_time": "4m45s", "alertname": ALERT_QUEUE, "exp_alerts": [queue_alert("30")]},
            ],
        },
    ]
    run_promtool_tests(tmp_path, tests)


@needs_promtool
def test_queue_alert_is_per_replica_by_default(tmp_path):
    """Two replicas with 15 waiting each: the HPA (target 10 per replica) is scaling, no page.
    Two replicas with 30 and 15 waiting: 22.5 per replica, page."""
    calm = [
        vllm_waiting(pod="vllm-llama-7d9f8b6c5d-abcde", namespace=NS, model="llama", engine=0, values="15x40"),
        vllm_waiting(pod="vllm-llama-7d9f8b6c5d-fghij", namespace=NS, model="llama", engine=0, values="15x40"),
    ]
    busy = [
        vllm_waiting(pod="vllm-mistral-5c6d7e8f9a-aaaaa", namespace=NS, model="mistral", engine=0, values="30x40"),
        vllm_waiting(pod="vllm-mistral-5c6d7e8f9a-bbbbb", namespace=NS, model="mistral", engine=0, values="15x40"),
    ]
    tests = [
        {
            "interval": "15s",
            "input_series": calm + busy,
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": ALERT_QUEUE,
                 "exp_alerts": [queue_alert("22.5", deployment="vllm-mistral", model="mistral")]},
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests)


@needs_promtool
def test_queue_alert_on_deployment_total_when_configured(tmp_path):
    alerts = AlertSettings(pending_requests_per_replica=False)
    tests = [
        {
            "interval": "15s",
            "input_series": [
                vllm_waiting(pod="vllm-llama-7d9f8b6c5d-abcde", namespace=NS, model="llama", engine=0, values="15x40"),
                vllm_waiting(pod="vllm-llama-7d9f8b6c5d-fghij", namespace=NS, model="llama", engine=0, values="15x40"),
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {"eval_time": "3m", "alertname": ALERT_QUEUE, "exp_alerts": [queue_alert("30", what="in total")]},
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests, alerts=alerts)


@needs_promtool
def test_queue_threshold_and_duration_are_configurable(tmp_path):
    alerts = AlertSettings(pending_requests_threshold=5, pending_requests_for="4m")
    tests = [
        {
            "interval": "15s",
            "input_series": [vllm_waiting(pod="vllm-llama-7d9f8b6c5d-abcde", namespace=NS, model="llama", engine=0, values="6x40")],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": ALERT_QUEUE, "exp_alerts": []},
                {"eval_time": "5m", "alertname": ALERT_QUEUE,
                 "exp_alerts": [queue_alert("6", threshold="5", duration="4m")]},
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests, alerts=alerts)


# --------------------------------------------------------------------------- (d) the other alerts


@needs_promtool
def test_gpu_saturation_alert(tmp_path):
    hot, warm = "vllm-llama-7d9f8b6c5d-abcde", "vllm-mistral-5c6d7e8f9a-klmno"
    tests = [
        {
            "interval": "15s",
            "input_series": [
                # 50 % for the first 5 minutes, then 97 % from 5m15s on.
                *dcgm(pod=hot, namespace=NS, node=1, gpus=8, values="50x20 97x80"),
                *dcgm(pod=warm, namespace=NS, node=2, gpus=8, values="90x100"),
                pod_labels(pod=hot, namespace=NS, model="llama", values="1x100"),
                pod_labels(pod=warm, namespace=NS, model="mistral", values="1x100"),
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": ALERT_GPU_SATURATED, "exp_alerts": []},
                {"eval_time": "15m", "alertname": ALERT_GPU_SATURATED, "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": ALERT_GPU_SATURATED,
                    "exp_alerts": [
                        {
                            "exp_labels": {"namespace": NS, "deployment": "vllm-llama", "model": "llama", "severity": "warning"},
                            "exp_annotations": {
                                "summary": "vLLM llama: GPUs saturated",
                                "description": (
                                    "Mean GPU utilisation of llm-serving/vllm-llama is 97 % (above 95 %) "
                                    "for more than 10m."
                                ),
                            },
                        }
                    ],
                },
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests)


@needs_promtool
def test_hpa_at_max_alert(tmp_path):
    series = [
        # Pinned at 20/20 from the start.
        *hpa_series(hpa="vllm-llama", namespace=NS, target="vllm-llama", current="20x120", min_=2, max_=20),
        # Scaling freely below its maximum.
        *hpa_series(hpa="vllm-mistral", namespace=NS, target="vllm-mistral", current="10x120", min_=2, max_=20),
        # minReplicas == maxReplicas: always "at max", never worth an alert.
        *hpa_series(hpa="vllm-fixed", namespace=NS, target="vllm-fixed", current="4x120", min_=4, max_=4),
    ]
    models = MODELS + [ModelRef("fixed", NS)]
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": ALERT_HPA_AT_MAX, "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": ALERT_HPA_AT_MAX,
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "namespace": NS,
                                "horizontalpodautoscaler": "vllm-llama",
                                "deployment": "vllm-llama",
                                "model": "llama",
                                "severity": "warning",
                            },
                            "exp_annotations": {
                                "summary": "vLLM llama: autoscaler pinned at maxReplicas",
                                "description": (
                                    "HPA llm-serving/vllm-llama has run at its maximum of 20 replicas for more "
                                    "than 15m: raise maxReplicas or GPU quota."
                                ),
                            },
                        }
                    ],
                },
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests, models=models)


@needs_promtool
def test_replicas_unavailable_alert(tmp_path):
    def dep(name: str, available: str, spec: str) -> list[dict]:
        key = {"namespace": NS, "deployment": name}
        return [ksm("kube_deployment_status_replicas_available", key, available), ksm("kube_deployment_spec_replicas", key, spec)]

    tests = [
        {
            "interval": "15s",
            "input_series": [
                *dep("vllm-llama", "1x100", "3x100"),  # 1 of 3 available throughout
                *dep("vllm-mistral", "2x100", "2x100"),  # healthy
                # Scale-up that completes within 10 minutes: never alerts.
                *_scale_up_series(),
            ],
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": ALERT_REPLICAS_UNAVAILABLE, "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": ALERT_REPLICAS_UNAVAILABLE,
                    "exp_alerts": [
                        {
                            "exp_labels": {"namespace": NS, "deployment": "vllm-llama", "model": "llama", "severity": "warning"},
                            "exp_annotations": {
                                "summary": "vLLM llama: replicas not available",
                                "description": (
                                    "llm-serving/vllm-llama has only 1 available replicas, fewer than desired, for more "
                                    "than 15m (pending GPU capacity, image pull or model load failing)."
                                ),
                            },
                        }
                    ],
                },
            ],
        }
    ]
    run_promtool_tests(tmp_path, tests, models=MODELS + [ModelRef("qwen", NS)])


def _scale_up_series() -> list[dict]:
    key = {"namespace": NS, "deployment": "vllm-qwen"}
    return [
        ksm("kube_deployment_status_replicas_available", key, "2x20 2x40 4x40"),
        ksm("kube_deployment_spec_replicas", key, "2x20 4x80"),
    ]


# --------------------------------------------------------------------------- structure and consistency


def test_adapter_exposes_exactly_the_two_external_metrics():
    rules = adapter_rules()
    assert rules["default"] is False
    assert rules.get("custom", []) == []
    assert "resource" not in rules and "existing" not in rules
    names = [r["name"]["as"] for r in rules["external"]]
    assert names == [contract.GPU_UTILIZATION_METRIC, contract.PENDING_REQUESTS_METRIC]
    for rule in rules["external"]:
        metric = rule["name"]["as"]
        assert rule["seriesQuery"].startswith(metric + "{")
        assert contract.DEPLOYMENT_LABEL in rule["seriesQuery"]
        # Namespaced by the HPA's namespace, mapped onto the series' namespace label.
        assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"}}}
        assert rule["resources"].get("namespaced", True) is True
        assert "<<.Series>>" in rule["metricsQuery"]
        assert "<<.LabelMatchers>>" in rule["metricsQuery"]


def test_adapter_values():
    values = prometheus_adapter_values("http://kube-prometheus-stack-prometheus.monitoring.svc:9090")
    assert values["prometheus"] == {"url": "http://kube-prometheus-stack-prometheus.monitoring.svc", "port": 9090, "path": ""}
    assert values["nodeSelector"] == {"gpu-fleet/pool": "system"}
    # A private GKE control plane reaches nodes on 443 and 10250 only.
    assert values["listenPort"] == 10250
    assert values["rules"] == adapter_rules()
    assert prometheus_adapter_values("https://prom.example/prometheus")["prometheus"] == {
        "url": "https://prom.example", "port": 443, "path": "/prometheus"}
    with pytest.raises(ValueError):
        prometheus_adapter_values("prometheus:9090")


def test_kube_prometheus_stack_values_select_everything_and_run_on_system_nodes():
    values = kube_prometheus_stack_values()
    spec = values["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}Selector"] == {} and spec[f"{kind}NamespaceSelector"] == {}
    system = {"gpu-fleet/pool": "system"}
    assert spec["nodeSelector"] == system
    assert values["alertmanager"]["alertmanagerSpec"]["nodeSelector"] == system
    assert values["prometheusOperator"]["nodeSelector"] == system
    assert values["prometheusOperator"]["admissionWebhooks"]["patch"]["nodeSelector"] == system
    assert values["kube-state-metrics"]["nodeSelector"] == system
    assert spec["retention"] == "15d" and spec["resources"]["requests"]
    assert values["grafana"]["enabled"] is False
    pvc = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert "storageClassName" not in pvc
    assert kube_prometheus_stack_values(storage_class="gp3")["prometheus"]["prometheusSpec"]["storageSpec"][
        "volumeClaimTemplate"]["spec"]["storageClassName"] == "gp3"


def _rule_text(models=MODELS, alerts=None) -> str:
    return "\n".join(r["expr"] for g in prometheus_rule_groups(models, alerts) for r in g["rules"])


def test_pod_to_deployment_mapping_is_consistent_across_values_and_rules():
    text = _rule_text()
    # kube-state-metrics exposes exactly the pod labels the dcgm join reads.
    allowlist = kube_prometheus_stack_values()["kube-state-metrics"]["metricLabelsAllowlist"]
    assert allowlist == ["pods=[app.kubernetes.io/name,gpu-fleet/model]"]
    assert "label_gpu_fleet_model" in text and "label_app_kubernetes_io_name" in text
    # The PodMonitor puts `model` on vLLM samples; the queue rules read it.
    monitor = vllm_pod_monitor(NS)
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["relabelings"] == [
        {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_label_gpu_fleet_model"], "targetLabel": "model"}
    ]
    assert 'vllm:num_requests_waiting{namespace=~"llm-serving|research", model=~"llama|mistral"}' in text
    # dcgm-exporter is scraped without honouring labels: the rules read exported_*.
    sm = gpu_operator_dcgm_values()["dcgmExporter"]["serviceMonitor"]
    assert sm["enabled"] is True and sm["honorLabels"] is False
    assert "exported_pod" in text and "exported_namespace" in text


def test_pod_monitor_manifest():
    monitor = vllm_pod_monitor("llm-serving")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["namespace"] == "monitoring"
    spec = monitor["spec"]
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": "vllm"}}
    assert spec["namespaceSelector"] == {"matchNames": ["llm-serving"]}
    endpoint = spec["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


def test_groups_shape_and_labels():
    groups = prometheus_rule_groups(MODELS)
    records = [r["record"] for g in groups for r in g["rules"] if "record" in r]
    assert contract.GPU_UTILIZATION_METRIC in records and contract.PENDING_REQUESTS_METRIC in records
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} == {ALERT_QUEUE, ALERT_GPU_SATURATED, ALERT_HPA_AT_MAX, ALERT_REPLICAS_UNAVAILABLE}
    for a in alerts:
        assert a["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description"} <= set(a["annotations"])
        assert "{{ $labels.model }}" in a["annotations"]["summary"]
    queue = next(a for a in alerts if a["alert"] == ALERT_QUEUE)
    assert queue["for"] == "2m" and queue["expr"].endswith("> 20")
    assert prometheus_rule_groups([]) == []
    rule = prometheus_rule(MODELS)
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == groups


@needs_promtool
def test_promtool_accepts_generated_rules(tmp_path):
    for models in (MODELS, [ModelRef("only")]):
        path = tmp_path / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": prometheus_rule_groups(models)}))
        proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_settings_from_config_and_validation():
    assert AlertSettings.from_config(AlertsConfig()) == AlertSettings()
    custom = AlertSettings.from_config(AlertsConfig(pending_requests_threshold=30, pending_requests_for_minutes=5,
                                                    gpu_saturation_percent=90, gpu_saturation_for_minutes=20,
                                                    pending_requests_per_replica=False))
    assert (custom.pending_requests_threshold, custom.pending_requests_for) == (30, "5m")
    assert custom.pending_requests_per_replica is False and AlertSettings().pending_requests_per_replica is True
    assert (custom.gpu_saturation_percent, custom.gpu_saturation_for) == (90, "20m")
    with pytest.raises(ValueError):
        AlertSettings(pending_requests_for="2 minutes")
    with pytest.raises(ValueError):
        AlertSettings(gpu_saturation_percent=120)
    with pytest.raises(ValueError):
        ModelRef("Llama_3")
    with pytest.raises(ValueError):
        ModelRef("llama", namespace="")
    assert ModelRef("llama").deployment == "vllm-llama" and ModelRef("llama").namespace == "llm-serving"


def test_chart_versions_are_pinned():
    for version in (KUBE_PROMETHEUS_STACK_CHART_VERSION, PROMETHEUS_ADAPTER_CHART_VERSION):
        parts = version.split(".")
        assert len(parts) == 3 and all(p.isdigit() for p in parts), version
