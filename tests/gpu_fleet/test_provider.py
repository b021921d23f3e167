"""The component provider: its schema, generated offline from the typed args as ``pulumi
package add`` would, and its construct path (schema names in, Python components out) under
the SDK mocks, fed with the resources of the Pulumi YAML example."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.experimental.schema import generate_schema

from gpu_fleet.components.config import VLLM_IMAGE
from gpu_fleet import manifests, policy_check
from gpu_fleet.provider import COMPONENTS, PACKAGE

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "yaml-provider" / "Pulumi.yaml"


@pytest.fixture(scope="module")
def schema() -> dict:
    result = Analyzer(PACKAGE).analyze(COMPONENTS)
    spec = generate_schema(name=PACKAGE, version="0.1.0", namespace=None,
                           components=result["component_definitions"],
                           type_definitions=result["type_definitions"], dependencies=result["dependencies"])
    return json.loads(json.dumps(spec.to_json()))


def test_plugin_manifest_names_the_python_runtime():
    assert yaml.safe_load((REPO / "PulumiPlugin.yaml").read_text()) == {"runtime": "python"}


def test_schema_tokens_inputs_and_outputs(schema):
    resources = schema["resources"]
    assert set(resources) == {f"{PACKAGE}:index:{c}" for c in ("ModelDeployment", "MetricsPipeline", "Region",
                                                                "GlobalRouting")}
    assert all(r["isComponent"] for r in resources.values())
    model = resources["gpufleet:index:ModelDeployment"]
    assert sorted(model["requiredInputs"]) == sorted(
        ["name", "modelId", "revision", "namespace", "secretName", "weightCacheStorageClass", "gpu", "cloud"])
    assert {"nodeSelector", "tolerations", "priorityClassName", "imagePullSecrets", "cpuPerGpuMillis",
            "minReplicas", "maxReplicas"} <= set(model["inputProperties"])
    # Model settings are plain (they decide what is created); names of cluster objects may be outputs.
    assert model["inputProperties"]["modelId"].get("plain") is True
    assert "plain" not in model["inputProperties"]["namespace"]
    assert model["inputProperties"]["tolerations"]["items"]["$ref"] == "#/types/gpufleet:index:Toleration"
    assert set(schema["types"]["gpufleet:index:Toleration"]["properties"]) == {"key", "operator", "value", "effect"}
    assert set(model["properties"]) == {"deploymentName", "serviceName", "servicePort", "gpusPerReplica",
                                        "kvCacheTokens", "startupBudgetSeconds"}
    region = resources["gpufleet:index:Region"]
    assert sorted(region["requiredInputs"]) == ["apiKey", "config", "huggingFaceToken"]
    assert set(region["properties"]) == {"clusterName", "kubeconfig", "entrypointDomain"}
    metrics = resources["gpufleet:index:MetricsPipeline"]
    assert metrics["requiredInputs"] == ["models"]
    assert metrics["inputProperties"]["models"]["items"]["$ref"] == "#/types/gpufleet:index:ServedModel"
    routing = resources["gpufleet:index:GlobalRouting"]
    assert routing["requiredInputs"] == ["config"]
    assert set(routing["properties"]) == {"endpoints", "failoverBudgetSeconds", "routingMode"}
    # Every input says what it is.
    for token, r in resources.items():
        for prop, spec in r["inputProperties"].items():
            assert spec.get("description"), f"{token}.{prop}"


def test_yaml_example_resources_construct_through_the_provider(fleet, tmp_path):
    """What the engine does with the YAML program's component: construct it by token with the
    schema's (camelCase) inputs, through the explicit Kubernetes provider. The Pulumi YAML
    language host itself needs the pulumi CLI, which the offline tests do not have."""
    program = yaml.safe_load(EXAMPLE.read_text())
    assert program["runtime"] == "yaml"
    provider = ComponentProvider(COMPONENTS, PACKAGE)
    resources = program["resources"]
    assert resources["cluster"]["type"] == "pulumi:providers:kubernetes"
    components = [(n, r) for n, r in resources.items() if r["type"].startswith(f"{PACKAGE}:")]
    assert [n for n, _ in components] == ["metrics", "llama"]
    for _, component in components:
        assert component["options"]["providers"] == ["${cluster}"]
    def run():
        cluster = k8s.Provider("cluster", **resources["cluster"]["properties"])
        for name, component in components:
            result = provider.construct(name, component["type"], component["properties"],
                                        pulumi.ResourceOptions(providers=[cluster]))
            pulumi.export(name, result.state)  # the state the engine would return, resolved

    rec = fleet.run(run)
    assert rec.stack_outputs["llama"]["serviceName"] == "vllm-llama-3-1-8b"
    assert rec.stack_outputs["llama"]["gpusPerReplica"] == 1
    assert rec.stack_outputs["metrics"]["prometheusUrl"] == resources["metrics"]["properties"]["prometheusUrl"]
    (rule,) = rec.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    assert rule.plain_inputs["metadata"]["labels"]["prometheus"] == "main"
    component = resources["llama"]
    (dep,) = rec.of_type("kubernetes:apps/v1:Deployment")
    assert rec.provider_of(dep).name == "cluster"
    pod = dep.plain_inputs["spec"]["template"]["spec"]
    props = component["properties"]
    assert pod["nodeSelector"] == props["nodeSelector"] and pod["tolerations"] == props["tolerations"]
    assert pod["priorityClassName"] == props["priorityClassName"]
    assert pod["containers"][0]["image"] == VLLM_IMAGE
    (hpa,) = rec.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    assert hpa.plain_inputs["spec"]["minReplicas"] == props["minReplicas"]
    # The same checks gpu-fleet plan runs: strict Kubernetes schemas and the policy pack.
    report = manifests.write_and_validate([m for _, m in rec.kubernetes_objects()], tmp_path / "out")
    assert report.errors == []
    violations = policy_check.evaluate(rec, policy_check.load_policies(REPO))
    assert [v for v in violations if v.mandatory] == []


def test_bad_settings_fail_the_construct_naming_the_field(fleet):
    provider = ComponentProvider(COMPONENTS, PACKAGE)
    props = yaml.safe_load(EXAMPLE.read_text())["resources"]["llama"]["properties"]
    with pytest.raises(Exception, match="revision"):
        fleet.run(lambda: provider.construct("bad", "gpufleet:index:ModelDeployment",
                                             {**props, "revision": "main"}, pulumi.ResourceOptions()))


def test_region_constructs_from_a_stack_files_settings(fleet):
    provider = ComponentProvider(COMPONENTS, PACKAGE)
    raw = yaml.safe_load((REPO / "stacks" / "Pulumi.us-east.yaml").read_text())["config"]["gpu-fleet:fleet"]

    def run():
        result = provider.construct("edge", "gpufleet:index:Region",
                                    {"config": raw, "huggingFaceToken": pulumi.Output.secret("hf"),
                                     "apiKey": pulumi.Output.secret("key")}, pulumi.ResourceOptions())
        pulumi.export("region", result.state)

    rec = fleet.run(run)
    assert rec.stack_outputs["region"]["entrypointDomain"] == raw["entrypoint"]["domain"]
    assert rec.stack_outputs["region"]["clusterName"]
    assert len(rec.of_type("aws:eks/cluster:Cluster")) == 1
    assert len(rec.of_type("kubernetes:apps/v1:Deployment")) >= len(raw["models"])


def test_global_routing_constructs_in_front_of_the_planned_region_stacks(reference_plan):
    from gpu_fleet.components.global_routing import stack_reference_name
    from gpu_fleet import engine

    raw = yaml.safe_load((REPO / "stacks" / "Pulumi.global.yaml").read_text())["config"]["gpu-fleet:fleet"]
    regions = {name: reference_plan(name).recording for name in raw["regions"]}
    outputs = {stack_reference_name(raw["organization"], name): (rec.stack_outputs, rec.secret_outputs)
               for name, rec in regions.items()}
    provider = ComponentProvider(COMPONENTS, PACKAGE)
    rec = engine.Recording(stack="global")
    engine.install(rec, {}, (), outputs)
    try:
        engine.run(lambda: pulumi.export("routing", provider.construct(
            "global", "gpufleet:index:GlobalRouting", {"config": raw, "stacksDir": str(REPO / "stacks")},
            pulumi.ResourceOptions()).state), rec)
    finally:
        pulumi.runtime.settings.set_root_resource(None)
    state = rec.stack_outputs["routing"]
    assert state["routingMode"] == raw.get("routing", {}).get("mode", "dns")
    assert state["failoverBudgetSeconds"] > 0
    assert set(state["endpoints"]) == {m["name"] for r in regions.values()
                                       for m in r.stack_outputs["models"]}
