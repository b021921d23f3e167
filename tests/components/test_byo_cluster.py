"""Bring your own cluster: ModelDeployment's placement arguments, MetricsPipeline on an existing
Prometheus, and the examples/byo-cluster program planned with ``gpu-fleet plan --program``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpu_fleet.components import model_deployment as md
from gpu_fleet.components.config import ModelConfig
from gpu_fleet.components.gpu_catalog import load_catalog
from gpu_fleet.components.monitoring import MetricsPipeline
from gpu_fleet.components.monitoring_rules import ModelRef
from gpu_fleet.components.sizing import host_share
from gpu_fleet import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "byo-cluster"
MODEL = ModelConfig.model_validate({"name": "llama-3-1-8b", "modelId": "meta-llama/Llama-3.1-8B-Instruct",
                                    "revision": "0e9e39f249a16976918f6564b8830bc894c89659", "pool": "any",
                                    "autoscaling": {"minReplicas": 2, "maxReplicas": 4}})
BASE_ARGS = {"model": MODEL, "namespace": "llm", "secret_name": "s", "cache_secret_name": None,
             "weight_cache_storage_class": "rwx"}


@pytest.mark.parametrize("gpu", ["h100", "a100-80gb", "a100-40gb"])
def test_requests_from_gpus_fit_every_catalog_machine_with_that_gpu(gpu):
    shapes = [s for by_type in load_catalog().shapes.values() for s in by_type.values() if s.gpu == gpu]
    assert shapes
    for gpus in range(1, min(s.gpus for s in shapes) + 1):
        derived = md.gpu_host_share(gpu, gpus)
        assert derived.cpu_millis > 0 and derived.memory_gib > 0
        for shape in shapes:
            share = host_share(shape, gpus)
            assert derived.cpu_millis <= share.cpu_millis and derived.memory_gib <= share.memory_gib, shape


def test_cluster_shape_sizes_with_the_gpus_memory():
    shape = md.cluster_shape("a100-40gb", 4, "gcp")
    assert (shape.gpu_memory_gb, shape.gpus, shape.cloud) == (40, 4, "gcp")


def _deployment(fleet, **extra):
    rec = fleet.run(lambda: md.ModelDeployment("m", {**BASE_ARGS, **extra}))
    (dep,) = rec.of_type("kubernetes:apps/v1:Deployment")
    return dep.plain_inputs["spec"]


def test_defaults_without_pool_use_the_gpu_request_and_taint(fleet):
    spec = _deployment(fleet, gpu="h100", cloud="gcp")
    pod = spec["template"]["spec"]
    assert "nodeSelector" not in pod and "priorityClassName" not in pod and "imagePullSecrets" not in pod
    assert pod["tolerations"] == [md.GPU_TOLERATION]
    share = md.gpu_host_share("h100", 1)
    assert pod["containers"][0]["resources"]["requests"] == {
        "cpu": f"{share.cpu_millis}m", "memory": f"{share.memory_gib}Gi", md.GPU_RESOURCE: "1"}
    # No Karpenter annotation off AWS.
    assert md.DO_NOT_DISRUPT_ANNOTATION not in spec["template"]["metadata"].get("annotations", {})


def test_placement_arguments_reach_the_pod(fleet):
    tolerations = [{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    spec = _deployment(fleet, gpu="a100-80gb", cloud="aws", gpus_per_node=4, node_selector={"gpu": "yes"},
                       tolerations=tolerations, priority_class_name="llm", image_pull_secrets=["mirror"],
                       cpu_per_gpu_millis=6000, memory_gib_per_gpu=60, provisioning_seconds=120)
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "yes"}
    assert pod["tolerations"] == tolerations
    assert pod["priorityClassName"] == "llm"
    assert pod["imagePullSecrets"] == [{"name": "mirror"}]
    assert pod["containers"][0]["resources"]["limits"]["cpu"] == "6000m"
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "60Gi"
    assert md.DO_NOT_DISRUPT_ANNOTATION in spec["template"]["metadata"]["annotations"]
    # The node provisioning allowance given is what the rollout waits for.
    slower = _deployment(fleet, gpu="a100-80gb", cloud="aws", provisioning_seconds=1200)
    assert slower["progressDeadlineSeconds"] - spec["progressDeadlineSeconds"] == 1080


def test_without_shape_or_gpu_it_says_what_to_give(fleet):
    with pytest.raises(ValueError, match="give shape, or gpu and cloud"):
        fleet.run(lambda: md.ModelDeployment("m", dict(BASE_ARGS)))


def test_metrics_pipeline_on_an_existing_prometheus(fleet):
    def program():
        MetricsPipeline("metrics", {"models": [ModelRef(name="a", namespace="llm")], "namespace": "obs",
                                    "selector_labels": {"prometheus": "main"},
                                    "prometheus_url": "http://prom.obs.svc:9090"})

    rec = fleet.run(program)
    types = sorted(r.type for r in rec.resources)
    assert types == ["gpufleet:index:MetricsPipeline", "kubernetes:helm.sh/v3:Release",
                     "kubernetes:monitoring.coreos.com/v1:PodMonitor", "kubernetes:monitoring.coreos.com/v1:PrometheusRule"]
    for t in ("PodMonitor", "PrometheusRule"):
        (r,) = rec.of_type(f"kubernetes:monitoring.coreos.com/v1:{t}")
        meta = r.plain_inputs["metadata"]
        assert meta["namespace"] == "obs" and meta["labels"]["prometheus"] == "main" and "release" not in meta["labels"]
    (adapter,) = rec.of_type("kubernetes:helm.sh/v3:Release")
    values = adapter.plain_inputs["values"]
    assert values["prometheus"] == {"url": "http://prom.obs.svc", "port": 9090, "path": ""}
    assert values["nodeSelector"] == {}


def test_metrics_pipeline_without_adapter(fleet):
    rec = fleet.run(lambda: MetricsPipeline("m", {"models": [ModelRef(name="a", namespace="llm")],
                                                   "install_adapter": False}))
    assert not rec.of_type("kubernetes:helm.sh/v3:Release")
    assert rec.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")


def test_example_plans_with_its_stack_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # from anywhere: --program names the folder
    code = cli.main(["plan", "--program", str(EXAMPLE), "--stack", "dev", "--format", "json",
                     "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert code == 0, out.err
    (stack,) = json.loads(out.out)["stacks"]
    config = yaml.safe_load((EXAMPLE / "Pulumi.dev.yaml").read_text())["config"]
    conf = {k.split(":", 1)[1]: v for k, v in config.items()}
    by_type = {}
    for r in stack["resources"]:
        by_type.setdefault(r["type"], []).append(r)
    # Only the model and the metrics pieces: no namespace, no Prometheus, no cluster.
    assert "kubernetes:core/v1:Namespace" not in by_type
    assert {r["inputs"]["name"] for r in by_type["kubernetes:helm.sh/v3:Release"]} == {"prometheus-adapter"}
    (dep,) = by_type["kubernetes:apps/v1:Deployment"]
    pod = dep["inputs"]["spec"]["template"]["spec"]
    assert dep["provider"] == "pulumi:providers:kubernetes::cluster"
    assert dep["inputs"]["metadata"]["namespace"] == conf["namespace"]
    assert pod["nodeSelector"] == conf["nodeSelector"]
    assert pod["tolerations"] == conf["tolerations"]
    assert pod["priorityClassName"] == conf["priorityClassName"]
    assert pod["imagePullSecrets"] == [{"name": n} for n in conf["imagePullSecrets"]]
    (rule,) = by_type["kubernetes:monitoring.coreos.com/v1:PrometheusRule"]
    assert rule["inputs"]["metadata"]["namespace"] == conf["monitoringNamespace"]
    assert conf["prometheusSelectorLabels"].items() <= rule["inputs"]["metadata"]["labels"].items()
    assert stack["policyViolations"] == [] and stack["manifests"]["errors"] == []
    assert list((tmp_path / "out" / "dev").glob("*.yaml"))


@pytest.mark.parametrize("argv, message", [
    (["plan", "--program", "."], "--program DIR and --stack NAME go together"),
    (["plan", "--program", "nowhere", "--stack", "dev"], "Pulumi.yaml: program: no such file"),
])
def test_program_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
