"""The HPA controller port as a whole: reconcile, spec parsing, and its invariants.

Upstream's own cases are in ``test_simulate_upstream.py``; here are the seed HPA's timing
(the numbers ``shared/reference/hpa-algorithm.md`` states), the clamping and
partial-metric rules of ``reconcileAutoscaler``, and hypothesis properties: the count
never leaves ``[minReplicas, maxReplicas]`` and never moves faster than the policies allow
in any period, whatever the metrics do.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_fleet.components.config import AutoscalingConfig
from gpu_fleet.components.contract import GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.simulate.controller import (
    ExternalMetric,
    HorizontalController,
    HpaSettings,
    ScalingPolicy,
    ScalingRules,
    SpecError,
    parse_quantity_milli,
    settings_from_spec,
)

SEED = settings_from_spec(hpa_spec(AutoscalingConfig(), "vllm-test"))


def _drive(hc: HorizontalController, start: int, values, period: int = 15) -> list[tuple[int, int, int]]:
    """Sync every ``period`` s with one AverageValue sample per metric; the scale events."""
    spec, events = start, []
    for i, v in enumerate(values):
        t = i * period
        d = hc.reconcile(float(t), spec, spec, spec, [[v]] * len(hc.settings.metrics))
        if d.desired_replicas != spec:
            events.append((t, spec, d.desired_replicas))
            spec = d.desired_replicas
    return events


def test_settings_from_the_seed_hpa_spec():
    assert (SEED.min_replicas, SEED.max_replicas) == (2, 20)
    assert SEED.metrics == (ExternalMetric(GPU_UTILIZATION_METRIC, "AverageValue", 75_000),
                            ExternalMetric(PENDING_REQUESTS_METRIC, "AverageValue", 10_000))
    assert SEED.scale_up == ScalingRules(60, "Max", (ScalingPolicy("Pods", 2, 60),))
    assert SEED.scale_down == ScalingRules(300, "Max", (ScalingPolicy("Pods", 1, 120),))


def test_unset_behavior_fields_get_the_api_defaults():
    spec = hpa_spec(AutoscalingConfig(), "vllm-test")
    spec["behavior"] = {"scaleUp": {"stabilizationWindowSeconds": 30}, "scaleDown": {}}
    s = settings_from_spec(spec)
    assert s.scale_up == ScalingRules(30, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
    # The scale-down window stays unset for the controller's --horizontal-pod-autoscaler-downscale-stabilization.
    assert s.scale_down == ScalingRules(None, "Max", (ScalingPolicy("Percent", 100, 15),))
    hc = HorizontalController(s, downscale_stabilisation_window=120)
    assert hc.normalization_arg(5, 3).scale_down_behavior.stabilization_window_seconds == 120


@pytest.mark.parametrize(("quantity", "milli"), [("75", 75_000), ("500m", 500), ("1.5k", 1_500_000), (10, 10_000),
                                                 ("0.0011", 2)])
def test_quantities_read_as_milli_values_rounded_up(quantity, milli):
    assert parse_quantity_milli(quantity) == milli


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.update(minReplicas=0), "scaling to zero"),
    (lambda s: s.update(maxReplicas=1), "below minReplicas"),
    (lambda s: s["metrics"][0].update(type="Resource"), "only External"),
    (lambda s: s["behavior"]["scaleUp"].update(selectPolicy="Fastest"), "selectPolicy"),
    (lambda s: s["metrics"][0]["external"]["target"].update(averageValue="lots"), "not a quantity"),
])
def test_specs_the_api_server_rejects_or_the_port_does_not_model(mutate, message):
    spec = hpa_spec(AutoscalingConfig(), "vllm-test")
    mutate(spec)
    with pytest.raises(SpecError, match=message):
        settings_from_spec(spec)


def test_seed_hpa_takes_nine_minutes_from_2_to_20():
    """A recommendation must hold 60 s, then +2 pods per 60 s: 20 replicas at t=540 s."""
    events = _drive(HorizontalController(SEED), 2, [10**9] * 60)
    assert [e[0] for e in events] == [60 * k for k in range(1, 10)]
    assert [e[2] for e in events] == list(range(4, 21, 2))


def test_seed_hpa_takes_five_plus_thirty_six_minutes_from_20_to_2():
    """300 s window, then -1 pod per 120 s: the first step after 300 s, 2 replicas 36 min later."""
    events = _drive(HorizontalController(SEED), 20, [0] * 200)
    assert events[0][0] == 300
    assert events[-1] == (300 + 17 * 120, 3, 2)
    assert all(b - a == 120 for a, b in zip([e[0] for e in events], [e[0] for e in events[1:]]))


def test_metric_tolerance_keeps_the_count():
    """Usage 10 % above target on 4 replicas is inside the band; 11 % is not."""
    hc = HorizontalController(SEED)
    within = hc.reconcile(0.0, 4, 4, 4, [[int(4 * 75_000 * 1.10)], [0]])
    assert within.desired_replicas == 4 and within.proposals[0] == 4
    hc = HorizontalController(SEED)
    outside = hc.reconcile(0.0, 4, 4, 4, [[int(4 * 75_000 * 1.11)], [0]])
    assert outside.proposals[0] == 5 and outside.desired_replicas == 4  # the 60 s window holds it


def test_several_metrics_take_the_largest_proposal():
    hc = HorizontalController(SEED)
    d = hc.reconcile(0.0, 4, 4, 4, [[100_000], [95_000]])  # GPU: ceil(100/75)=2, queue: ceil(95/10)=10
    assert d.proposals == (2, 10) and d.metric_desired_replicas == 10


def test_a_broken_metric_allows_scale_up_but_never_scale_down():
    up = HorizontalController(SEED).reconcile(0.0, 4, 4, 4, [None, [95_000]])
    assert up.metric_desired_replicas == 10 and up.reason != "FailedGetExternalMetric"
    down = HorizontalController(SEED).reconcile(0.0, 4, 4, 4, [None, [0]])
    assert (down.desired_replicas, down.reason) == (4, "FailedGetExternalMetric")
    none = HorizontalController(SEED).reconcile(0.0, 4, 4, 4, [None, None])
    assert none.reason == "FailedGetExternalMetric"


def test_counts_outside_min_max_are_clamped_without_metrics():
    assert HorizontalController(SEED).reconcile(0.0, 25, 25, 25, [None, None]).desired_replicas == 20
    assert HorizontalController(SEED).reconcile(0.0, 1, 1, 1, [None, None]).desired_replicas == 2
    assert HorizontalController(SEED).reconcile(0.0, 0, 0, 0, [[10**9], [10**9]]).reason == "ScalingDisabled"


def test_without_behavior_the_legacy_path_doubles_at_most():
    legacy = HpaSettings(1, 100, (ExternalMetric("qps", "AverageValue", 1000),))
    events = _drive(HorizontalController(legacy), 3, [10**9] * 3)
    assert [e[2] for e in events] == [6, 12, 24]


def test_value_target_scales_on_ready_pods():
    value = HpaSettings(1, 100, (ExternalMetric("qps", "Value", 1000),), *[None] * 2)
    # 3 pods, 1 ready, usage twice the target: ceil(2.0 x 1 ready) = 2.
    assert HorizontalController(value).reconcile(0.0, 3, 3, 1, [[2000]]).metric_desired_replicas == 2


# --------------------------------------------------------------------------- properties

policies = st.lists(
    st.one_of(
        st.builds(ScalingPolicy, st.just("Pods"), st.integers(1, 6), st.sampled_from([15, 30, 60, 120, 300])),
        st.builds(ScalingPolicy, st.just("Percent"), st.integers(1, 300), st.sampled_from([15, 30, 60, 120, 300])),
    ),
    min_size=1, max_size=3,
).map(tuple)
rules = st.builds(ScalingRules, st.sampled_from([0, 15, 60, 300]), st.sampled_from(["Max", "Min", "Disabled"]), policies)


@st.composite
def hpas(draw) -> HpaSettings:
    lo = draw(st.integers(1, 8))
    hi = draw(st.integers(lo, 40))
    return HpaSettings(lo, hi, (ExternalMetric(GPU_UTILIZATION_METRIC, "AverageValue", 75_000),), draw(rules), draw(rules))


# Metric totals that swing from idle to far beyond the maximum, held for a few syncs.
metric_runs = st.lists(st.tuples(st.integers(0, 5_000_000), st.integers(1, 12)), min_size=1, max_size=25)


def _allowed(rules: ScalingRules, before: int, history, t: int, up: bool) -> int:
    """The limit recomputed from a plain history (no slot reuse), as the policies define it."""
    if rules.select_policy == "Disabled":
        return before
    proposals = []
    for p in rules.policies:
        added = sum(a - b for (tt, b, a) in history if a > b and tt > t - p.period_seconds)
        removed = sum(b - a for (tt, b, a) in history if a < b and tt > t - p.period_seconds)
        start = before - added + removed
        if p.type == "Pods":
            proposals.append(start + p.value if up else start - p.value)
        else:
            proposals.append(math.ceil(start * (1 + p.value / 100)) if up else int(start * (1 - p.value / 100)))
    pick_largest_change = rules.select_policy == "Max"
    if up:
        return max(proposals) if pick_largest_change else min(proposals)
    return min(proposals) if pick_largest_change else max(proposals)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hpa=hpas(), runs=metric_runs, data=st.data())
def test_never_leaves_min_max_nor_outpaces_the_policies(hpa, runs, data):
    start = data.draw(st.integers(hpa.min_replicas, hpa.max_replicas))
    values = [v for v, n in runs for _ in range(n)]
    events = _drive(HorizontalController(hpa), start, values)
    spec = start
    history: list[tuple[int, int, int]] = []
    for t, before, after in events:
        assert before == spec
        assert hpa.min_replicas <= after <= hpa.max_replicas
        if after > before:
            assert after <= _allowed(hpa.scale_up, before, history, t, up=True)
        else:
            assert after >= _allowed(hpa.scale_down, before, history, t, up=False)
        history.append((t, before, after))
        spec = after


@settings(max_examples=100, deadline=None)
@given(value=st.integers(1, 5), period=st.sampled_from([30, 60, 120]), runs=metric_runs,
       direction=st.sampled_from(["up", "down"]))
def test_one_pods_policy_bounds_each_period(value, period, runs, direction):
    """With one Pods policy and the load moving one way, no ``period`` seconds add (or
    remove) more than ``value`` replicas. (With both directions mixed the period start is
    shifted by the other direction's events, which the general property above covers.)"""
    policy = ScalingRules(0, "Max", (ScalingPolicy("Pods", value, period),))
    hpa = HpaSettings(1, 60, (ExternalMetric(GPU_UTILIZATION_METRIC, "AverageValue", 75_000),), policy, policy)
    values = sorted((v for v, n in runs for _ in range(n)), reverse=direction == "down")
    events = _drive(HorizontalController(hpa), 1 if direction == "up" else 60, values)
    assert all((a > b) == (direction == "up") for _, b, a in events)
    for t, _, _ in events:
        moved = sum(abs(a - b) for tt, b, a in events if t - period < tt <= t)
        assert moved <= value


# --------------------------------------------------------------------------- spec parsing like the API server


def _spec_with(**scale_up):
    return {"minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "External", "external": {"metric": {"name": "dcgm_gpu_utilization"},
                                                          "target": {"type": "AverageValue", "averageValue": "75"}}}],
            "behavior": {"scaleUp": scale_up}}


def test_tolerance_is_read_exactly_and_only_behind_the_feature_gate():
    from gpu_fleet.simulate.controller import HorizontalController, settings_from_spec
    gated = settings_from_spec(_spec_with(tolerance="0.0125"), configurable_tolerance=True)
    assert gated.scale_up.tolerance == 0.0125  # not rounded up to 0.013
    assert settings_from_spec(_spec_with(tolerance="25m"), configurable_tolerance=True).scale_up.tolerance == 0.025
    assert HorizontalController(gated).tolerances().scale_up == 0.0125
    # Off by default, as in v1.33: the controller flag applies.
    default = settings_from_spec(_spec_with(tolerance="0.0125"))
    assert default.scale_up.tolerance is None and HorizontalController(default).tolerances().scale_up == 0.1


def test_empty_policies_and_negative_tolerance_are_rejected_like_the_api_server():
    from gpu_fleet.simulate.controller import SpecError, settings_from_spec
    with pytest.raises(SpecError, match=r"behavior.scaleUp.policies: Required value: must specify at least one Policy"):
        settings_from_spec(_spec_with(policies=[]))
    with pytest.raises(SpecError, match=r"behavior.scaleUp.tolerance: .*must be greater than or equal to 0"):
        settings_from_spec(_spec_with(tolerance="-0.1"))
    # Omitted policies still take the defaults.
    assert settings_from_spec(_spec_with()).scale_up.policies[0].type == "Pods"
