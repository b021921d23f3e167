"""``gpu_fleet.policy_check``: the policy pack evaluated offline on recorded plans."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from pulumi_policy import EnforcementLevel

from gpu_fleet.components.config import AutoscalingConfig
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.components.monitoring import ModelRef, Monitoring
from gpu_fleet.policy_check import Violation, evaluate, load_policies

REPO = Path(__file__).resolve().parents[2]
POLICIES = load_policies(REPO)
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
GLOBAL_ROUTING = "gpufleet:index:GlobalRouting"


def _hpa(name: str, **changes) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    spec = hpa_spec(AutoscalingConfig(), f"vllm-{name}")
    spec.update(changes)
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(name, metadata={"name": name, "namespace": "llm-serving"}, spec=spec)


def _names(violations: list[Violation]) -> list[tuple[str, str, str]]:
    return [(v.policy, v.enforcement_level.value, v.resource_name) for v in violations]


def test_load_policies_reads_the_packs_rules():
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names)) == 21  # 19 in rules.py, 2 in cache_rules.py
    assert "hpa-min-replicas" in names and "model-queue-depth-alert" in names


def test_an_hpa_with_one_replica_and_a_one_minute_scale_down_breaks_two_mandatory_rules(fleet):
    def program():
        _hpa("llama", minReplicas=1, behavior={
            "scaleUp": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
        })

    violations = evaluate(fleet.run(program), POLICIES)
    assert _names(violations) == [("hpa-min-replicas", "mandatory", "llama"), ("hpa-scale-down-slow", "mandatory", "llama")]
    assert all(v.mandatory and v.resource_type == HPA and v.urn.endswith("::llama") for v in violations)
    assert "minReplicas is 1" in violations[0].message and "60 s" in violations[1].message
    assert str(violations[0]).startswith(f"[mandatory] hpa-min-replicas: {HPA}  llama: minReplicas is 1")


def test_config_sets_thresholds_and_enforcement_levels(fleet):
    recording = fleet.run(lambda: _hpa("llama"))
    assert evaluate(recording, POLICIES) == []
    [v] = evaluate(recording, POLICIES, {"hpa-min-replicas": {"minReplicas": 3}})
    assert (v.policy, v.mandatory) == ("hpa-min-replicas", True) and "at least 3" in v.message
    [v] = evaluate(recording, POLICIES, {"hpa-min-replicas": {"enforcementLevel": "advisory", "minReplicas": 3}})
    assert v.enforcement_level == EnforcementLevel.ADVISORY
    assert evaluate(recording, POLICIES, {"hpa-min-replicas": {"enforcementLevel": "disabled", "minReplicas": 3}}) == []
    [v] = evaluate(recording, POLICIES, {"all": "advisory", "hpa-min-replicas": {"minReplicas": 3}})
    assert not v.mandatory
    # Remediation is reported as mandatory, as pulumi_policy does.
    [v] = evaluate(recording, POLICIES, {"hpa-min-replicas": {"enforcementLevel": "remediate", "minReplicas": 3}})
    assert v.mandatory


@pytest.mark.parametrize("config, error", [
    ({"hpa-min-replica": "advisory"}, "policies the pack does not have: hpa-min-replica"),
    ({"hpa-min-replicas": {"min": 3}}, "no property 'min' (properties: minReplicas)"),
    ({"hpa-min-replicas": {"minReplicas": "3"}}, "'3' is not of type integer"),
    ({"hpa-min-replicas": {"minReplicas": True}}, "True is not of type integer"),
    ({"hpa-min-replicas": "strict"}, "enforcement level 'strict' is not one of"),
])
def test_config_errors_name_the_policy(config, error, fleet):
    recording = fleet.run(lambda: _hpa("llama"))
    with pytest.raises(ValueError, match=re.escape(error)):
        evaluate(recording, POLICIES, config)


def test_pulumi_secrets_count_as_encrypted_plaintext_does_not(fleet):
    def program():
        k8s.helm.v3.Release("safe", chart="c", values={"grafana": {"adminPassword": pulumi.Output.secret("p")}})
        k8s.helm.v3.Release("leaky", chart="c", values={"grafana": {"adminPassword": "prom-operator"}})
        # The provider's schema makes authToken a secret whatever the program passes.
        aws.elasticache.ReplicationGroup("cache", description="d", auth_token="t" * 32)

    violations = evaluate(fleet.run(program, config={"aws:region": "us-east-1"}), POLICIES)
    secrets = [v for v in violations if v.policy == "secret-inputs-encrypted"]
    assert [(v.resource_name, v.mandatory) for v in secrets] == [("leaky", True)]
    assert "values.grafana.adminPassword" in secrets[0].message


def test_stack_policies_see_every_resource_and_report_on_the_offending_one(fleet):
    def deployment():
        labels = {"app.kubernetes.io/name": "vllm", "gpu-fleet/model": "llama"}
        return k8s.apps.v1.Deployment("llama", metadata={"name": "vllm-llama", "namespace": "llm-serving", "labels": labels},
                                      spec={"selector": {"matchLabels": labels},
                                            "template": {"metadata": {"labels": labels}, "spec": {"containers": []}}})

    def monitored():
        Monitoring("monitoring", {"models": [ModelRef("llama")]})
        deployment()

    alerts = [v for v in evaluate(fleet.run(monitored), POLICIES) if v.policy == "model-queue-depth-alert"]
    assert alerts == []
    [v] = [v for v in evaluate(fleet.run(deployment), POLICIES) if v.policy == "model-queue-depth-alert"]
    assert (v.resource_type, v.resource_name, v.mandatory) == ("kubernetes:apps/v1:Deployment", "llama", True)


class _Routing(pulumi.ComponentResource):
    """Stands in for gpu_fleet.components.global_routing.GlobalRouting: the props the policy reads."""

    def __init__(self, name: str, budget: int, target: int = 30):
        props = {"routingMode": "dns", "failoverBudgetSeconds": budget, "failoverTargetSeconds": target,
                 "failoverBudget": {"message": f"dns failover budget {budget} s"}}
        super().__init__(GLOBAL_ROUTING, name, props)
        self.register_outputs(props)


def test_the_failover_budget_is_advisory(fleet):
    [v] = evaluate(fleet.run(lambda: _Routing("global", 45)), POLICIES)
    assert (v.policy, v.enforcement_level, v.resource_type, v.resource_name) == (
        "global-failover-budget", EnforcementLevel.ADVISORY, GLOBAL_ROUTING, "global")
    assert "worst-case failover 45 s" in v.message and "dns failover budget 45 s" in v.message
    assert evaluate(fleet.run(lambda: _Routing("global", 25)), POLICIES) == []


def test_any_pack_follows_pulumi_policy_conventions(fleet, tmp_path):
    """A project's own rules: async validation, not_applicable, stack-wide violations,
    parents linked in the stack."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "rules.py").write_text(textwrap.dedent('''
        from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

        async def no_hpa(args, report):
            if args.resource_type.endswith("HorizontalPodAutoscaler"):
                report("no HPAs here")

        def skip(args, report):
            args.not_applicable("never applies")
            report("unreachable")

        def orphans(args, report):
            components = [r for r in args.resources if r.parent is None]
            report(f"{len(args.resources)} resources, {len(components)} without a parent")

        POLICIES = [
            ResourceValidationPolicy(name="no-hpa", description="No HPAs.", validate=no_hpa),
            ResourceValidationPolicy(name="skip", description="Skips.", validate=skip,
                                     enforcement_level=EnforcementLevel.MANDATORY),
            StackValidationPolicy(name="count", description="Counts.", validate=orphans,
                                  enforcement_level=EnforcementLevel.MANDATORY),
        ]
    '''))

    def program():
        Monitoring("monitoring", {"models": [ModelRef("llama")]})
        _hpa("llama")

    recording = fleet.run(program)
    violations = evaluate(recording, load_policies(tmp_path))
    assert [(v.policy, v.enforcement_level.value, v.resource_name) for v in violations] == [
        ("no-hpa", "advisory", "llama"), ("count", "mandatory", None)]
    stack = [r for r in recording.resources if not r.type.startswith("pulumi:providers:")]
    assert violations[1].message == f"{len(stack)} resources, 2 without a parent"


def test_reference_stacks_pass_the_pack(reference_plan):
    for stack in ("us-east", "eu-west", "global"):
        recording = reference_plan(stack).recording
        missed = {r.urn for r in recording.of_type(GLOBAL_ROUTING) if not r.plain_inputs["failoverBudget"]["meetsTarget"]}
        # Only an advisory budget the stack really misses may remain.
        unexpected = [v for v in evaluate(recording, POLICIES)
                      if not (v.policy == "global-failover-budget" and not v.mandatory and v.urn in missed)]
        assert unexpected == [], f"{stack}:\n" + "\n".join(map(str, unexpected))
    [routing] = reference_plan("global").recording.of_type(GLOBAL_ROUTING)
    assert routing.plain_inputs["failoverBudgetSeconds"] < 30, routing.plain_inputs["failoverBudget"]["message"]
    assert evaluate(reference_plan("global").recording, POLICIES) == []


def test_the_hpa_stack_policies_really_read_the_reference_hpas(reference_plan):
    # Asking for a metric the fleet does not use flags every model's HPA: the policy sees them.
    recording = reference_plan("us-east").recording
    found = evaluate(recording, POLICIES, config={"hpa-queue-metric": {"queueMetrics": ["not_a_metric"]}})
    flagged = sorted(v.resource_name for v in found if v.policy == "hpa-queue-metric")
    hpas = sorted(r.name for r in recording.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"))
    assert flagged == hpas and len(hpas) == 3
