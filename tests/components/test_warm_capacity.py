"""Warm GPU nodes: placeholder pods that hold minNodes whole nodes until a model needs them."""

from __future__ import annotations

import pytest

from gpu_fleet.components import warm_capacity as warm
from gpu_fleet.components.config import load_stack_file


@pytest.mark.parametrize("stack,pools", [("us-east", {"h100": 8, "a100": 8}), ("eu-west", {"h100": 8})])
def test_each_pool_with_a_minimum_gets_whole_node_placeholders(reference_plan, stack, pools):
    rec = reference_plan(stack).recording
    deployments = {d.plain_inputs["metadata"]["name"]: d for d in rec.of_type("kubernetes:apps/v1:Deployment")
                   if d.plain_inputs["metadata"]["namespace"] == warm.NAMESPACE}
    assert set(deployments) == {f"gpu-warm-{p}" for p in pools}
    priority = rec.named("kubernetes:scheduling.k8s.io/v1:PriorityClass", f"{stack}-warm-capacity-priority")
    assert priority.plain_inputs["value"] < 0 and priority.plain_inputs["preemptionPolicy"] == "Never"
    for pool, gpus in pools.items():
        d = deployments[f"gpu-warm-{pool}"].plain_inputs
        assert d["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
        assert d["spec"]["replicas"] == 1  # minNodes
        pod = d["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == priority.plain_inputs["metadata"]["name"]
        assert pod["nodeSelector"] == {"gpu-fleet/pool": pool}
        assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == gpus
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    policies = [p for p in rec.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                if p.plain_inputs["metadata"]["namespace"] == warm.NAMESPACE]
    assert len(policies) == len(pools)
    assert all(p.plain_inputs["spec"]["policyTypes"] == ["Ingress", "Egress"] for p in policies)


def test_no_placeholders_without_a_minimum(fleet):
    pool = load_stack_file("stacks/Pulumi.us-east.yaml").gpu_pools[0].model_copy(update={"min_nodes": 0})
    assert warm.placeholder_deployment_spec("aws", pool)["replicas"] == 0
