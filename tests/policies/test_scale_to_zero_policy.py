"""Policy ``scale-to-zero-non-production`` and the behaviour policies on KEDA ScaledObjects."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gpu_fleet.components.config import AutoscalingConfig, ScalingRules
from gpu_fleet.components.keda import scaled_object
from gpu_fleet.components.contract import ENVIRONMENT_LABEL
from gpu_fleet.components.monitoring_rules import PROMETHEUS_URL

# The pack's harness (real ResourceValidationArgs behind pulumi_policy's proxy).
_spec = importlib.util.spec_from_file_location("policy_harness", Path(__file__).with_name("test_rules.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
access, check = harness.access, harness.check


def _so(environment: str | None, **autoscaling) -> dict:
    labels = {ENVIRONMENT_LABEL: environment} if environment else {}
    return scaled_object(AutoscalingConfig(engine="keda", **autoscaling), "vllm-m", "ns", labels=labels,
                         prometheus_url=PROMETHEUS_URL, initial_cooldown_seconds=600)


@pytest.mark.parametrize("environment, min_replicas, violations", [
    ("non-production", 0, 0),
    ("non-production", 1, 0),
    ("production", 0, 1),
    (None, 0, 1),
    ("production", 1, 1),
    ("production", 2, 0),
])
def test_zero_only_where_the_stack_is_non_production(environment, min_replicas, violations):
    found = check("scale-to-zero-non-production", access.SCALED_OBJECT, _so(environment, min_replicas=min_replicas))
    assert len(found) == violations, found


def test_unset_min_replica_count_is_keda_s_default_of_zero():
    so = _so("production", min_replicas=2)
    del so["spec"]["minReplicaCount"]
    (message,) = check("scale-to-zero-non-production", access.SCALED_OBJECT, so)
    assert "unset: KEDA defaults to 0" in message


def test_the_hpa_policies_read_the_behaviour_keda_gives_its_hpa():
    fast_down = ScalingRules(stabilization_window_seconds=30, policies=[{"type": "Pods", "value": 1, "period_seconds": 60}])
    so = _so("non-production", min_replicas=0, scale_down=fast_down)
    (message,) = check("hpa-scale-down-slow", access.SCALED_OBJECT, so)
    assert "30 s" in message
    assert check("hpa-scale-up-fast", access.SCALED_OBJECT, _so("non-production", min_replicas=0)) == []
    assert check("hpa-scale-down-slow", access.SCALED_OBJECT, _so("non-production", min_replicas=0)) == []
