"""Upstream Kubernetes HPA tests, ported unchanged to the Python controller.

Each case keeps upstream's inputs and expected outputs; its id names the upstream test
function and, for table tests, the table entry (``name`` or ``annotation``). Sources:
``pkg/controller/podautoscaler/replica_calculator_test.go`` (External metric cases, as in
v1.33) and ``horizontal_test.go`` (the stabilisation and rate-limit table tests, read
from omerap12/kubernetes@060da168; unchanged since v1.33). Upstream builds timestamps
with ``time.Now()`` before the function under test reads it again; here one ``NOW`` is
passed explicitly, which gives the same results because no upstream event sits exactly
on a cut-off except where upstream's strict ``After`` already excludes it.

Metric values are milli-quantities, as upstream's ``levels`` and targets are.
"""

from __future__ import annotations

from typing import Optional

import pytest

from gpu_fleet.simulate.controller import (
    ExternalMetric,
    HorizontalController,
    HpaSettings,
    NormalizationArg,
    ScalingPolicy,
    ScalingRules,
    TimestampedRecommendation,
    TimestampedScaleEvent,
    Tolerances,
    calculate_scale_down_limit_with_behaviors,
    calculate_scale_up_limit,
    calculate_scale_up_limit_with_scaling_rules,
    convert_desired_replicas_with_rules,
    generate_hpa_scale_down_rules,
    generate_hpa_scale_up_rules,
    get_external_metric_replicas,
    get_external_per_pod_metric_replicas,
    get_replicas_change_per_period,
)

NOW = 1_000_000.0
DEFAULT_TESTING_TOLERANCE = 0.1
TOLERANCES = Tolerances(DEFAULT_TESTING_TOLERANCE, DEFAULT_TESTING_TOLERANCE)


def _controller(min_replicas: int = 1, max_replicas: int = 1000, **kw) -> HorizontalController:
    settings = HpaSettings(min_replicas, max_replicas, (ExternalMetric("qps", "AverageValue", 1000),),
                           generate_hpa_scale_up_rules(None), generate_hpa_scale_down_rules(None))
    return HorizontalController(settings, **kw)


# --------------------------------------------------------------------------- replica_calculator_test.go

# (upstream test, current replicas, ready pods, levels, target, tolerances, expected replicas, expected usage)
VALUE_CASES = [
    # Upstream runs this entry with metricType podMetric (a quirk of the stored table); the
    # External Value path, which its name describes, gives the same replicas and usage.
    ("TestReplicaCalcScaleUpCMExternal", 1, 1, [8600], 4400, TOLERANCES, 2, 8600),
    ("TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", 3, 1, [8600], 4400, TOLERANCES, 2, 8600),
    ("TestReplicaCalcScaleUpCMExternalNoLabels", 1, 1, [8600], 4400, TOLERANCES, 2, 8600),
    ("TestReplicaCalcScaleDownCMExternal", 5, 5, [8600], 14334, TOLERANCES, 3, 8600),
    ("TestReplicaCalcToleranceCMExternal", 3, 3, [8600], 8888, TOLERANCES, 3, 8600),
    ("TestReplicaCalcConfigurableToleranceCMExternal", 3, 3, [8900], 8800, Tolerances(DEFAULT_TESTING_TOLERANCE, .01), 4, 8900),
]


@pytest.mark.parametrize("case", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_external_value_target(case):
    _, current, ready, levels, target, tolerances, expected_replicas, expected_usage = case
    # Upstream's fake pod lister lists currentReplicas pods; readiness sets how many are ready.
    replicas, usage = get_external_metric_replicas(current, ready, current, target, levels, tolerances)
    assert (replicas, usage) == (expected_replicas, expected_usage)


# (upstream test, status replicas, levels, per-pod target, tolerances, expected replicas, expected per-pod usage)
PER_POD_CASES = [
    ("TestReplicaCalcScaleUpPerPodCMExternal", 3, [8600], 2150, TOLERANCES, 4, 2867),
    ("TestReplicaCalcScaleDownPerPodCMExternal", 5, [8600], 2867, TOLERANCES, 3, 1720),
    ("TestReplicaCalcTolerancePerPodCMExternal", 3, [8600], 2900, TOLERANCES, 3, 2867),
    ("TestReplicaCalcConfigurableTolerancePerPodCMExternal", 3, [8600], 2800, Tolerances(DEFAULT_TESTING_TOLERANCE, .01), 4, 2867),
]


@pytest.mark.parametrize("case", PER_POD_CASES, ids=[c[0] for c in PER_POD_CASES])
def test_external_average_value_target(case):
    _, status, levels, target, tolerances, expected_replicas, expected_usage = case
    assert get_external_per_pod_metric_replicas(status, target, levels, tolerances) == (expected_replicas, expected_usage)


# --------------------------------------------------------------------------- horizontal_test.go


CONVERSION_CASES = [
    # (current, desired, min, max, expected, condition, annotation)
    (5, 7, 3, 8, 7, "DesiredWithinRange", "prenormalized desired replicas within range"),
    (3, 1, 2, 8, 2, "TooFewReplicas", "prenormalized desired replicas < minReplicas"),
    (1, 0, 0, 10, 0, "DesiredWithinRange", "prenormalized desired zeroed replicas within range"),
    (20, 1000, 1, 10, 10, "TooManyReplicas", "maxReplicas is the limit because maxReplicas < scaleUpLimit"),
    (3, 1000, 1, 2000, calculate_scale_up_limit(3), "ScaleUpLimit", "scaleUpLimit is the limit because scaleUpLimit < maxReplicas"),
]


@pytest.mark.parametrize("case", CONVERSION_CASES, ids=[f"TestConvertDesiredReplicasWithRules/{c[6]}" for c in CONVERSION_CASES])
def test_convert_desired_replicas_with_rules(case):
    current, desired, lo, hi, expected, condition, _ = case
    assert convert_desired_replicas_with_rules(current, desired, lo, hi) == (expected, condition)


def test_calculate_scale_up_limit_with_scaling_rules():
    """TestCalculateScaleUpLimitWithScalingRules."""
    rules = ScalingRules(300, "Min", (ScalingPolicy("Pods", 2, 60), ScalingPolicy("Percent", 50, 60)))
    assert calculate_scale_up_limit_with_scaling_rules(1, [], [], rules, NOW) == 2


def test_calculate_scale_down_limit_with_behaviors():
    """TestCalculateScaleDownLimitWithBehaviors."""
    rules = ScalingRules(300, "Min", (ScalingPolicy("Pods", 2, 60), ScalingPolicy("Percent", 50, 60)))
    assert calculate_scale_down_limit_with_behaviors(5, [], [], rules, NOW) == 3


def generate_scaling_rules(pods: int, pods_period: int, percent: int, percent_period: int,
                           stabilization_window: int) -> ScalingRules:
    """Upstream's ``generateScalingRules``."""
    policies = []
    if pods != 0:
        policies.append(ScalingPolicy("Pods", pods, pods_period))
    if percent != 0:
        policies.append(ScalingPolicy("Percent", percent, percent_period))
    return ScalingRules(stabilization_window, "Max", tuple(policies) if policies else None)


def generate_events_uniform_distribution(raw_events: list[int], period_seconds: int) -> list[TimestampedScaleEvent]:
    """Upstream's ``generateEventsUniformDistribution``: events at the centres of equal
    segments of the last ``period_seconds`` (whole seconds, as upstream's Duration cast)."""
    segment = period_seconds / len(raw_events)
    return [TimestampedScaleEvent(e, NOW - int(period_seconds - segment * (i + 1) + segment / 2))
            for i, e in enumerate(raw_events)]


R, E = generate_scaling_rules, generate_events_uniform_distribution
# (name, up events, down events, min, max, up rules, down rules, current, desired, expected, condition)
SCALING_WITH_RULES = [
    ("prenormalized desired replicas within range", None, None, 3, 8, None, None, 5, 7, 7, "DesiredWithinRange"),
    ("prenormalized desired replicas < minReplicas", None, None, 2, 8, None, None, 3, 1, 2, "TooFewReplicas"),
    ("prenormalized desired replicas within range when minReplicas is 0", None, None, 0, 10, None, None, 1, 0, 0, "DesiredWithinRange"),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", None, None, 1, 10, None, None, 20, 1000, 10, "TooManyReplicas"),
    ("desired replica count is more than the maximum replica count", None, None, 100, 150, None, None, 100, 1000, 150, "TooManyReplicas"),
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", None, None, 1, 2000, R(0, 0, 1, 60, 0), None, 3, 1000, 4, "ScaleUpLimit"),
    ("scaleUp with default behavior", None, None, 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
    ("scaleUp with pods policy larger than percent policy", None, None, 1, 1000, R(100, 60, 100, 60, 0), None, 10, 500, 110, "ScaleUpLimit"),
    ("scaleUp with percent policy larger than pods policy", None, None, 1, 1000, R(2, 60, 100, 60, 0), None, 10, 500, 20, "ScaleUpLimit"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy", None, None, 1, 1000, R(100, 60, 0, 0, 0), None, 10, 50, 50, "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy", None, None, 1, 1000, R(10000, 60, 0, 0, 0), None, 10, 50, 50, "DesiredWithinRange"),
    ("scaleUp with pod policy limitation", None, None, 1, 1000, R(30, 60, 0, 0, 0), None, 10, 50, 40, "ScaleUpLimit"),
    ("scaleUp with percent policy limitation", None, None, 1, 1000, R(0, 0, 200, 60, 0), None, 10, 50, 30, "ScaleUpLimit"),
    ("scaleDown with percent policy larger than pod policy", None, None, 1, 1000, None, R(20, 60, 1, 60, 300), 100, 2, 80, "ScaleDownLimit"),
    ("scaleDown with pod policy larger than percent policy", None, None, 1, 1000, None, R(2, 60, 1, 60, 300), 100, 2, 98, "ScaleDownLimit"),
    ("scaleDown with spec MinReplicas limitation with large pod policy", None, None, 1, 1000, None, R(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy", None, None, 5, 1000, None, R(0, 0, 100, 60, 300), 10, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation", None, None, 1, 1000, None, R(5, 60, 0, 0, 300), 10, 2, 5, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation", None, None, 1, 1000, None, R(0, 0, 50, 60, 300), 10, 5, 5, "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy and events", E([1, 5, 9], 120), None, 1, 200, R(300, 60, 0, 0, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy and events", E([1, 5, 9], 120), None, 1, 200, R(0, 0, 10000, 60, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events", E([1, 5, 9], 120), None, 1, 1000, R(5, 120, 0, 0, 0), None, 100, 500, 100, "ScaleUpLimit"),
    ("scaleUp with pod policy and previous scale up events", E([1, 5, 9], 120), None, 1, 1000, R(150, 120, 0, 0, 0), None, 100, 500, 235, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up events", E([1, 5, 9], 120), None, 1, 1000, R(0, 0, 200, 120, 0), None, 100, 500, 255, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up and down events", E([4], 120), E([2], 120), 1, 1000, R(0, 0, 300, 300, 0), None, 6, 24, 16, "ScaleUpLimit"),
    ("scaleDown with default policy and previous events", None, E([1, 5, 9], 120), 1, 1000, None, None, 10, 5, 5, "DesiredWithinRange"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", None, E([1, 5, 9], 120), 1, 1000, None, R(115, 120, 0, 0, 300), 100, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", None, E([1, 5, 9], 120), 5, 1000, None, R(130, 120, 0, 0, 300), 100, 0, 5, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", None, E([1, 5, 9], 120), 5, 1000, None, R(0, 0, 100, 120, 300), 100, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation and previous events", None, E([1, 5, 9], 120), 1, 1000, None, R(5, 120, 0, 0, 300), 100, 2, 100, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation and previous events", None, E([2, 4, 6], 120), 1, 1000, None, R(0, 0, 50, 120, 300), 100, 0, 56, "ScaleDownLimit"),
    ("scaleDown with percent policy and previous scale up and down events", E([2], 120), E([4], 120), 1, 1000, None, R(0, 0, 50, 180, 0), 10, 1, 6, "ScaleDownLimit"),
    ("scaleDown with previous events preventing further scale down", None, E([10, 10, 10], 120), 1, 1000, None, R(0, 0, 10, 120, 300), 100, 0, 100, "ScaleDownLimit"),
    ("scaleDown with with previous events still allowing more scale down", None, E([10, 10, 10], 120), 1, 1000, None, R(0, 0, 1000, 120, 300), 10, 5, 5, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for up", E([8, 12, 9, 11], 120), None, 1, 1000, R(1000, 60, 0, 0, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for up", E([8, 12, 9, 11], 120), None, 1, 1000, R(1000, 120, 100, 60, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for up", E([8, 12, 9, 11], 120), None, 1, 1000, R(1000, 30, 100, 60, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for down", None, E([8, 12, 9, 11], 120), 1, 1000, None, R(1000, 60, 0, 0, 300), 100, 5, 5, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for down", None, E([8, 12, 9, 11], 120), 1, 1000, None, R(1000, 120, 100, 60, 300), 100, 5, 5, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for down", None, E([8, 12, 9, 11], 120), 1, 1000, None, R(1000, 30, 100, 60, 300), 100, 5, 5, "DesiredWithinRange"),
]


@pytest.mark.parametrize("case", SCALING_WITH_RULES, ids=[f"TestScalingWithRules/{c[0]}" for c in SCALING_WITH_RULES])
def test_scaling_with_rules(case):
    _, up_events, down_events, lo, hi, up_rules, down_rules, current, desired, expected, condition = case
    hc = _controller(lo, hi)
    hc.scale_up_events = list(up_events or [])
    hc.scale_down_events = list(down_events or [])
    arg = NormalizationArg(generate_hpa_scale_up_rules(up_rules), generate_hpa_scale_down_rules(down_rules),
                           lo, hi, current, desired)
    assert hc.convert_desired_replicas_with_behavior_rate(arg, NOW) == (expected, condition)


def _events(*pairs: tuple[int, float, bool]) -> list[TimestampedScaleEvent]:
    return [TimestampedScaleEvent(change, NOW + offset, outdated) for change, offset, outdated in pairs]


# (name, prev events (change, seconds from now), rules, expected new events (change, outdated), expected change in 60 s)
STORE_SCALE_EVENTS = [
    ("empty entries with default behavior", [], None, [], 0),
    ("empty entries with two-policy-behavior", [], R(10, 60, 100, 60, 0), [(5, False)], 0),
    ("one outdated entry to be kept untouched without behavior", [(7, -61)], None, [(7, False)], 0),
    ("one outdated entry to be replaced with behavior", [(7, -61)], R(10, 60, 100, 60, 0), [(5, False)], 0),
    ("one actual entry to be not touched with behavior", [(7, -58)], R(10, 60, 100, 60, 0), [(7, False), (5, False)], 7),
    ("two entries, one of them to be replaced", [(7, -61), (6, -59)], R(10, 60, 0, 0, 0), [(5, False), (6, False)], 6),
    ("replace one entry, use policies with different periods", [(8, -29), (6, -59), (7, -61), (9, -61)],
     R(10, 60, 100, 30, 0), [(8, False), (6, False), (7, True), (5, False)], 14),
    ("two entries, both actual", [(7, -58), (6, -59)], R(10, 120, 100, 30, 0), [(7, False), (6, False), (5, False)], 13),
]


@pytest.mark.parametrize("case", STORE_SCALE_EVENTS, ids=[f"TestStoreScaleEvents/{c[0]}" for c in STORE_SCALE_EVENTS])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_store_scale_events(case, direction):
    _, prev, rules, expected, expected_change = case
    hc = _controller()
    events = _events(*[(c, off, False) for c, off in prev])
    if direction == "up":
        hc.scale_up_events = events
        assert get_replicas_change_per_period(60, hc.scale_up_events, NOW) == expected_change
        hc.store_scale_event(rules, 10, 10 + 5, NOW)
        got = hc.scale_up_events
    else:
        hc.scale_down_events = events
        assert get_replicas_change_per_period(60, hc.scale_down_events, NOW) == expected_change
        hc.store_scale_event(rules, 10, 10 - 5, NOW)
        got = hc.scale_down_events
    assert [(e.replica_change, e.outdated) for e in got] == expected


def _recs(*pairs: tuple[int, float]) -> list[TimestampedRecommendation]:
    return [TimestampedRecommendation(r, NOW + offset) for r, offset in pairs]


M = 60
# (name, recommendations (value, seconds from now), current, desired, expected, expected stored values, up window, down window)
NORMALIZE_WITH_BEHAVIOR = [
    ("empty recommendations for scaling down", [], 100, 5, 5, [5], 0, 0),
    ("simple scale down stabilization", [(4, -2 * M), (5, -1 * M)], 100, 3, 5, [4, 5, 3], 0, 3 * M),
    ("simple scale up stabilization", [(4, -2 * M), (5, -1 * M)], 1, 7, 4, [4, 5, 7], 5 * M, 0),
    ("no scale down stabilization", [(1, -2 * M), (2, -1 * M)], 100, 3, 3, [1, 2, 3], 5 * M, 0),
    ("no scale up stabilization", [(4, -2 * M), (5, -1 * M)], 1, 3, 3, [4, 5, 3], 0, 5 * M),
    ("no scale down stabilization, reuse recommendation element", [(10, -10 * M), (9, -9 * M)], 100, 3, 3, [10, 3], 0, 0),
    ("no scale up stabilization, reuse recommendation element", [(10, -10 * M), (9, -9 * M)], 1, 100, 100, [10, 100], 0, 0),
    ("scale down stabilization, reuse one of obsolete recommendation element",
     [(10, -10 * M), (4, -1 * M), (5, -2 * M), (9, -9 * M)], 100, 3, 5, [10, 4, 5, 3], 0, 3 * M),
    ("scale up stabilization, reuse one of obsolete recommendation element",
     [(10, -100 * M), (6, -1 * M), (5, -2 * M), (9, -3 * M)], 1, 100, 5, [100, 6, 5, 9], 300, 0),
    ("scale up and down stabilization, do not scale up when prenormalized rec goes down",
     [(2, -100 * M), (3, -3 * M)], 2, 1, 2, None, 300, 300),
    ("scale up and down stabilization, do not scale down when prenormalized rec goes up",
     [(2, -100 * M), (1, -3 * M)], 2, 3, 2, None, 300, 300),
]


@pytest.mark.parametrize("case", NORMALIZE_WITH_BEHAVIOR,
                         ids=[f"TestNormalizeDesiredReplicasWithBehavior/{c[0]}" for c in NORMALIZE_WITH_BEHAVIOR])
def test_normalize_desired_replicas_with_behavior(case):
    """Upstream calls stabilizeRecommendationWithBehaviors with only the windows set."""
    _, recs, current, desired, expected, stored, up_window, down_window = case
    hc = _controller()
    hc.recommendations = _recs(*recs)
    arg = NormalizationArg(ScalingRules(up_window), ScalingRules(down_window), 0, 0, current, desired)
    assert hc.stabilize_recommendation_with_behaviors(arg, NOW) == expected
    if stored is not None:
        assert [r.recommendation for r in hc.recommendations] == stored


# (name, recommendations, desired, expected stabilized, expected log length)
NORMALIZE_LEGACY = [
    ("empty log", [], 5, 5, 1),
    ("stabilize", [(4, -2 * M), (5, -1 * M)], 3, 5, 3),
    ("no stabilize", [(1, -2 * M), (2, -1 * M)], 3, 3, 3),
    ("no stabilize - old recommendations", [(10, -10 * M), (9, -9 * M)], 3, 3, 2),
    ("stabilize - old recommendations", [(10, -10 * M), (4, -1 * M), (5, -2 * M), (9, -9 * M)], 3, 5, 4),
]


@pytest.mark.parametrize("case", NORMALIZE_LEGACY, ids=[f"TestNormalizeDesiredReplicas/{c[0]}" for c in NORMALIZE_LEGACY])
def test_normalize_desired_replicas_legacy(case):
    _, recs, desired, expected, log_length = case
    hc = _controller(downscale_stabilisation_window=5 * M)
    hc.recommendations = _recs(*recs)
    assert hc.stabilize_recommendation(desired, NOW) == expected
    assert len(hc.recommendations) == log_length


def test_default_rules_match_the_api_defaults():
    """``GenerateHPAScaleUpRules``/``...ScaleDownRules`` of nil: the documented defaults."""
    up, down = generate_hpa_scale_up_rules(None), generate_hpa_scale_down_rules(None)
    assert (up.stabilization_window_seconds, up.select_policy, up.policies) == (
        0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
    assert (down.stabilization_window_seconds, down.select_policy, down.policies) == (
        None, "Max", (ScalingPolicy("Percent", 100, 15),))
    # A partially set rule keeps the user's fields and takes the rest from the defaults.
    partial: Optional[ScalingRules] = ScalingRules(stabilization_window_seconds=60)
    assert generate_hpa_scale_up_rules(partial).policies == up.policies
    assert generate_hpa_scale_up_rules(partial).stabilization_window_seconds == 60
