"""KEDA mode: the ScaledObject against the pinned CRD's schema, the same numbers as the HPA
mode, the config rules for scale to zero, the cold start and the scale-to-zero example."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from gpu_fleet.components import keda, sizing
from gpu_fleet.components.config import AutoscalingConfig, ConfigError, parse_fleet
from gpu_fleet.components.gpu_catalog import load_catalog
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.components.contract import ENVIRONMENT_LABEL
from gpu_fleet.components.monitoring_rules import PROMETHEUS_URL
from gpu_fleet import cli

REPO = Path(__file__).resolve().parents[2]
#: kedacore/charts@v2.20.2 keda/templates/crds/crd-scaledobjects.yaml, as published upstream: read from
#: the shared reference data (never copied into the repository), beside the clone in CI.
CRD = (Path(os.environ.get("GPU_FLEET_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
       / "crds" / "keda-2.20.2" / "crd-scaledobjects.yaml")


@pytest.fixture(scope="module")
def schema() -> dict:
    if not CRD.exists():
        pytest.skip(f"the KEDA CRD is not in the reference data ({CRD})")
    crd = yaml.safe_load(CRD.read_text())
    return next(v for v in crd["spec"]["versions"] if v.get("storage"))["schema"]["openAPIV3Schema"]
EXAMPLE = REPO / "examples" / "scale-to-zero" / "stacks" / "Pulumi.dev.yaml"


def _strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected: the API server would prune them silently."""
    schema = copy.deepcopy(schema)

    def walk(node: dict) -> None:
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for child in (node.get("properties") or {}).values():
            walk(child)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    return schema


def _errors(manifest: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(_strict(schema))
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]
    spec = manifest.get("spec") or {}
    # The CRD's x-kubernetes-validations rule (CEL), which jsonschema does not run.
    if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", 100):
        errors.append("spec: minReplicaCount must be less than or equal to maxReplicaCount")
    return errors


ZERO = AutoscalingConfig(engine="keda", min_replicas=0, max_replicas=4)


def _so(autoscaling: AutoscalingConfig = ZERO) -> dict:
    return keda.scaled_object(autoscaling, "vllm-llama-3-1-8b", "llm-serving",
                              labels={ENVIRONMENT_LABEL: "non-production"}, prometheus_url=PROMETHEUS_URL,
                              initial_cooldown_seconds=2700)


def test_scaled_object_matches_the_pinned_crd_schema(schema):
    assert _errors(_so(), schema) == []


def test_schema_check_catches_a_misspelled_field_and_min_above_max(schema):
    bad = _so()
    bad["spec"]["cooldownPeriods"] = 60
    assert any("cooldownPeriods" in e for e in _errors(bad, schema))
    bad = _so()
    bad["spec"]["minReplicaCount"] = 9
    assert any("minReplicaCount must be" in e for e in _errors(bad, schema))


def test_scaled_object_keeps_the_hpa_modes_numbers():
    hpa = hpa_spec(ZERO, "vllm-llama-3-1-8b")
    spec = _so()["spec"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"] == {"name": "vllm-llama-3-1-8b", "behavior": hpa["behavior"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 4)
    targets = {m["external"]["metric"]["name"]: m["external"]["target"]["averageValue"] for m in hpa["metrics"]}
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert set(triggers) == set(targets)
    for name, trigger in triggers.items():
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        assert trigger["metadata"]["threshold"] == targets[name]
        assert trigger["metadata"]["query"] == f'sum({name}{{namespace="llm-serving",deployment="vllm-llama-3-1-8b"}})'
        assert trigger["metadata"]["serverAddress"] == PROMETHEUS_URL
    assert triggers["dcgm_gpu_utilization"]["metadata"]["activationThreshold"] == "5"
    assert triggers["llm_pending_requests"]["metadata"]["activationThreshold"] == "0"
    assert (spec["cooldownPeriod"], spec["initialCooldownPeriod"]) == (1800, 2700)
    # Switching a live model from hpa to keda: the ScaledObject adopts the HPA of that name.
    assert _so()["metadata"]["annotations"] == {keda.TRANSFER_HPA_OWNERSHIP_ANNOTATION: "true"}


def test_metadata_values_are_strings_as_the_crd_requires():
    for trigger in _so()["spec"]["triggers"]:
        assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_keda_values_move_the_api_server_ports_to_one_a_private_gke_control_plane_reaches():
    values = keda.keda_values()
    assert values["service"]["portHttpsTarget"] == values["webhooks"]["port"] == 10250
    assert values["crds"]["install"] is True


# --------------------------------------------------------------------------- config


def _region() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())["config"]["gpu-fleet:fleet"]


def test_the_example_parses():
    cfg = parse_fleet(_region(), "dev.yaml")
    assert cfg.environment == "non-production"
    assert [m.autoscaling.min_replicas for m in cfg.models] == [0, 1]


@pytest.mark.parametrize("change, field, message", [
    (lambda r: r.update(environment="production"), "models[0].autoscaling.minReplicas", "non-production stacks only"),
    (lambda r: r["models"][0]["autoscaling"].update(engine="hpa"), "models[0].autoscaling.minReplicas",
     "needs engine: keda"),
    (lambda r: r["models"][1]["autoscaling"].update(engine="hpa"), "models[1].autoscaling.engine",
     "not both (kedacore/keda#470)"),
])
def test_config_refuses_zero_outside_keda_and_non_production(change, field, message):
    raw = _region()
    change(raw)
    with pytest.raises(ConfigError) as e:
        parse_fleet(raw, "dev.yaml")
    assert any(p.path == field and message in p.message for p in e.value.problems), e.value.problems


# --------------------------------------------------------------------------- cold start


def test_cold_start_is_node_plus_image_pull_plus_startup_budget():
    cfg = parse_fleet(_region(), "dev.yaml")
    model = cfg.models[0]
    shape = load_catalog().select("aws", "us-west-2", "a100-80gb", 8, None).shape
    s = sizing.size_model(model, shape)
    budget = math.ceil((s.checkpoint_gb / sizing.DOWNLOAD_GB_PER_SECOND + s.checkpoint_gb / sizing.LOAD_GB_PER_SECOND
                        + sizing.WARMUP_SECONDS) * sizing.STARTUP_MARGIN)
    with_node = sizing.cold_start(s, node_seconds=900)
    assert with_node.startup_seconds == budget == sizing.startup_budget_seconds(s)
    assert with_node.total_seconds == 900 + sizing.IMAGE_PULL_SECONDS + budget
    assert sizing.cold_start(s, node_seconds=0).total_seconds == sizing.IMAGE_PULL_SECONDS + budget


# --------------------------------------------------------------------------- the example


def test_scale_to_zero_example_plans_clean(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "--config", str(EXAMPLE.relative_to(REPO)), "--format", "json",
                     "--out", str(tmp_path)]) == 0
    (stack,) = json.loads(capsys.readouterr().out)["stacks"]
    assert stack["policyViolations"] == [] and stack["manifests"]["errors"] == []
    types = [r["type"] for r in stack["resources"]]
    assert types.count("kubernetes:keda.sh/v1alpha1:ScaledObject") == 2
    assert "kubernetes:autoscaling/v2:HorizontalPodAutoscaler" not in types
    charts = [r["inputs"].get("chart") for r in stack["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"]
    assert "keda" in charts and "prometheus-adapter" not in charts
    models = {m["name"]: m for m in stack["outputs"]["models"]}
    zero = models["llama-3-1-8b"]["scaleToZero"]
    assert zero["coldStartSeconds"] == sum(zero["coldStart"].values())
    assert zero["coldStart"]["nodeSeconds"] == 900  # the pool has minNodes 0: its provisioningSeconds
    assert "scaleToZero" not in models["qwen2-5-72b"]
    notice = next(w for w in stack["warnings"] if "llama-3-1-8b scales to zero" in w)
    assert "503" in notice and f"up to {zero['coldStartSeconds']} s" in notice
    so = next(r for r in stack["resources"] if r["type"] == "kubernetes:keda.sh/v1alpha1:ScaledObject")
    assert so["inputs"]["metadata"]["labels"][ENVIRONMENT_LABEL] == "non-production"
