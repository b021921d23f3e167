"""The Kubernetes HorizontalPodAutoscaler controller (autoscaling/v2), ported to Python.

Pinned release: Kubernetes **v1.33**, ``pkg/controller/podautoscaler/horizontal.go`` and
``replica_calculator.go``. The functions below keep the upstream names (snake_case) and
their arithmetic line for line: milli-quantities, ``math.Ceil`` versus truncating
``int32(...)`` conversions, strict ``After``/``Before`` time comparisons and the order in
which recommendations and scale events are stored. ``tests/gpu_fleet/test_simulate_upstream.py``
runs upstream's own table tests against them.

Source actually read: the search tool stores no v1.33 tag of kubernetes/kubernetes (its
own copy of ``horizontal.go`` is the 2015 original), so the code was read from
``omerap12/kubernetes@a769d588`` (main after v1.33: the per-direction ``Tolerances`` of
KEP-4951, new in v1.33, are there) and checked against v1.33-era copies of the tests. For
the paths ported here the later changes (ready replicas read from the scale status rather
than the pod lister, an ``apiGroup`` on metric identifiers, scale-to-zero, a consistency
store) do not change a result.

What is modelled
----------------
- ``External`` metrics with ``AverageValue`` targets (:func:`get_external_per_pod_metric_replicas`)
  and ``Value`` targets (:func:`get_external_metric_replicas`), several metrics taking the
  maximum and the partial-failure rule of ``computeReplicasForMetrics``.
- Clamping to ``[minReplicas, maxReplicas]``, the ``behavior`` path (stabilisation windows,
  Pods/Percent policies, ``selectPolicy``) with the API server's defaults, and the legacy
  path for an HPA without ``behavior``.
- Tolerance 0.1 (``--horizontal-pod-autoscaler-tolerance``), or per direction from
  ``behavior.scaleUp/scaleDown.tolerance`` (alpha ``HPAConfigurableTolerance`` in v1.33).

What is not modelled
--------------------
- ``Resource``, ``ContainerResource``, ``Pods`` and ``Object`` metrics, and with them the
  per-pod bookkeeping that only they need: missing-metric pods counted at 0 % or 100 %,
  unready pods and the CPU initialisation period. External metrics are one number per
  query: pod readiness only enters through the ready-pod count of ``Value`` targets.
- Scaling from zero (``HPAScaleToZero``, alpha): a target at 0 replicas is left alone.
- API errors, conflicts and the controller's rate-limited work queue: each sync happens
  exactly every ``syncPeriod`` seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal, Optional, Sequence

from gpu_fleet.components.contract import HPA_DEFAULT_SCALE_DOWN, HPA_DEFAULT_SCALE_UP
from gpu_fleet.components.contract import parse_quantity as parse_kubernetes_quantity

KUBERNETES_RELEASE = "v1.33"

#: kube-controller-manager defaults (``pkg/controller/podautoscaler/config/v1alpha1/defaults.go``).
DEFAULT_TOLERANCE = 0.1
DEFAULT_SYNC_PERIOD_SECONDS = 15
DEFAULT_DOWNSCALE_STABILIZATION_SECONDS = HPA_DEFAULT_SCALE_DOWN["stabilizationWindowSeconds"]
#: ``HPAConfigurableTolerance`` (KEP-4951): alpha and off by default in v1.33, per the
#: versioned gate spec in ``pkg/features/kube_features.go`` (``{Version: 1.33, Default:
#: false, PreRelease: Alpha}``; Beta and on from 1.35). Read in a post-1.35 copy of that
#: file through the search tool; the v1.33 tag itself is not stored there (unverified at the tag).
HPA_CONFIGURABLE_TOLERANCE_DEFAULT = False

#: The legacy (no ``behavior``) scale-up cap: ``max(2 * current, 4)``.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
TargetType = Literal["AverageValue", "Value"]


class SpecError(ValueError):
    """An HPA spec the API server would reject or this port does not model."""


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class ScalingPolicy:
    """``HPAScalingPolicy``: at most ``value`` pods (or percent) per ``period_seconds``."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """``HPAScalingRules``; ``None`` fields are unset (the API server fills them)."""

    stabilization_window_seconds: Optional[int] = None
    select_policy: Optional[SelectPolicy] = None
    policies: Optional[tuple[ScalingPolicy, ...]] = None
    tolerance: Optional[float] = None


@dataclass(frozen=True)
class ExternalMetric:
    """One ``External`` metric with its target, in milli-units as the controller reads it."""

    name: str
    target_type: TargetType
    target_milli: int


@dataclass(frozen=True)
class HpaSettings:
    """The parts of an autoscaling/v2 HPA spec the controller acts on, after API defaulting.

    ``scale_up`` / ``scale_down`` are ``None`` when the spec has no ``behavior`` (the legacy
    path); otherwise they are complete (see :func:`generate_hpa_scale_up_rules`), except
    that an unset scale-down window stays ``None`` for the controller flag to fill.
    """

    min_replicas: int
    max_replicas: int
    metrics: tuple[ExternalMetric, ...]
    scale_up: Optional[ScalingRules] = None
    scale_down: Optional[ScalingRules] = None

    @property
    def has_behavior(self) -> bool:
        return self.scale_up is not None


#: ``pkg/apis/autoscaling/v2/defaults.go``: scale up by 100 % or 4 pods (the larger) per
#: 15 s with no window; scale down by 100 % per 15 s, window from the controller flag.
def _policies(rules: dict) -> tuple[ScalingPolicy, ...]:
    return tuple(ScalingPolicy(p["type"], p["value"], p["periodSeconds"]) for p in rules["policies"])


DEFAULT_SCALE_UP_RULES = ScalingRules(
    stabilization_window_seconds=HPA_DEFAULT_SCALE_UP["stabilizationWindowSeconds"],
    select_policy=HPA_DEFAULT_SCALE_UP["selectPolicy"],
    policies=_policies(HPA_DEFAULT_SCALE_UP),
)
DEFAULT_SCALE_DOWN_RULES = ScalingRules(
    stabilization_window_seconds=None,
    select_policy=HPA_DEFAULT_SCALE_DOWN["selectPolicy"],
    policies=_policies(HPA_DEFAULT_SCALE_DOWN),
)


def _copy_hpa_scaling_rules(src: Optional[ScalingRules], defaults: ScalingRules) -> ScalingRules:
    """``copyHPAScalingRules``: every field set in ``src`` wins over the default."""
    if src is None:
        return defaults
    return ScalingRules(
        stabilization_window_seconds=(src.stabilization_window_seconds if src.stabilization_window_seconds is not None
                                      else defaults.stabilization_window_seconds),
        select_policy=src.select_policy if src.select_policy is not None else defaults.select_policy,
        policies=src.policies if src.policies is not None else defaults.policies,
        tolerance=src.tolerance if src.tolerance is not None else defaults.tolerance,
    )


def generate_hpa_scale_up_rules(rules: Optional[ScalingRules]) -> ScalingRules:
    """``GenerateHPAScaleUpRules``."""
    return _copy_hpa_scaling_rules(rules, DEFAULT_SCALE_UP_RULES)


def generate_hpa_scale_down_rules(rules: Optional[ScalingRules]) -> ScalingRules:
    """``GenerateHPAScaleDownRules``."""
    return _copy_hpa_scaling_rules(rules, DEFAULT_SCALE_DOWN_RULES)


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (``"75"``, ``"500m"``, ``"0.025"``, ``"1.5k"``, ``10``), exactly."""
    try:
        exact = parse_kubernetes_quantity(value)
    except ValueError:
        raise SpecError(f"{value!r} is not a quantity") from None
    if not exact.is_finite():
        raise SpecError(f"{value!r} is not a quantity")
    return exact


def parse_quantity_milli(value: Any) -> int:
    """A quantity in milli-units, as ``MilliValue`` reads a metric target: rounded up."""
    return int((parse_quantity(value) * 1000).to_integral_value(rounding=ROUND_CEILING))


def _rules_from_spec(raw: Optional[dict], where: str, configurable_tolerance: bool) -> Optional[ScalingRules]:
    if raw is None:
        return None
    policies = raw.get("policies")
    parsed = None
    if policies is not None:
        # validation.go validateScalingRules: an empty list is an error, not "use the defaults".
        if not policies:
            raise SpecError(f"{where}.policies: Required value: must specify at least one Policy")
        parsed = []
        for i, p in enumerate(policies):
            if p.get("type") not in ("Pods", "Percent"):
                raise SpecError(f"{where}.policies[{i}].type: must be Pods or Percent, got {p.get('type')!r}")
            if int(p.get("value", 0)) <= 0 or not 0 < int(p.get("periodSeconds", 0)) <= 1800:
                raise SpecError(f"{where}.policies[{i}]: value must be > 0 and periodSeconds in 1..1800")
            parsed.append(ScalingPolicy(p["type"], int(p["value"]), int(p["periodSeconds"])))
    select = raw.get("selectPolicy")
    if select is not None and select not in ("Max", "Min", "Disabled"):
        raise SpecError(f"{where}.selectPolicy: must be Max, Min or Disabled, got {select!r}")
    window = raw.get("stabilizationWindowSeconds")
    if window is not None and not 0 <= int(window) <= 3600:
        raise SpecError(f"{where}.stabilizationWindowSeconds: must be in 0..3600, got {window}")
    tolerance = None
    if raw.get("tolerance") is not None:
        exact = parse_quantity(raw["tolerance"])
        if exact < 0:
            raise SpecError(f"{where}.tolerance: Invalid value: {raw['tolerance']!r}: must be greater than or equal to 0")
        # The controller reads it with Quantity.AsApproximateFloat64: no rounding to milli-units.
        # Without the HPAConfigurableTolerance gate (alpha, off by default in v1.33) the
        # field has no effect and the controller flag applies.
        tolerance = float(exact) if configurable_tolerance else None
    return ScalingRules(
        stabilization_window_seconds=None if window is None else int(window),
        select_policy=select,
        policies=None if parsed is None else tuple(parsed),
        tolerance=tolerance,
    )


def settings_from_spec(spec: dict, *, configurable_tolerance: bool = HPA_CONFIGURABLE_TOLERANCE_DEFAULT) -> HpaSettings:
    """Read an autoscaling/v2 ``spec`` dict (as :func:`gpu_fleet.components.hpa.hpa_spec` builds it).

    Applies the API server's defaulting (``minReplicas`` 1, the ``behavior`` defaults).
    Raises SpecError for what the API server rejects or this port does not model.
    ``configurable_tolerance`` is the ``HPAConfigurableTolerance`` feature gate: per-HPA
    ``behavior.*.tolerance`` applies only when it is on.
    """
    min_replicas = int(spec.get("minReplicas", 1))
    max_replicas = int(spec["maxReplicas"])
    if min_replicas < 1:
        raise SpecError("minReplicas: scaling to zero (HPAScaleToZero, alpha) is not modelled; use 1 or more")
    if max_replicas < min_replicas:
        raise SpecError(f"maxReplicas: {max_replicas} is below minReplicas {min_replicas}")
    metrics = []
    for i, m in enumerate(spec.get("metrics") or []):
        if m.get("type") != "External":
            raise SpecError(f"metrics[{i}].type: only External metrics are modelled, got {m.get('type')!r}")
        ext = m["external"]
        target = ext["target"]
        if target.get("type") == "AverageValue":
            milli = parse_quantity_milli(target["averageValue"])
        elif target.get("type") == "Value":
            milli = parse_quantity_milli(target["value"])
        else:
            raise SpecError(f"metrics[{i}].external.target.type: must be AverageValue or Value")
        if milli <= 0:
            raise SpecError(f"metrics[{i}].external.target: must be positive")
        metrics.append(ExternalMetric(ext["metric"]["name"], target["type"], milli))
    if not metrics:
        raise SpecError("metrics: at least one External metric is needed")
    behavior = spec.get("behavior")
    up = down = None
    if behavior is not None:
        up = generate_hpa_scale_up_rules(_rules_from_spec(behavior.get("scaleUp"), "behavior.scaleUp",
                                                          configurable_tolerance))
        down = generate_hpa_scale_down_rules(_rules_from_spec(behavior.get("scaleDown"), "behavior.scaleDown",
                                                              configurable_tolerance))
    return HpaSettings(min_replicas, max_replicas, tuple(metrics), up, down)


# --------------------------------------------------------------------------- replica_calculator.go


@dataclass(frozen=True)
class Tolerances:
    """``Tolerances``: the usage-ratio band inside which the current count is kept."""

    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


class MetricError(Exception):
    """The metric could not be used (no samples, no pods): the HPA treats it as invalid."""


def _go_div(a: float, b: float) -> float:
    """Go float division: x/0 is ±Inf and 0/0 is NaN instead of an exception."""
    if b != 0:
        return a / b
    if a == 0:
        return math.nan
    return math.copysign(math.inf, a)


def _int32_ceil(x: float) -> int:
    return MAX_INT32 if x > MAX_INT32 else int(math.ceil(x))


def _sum_usage(values: Sequence[int]) -> int:
    if not values:
        # metrics/client.go: "no metrics returned from external metrics API".
        raise MetricError("no metrics returned from external metrics API")
    return sum(values)


def get_per_pod_usage(usage: int, status_replicas: int) -> int:
    """``getPerPodUsage``."""
    if status_replicas == 0:
        return 0
    return int(math.ceil(usage / status_replicas))


def get_external_per_pod_metric_replicas(status_replicas: int, target_usage_per_pod: int, usage_values: Sequence[int],
                                         tolerances: Tolerances) -> tuple[int, int]:
    """``GetExternalPerPodMetricReplicas`` (AverageValue target): ``(replicas, per-pod usage)``.

    ``usage_values`` are the milli-values of every series the selector returns; they are
    summed. Inside the tolerance band the status replica count is kept, otherwise
    ``ceil(total / target)``. Readiness plays no part.
    """
    usage = _sum_usage(usage_values)
    replica_count = status_replicas
    usage_ratio = _go_div(float(usage), float(target_usage_per_pod) * float(replica_count))
    if not tolerances.is_within(usage_ratio):
        replica_count = _int32_ceil(float(usage) / float(target_usage_per_pod))
    return replica_count, get_per_pod_usage(usage, status_replicas)


def get_usage_ratio_replica_count(current_replicas: int, ready_pods: int, pod_count: int, usage_ratio: float,
                                  tolerances: Tolerances) -> int:
    """``getUsageRatioReplicaCount``: ratio times the ready pods, current count inside tolerance.

    ``pod_count`` is what the pod lister returns for the target's selector: upstream
    fails with none, but only once it needs the ready count.
    """
    if current_replicas != 0:
        if tolerances.is_within(usage_ratio):
            return current_replicas
        if pod_count == 0:
            raise MetricError("unable to calculate ready pods: no pods returned by selector while calculating replica count")
        return _int32_ceil(usage_ratio * float(ready_pods))
    return int(math.ceil(usage_ratio))


def get_external_metric_replicas(current_replicas: int, ready_pods: int, pod_count: int, target_usage: int,
                                 usage_values: Sequence[int], tolerances: Tolerances) -> tuple[int, int]:
    """``GetExternalMetricReplicas`` (Value target): ``(replicas, total usage)``.

    ``ready_pods`` counts the target's running and ready pods, ``pod_count`` all of them.
    """
    usage = _sum_usage(usage_values)
    usage_ratio = float(usage) / float(target_usage)
    return get_usage_ratio_replica_count(current_replicas, ready_pods, pod_count, usage_ratio, tolerances), usage


# --------------------------------------------------------------------------- horizontal.go helpers


@dataclass
class TimestampedRecommendation:
    recommendation: int
    timestamp: float


@dataclass
class TimestampedScaleEvent:
    #: Absolute value of the change (scale-ups and scale-downs are kept in separate lists).
    replica_change: int
    timestamp: float
    outdated: bool = False


def get_replicas_change_per_period(period_seconds: int, scale_events: Sequence[TimestampedScaleEvent],
                                   now: float) -> int:
    """``getReplicasChangePerPeriod``: the change of events strictly after ``now - period``."""
    cutoff = now - period_seconds
    return sum(e.replica_change for e in scale_events if e.timestamp > cutoff)


def get_longest_policy_period(rules: ScalingRules) -> int:
    """``getLongestPolicyPeriod``."""
    return max((p.period_seconds for p in rules.policies or ()), default=0)


def mark_scale_events_outdated(scale_events: Sequence[TimestampedScaleEvent], longest_policy_period: int,
                               now: float) -> None:
    """``markScaleEventsOutdated``: events older than every policy period may be reused."""
    cutoff = now - longest_policy_period
    for event in scale_events:
        if event.timestamp < cutoff:
            event.outdated = True


def calculate_scale_up_limit_with_scaling_rules(current_replicas: int, scale_up_events: Sequence[TimestampedScaleEvent],
                                                scale_down_events: Sequence[TimestampedScaleEvent],
                                                rules: ScalingRules, now: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``: the most replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current_replicas
    if rules.select_policy == "Min":
        result, select = MAX_INT32, min
    else:
        result, select = MIN_INT32, max
    for policy in rules.policies or ():
        added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, now)
        deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, now)
        period_start = current_replicas - added + deleted
        if policy.type == "Pods":
            proposed = period_start + policy.value
        else:
            # Rounded up: a small percentage must still let the target grow.
            proposed = int(math.ceil(float(period_start) * (1 + float(policy.value) / 100)))
        result = select(result, proposed)
    return result


def calculate_scale_down_limit_with_behaviors(current_replicas: int, scale_up_events: Sequence[TimestampedScaleEvent],
                                              scale_down_events: Sequence[TimestampedScaleEvent],
                                              rules: ScalingRules, now: float) -> int:
    """``calculateScaleDownLimitWithBehaviors``: the fewest replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current_replicas
    if rules.select_policy == "Min":
        result, select = MIN_INT32, max
    else:
        result, select = MAX_INT32, min
    for policy in rules.policies or ():
        added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, now)
        deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, now)
        period_start = current_replicas - added + deleted
        if policy.type == "Pods":
            proposed = period_start - policy.value
        else:
            proposed = int(float(period_start) * (1 - float(policy.value) / 100))
        result = select(result, proposed)
    return result


def calculate_scale_up_limit(current_replicas: int) -> int:
    """``calculateScaleUpLimit`` (legacy path)."""
    return int(max(SCALE_UP_LIMIT_FACTOR * float(current_replicas), SCALE_UP_LIMIT_MINIMUM))


def convert_desired_replicas_with_rules(current_replicas: int, desired_replicas: int, hpa_min_replicas: int,
                                        hpa_max_replicas: int) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules`` (legacy path): ``(replicas, condition reason)``."""
    scale_up_limit = calculate_scale_up_limit(current_replicas)
    if hpa_max_replicas > scale_up_limit:
        maximum_allowed, limiting = scale_up_limit, "ScaleUpLimit"
    else:
        maximum_allowed, limiting = hpa_max_replicas, "TooManyReplicas"
    if desired_replicas < hpa_min_replicas:
        return hpa_min_replicas, "TooFewReplicas"
    if desired_replicas > maximum_allowed:
        return maximum_allowed, limiting
    return desired_replicas, "DesiredWithinRange"


@dataclass(frozen=True)
class NormalizationArg:
    """``NormalizationArg``."""

    scale_up_behavior: ScalingRules
    scale_down_behavior: ScalingRules
    min_replicas: int
    max_replicas: int
    current_replicas: int
    desired_replicas: int


# --------------------------------------------------------------------------- the controller


@dataclass(frozen=True)
class Decision:
    """The outcome of one sync."""

    #: What the scale subresource is set to (the current count when nothing changes).
    desired_replicas: int
    #: The maximum over the metrics before stabilisation and limits (None: not computed).
    metric_desired_replicas: Optional[int]
    #: Per metric: its proposal, or None where the metric was invalid.
    proposals: tuple[Optional[int], ...]
    #: The upstream ``ScalingLimited`` reason (``DesiredWithinRange``, ``ScaleUpLimit``, ...),
    #: or what kept the HPA from acting (``FailedGetExternalMetric``, ``ScalingDisabled``).
    reason: str


@dataclass
class HorizontalController:
    """The controller's state for one HPA (upstream keeps the same lists per HPA key).

    Args:
        settings: the HPA, as :func:`settings_from_spec` reads it.
        tolerance: ``--horizontal-pod-autoscaler-tolerance`` (default 0.1).
        downscale_stabilisation_window: ``--horizontal-pod-autoscaler-downscale-stabilization``
            in seconds (default 300), for a ``behavior.scaleDown`` without a window and for
            the legacy path.
        recommendations: unstabilised recommendations (default None: none recorded yet).
        scale_up_events, scale_down_events: past changes (default empty).

    Times are seconds on the caller's clock.
    """

    settings: HpaSettings
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilisation_window: int = DEFAULT_DOWNSCALE_STABILIZATION_SECONDS
    recommendations: Optional[list[TimestampedRecommendation]] = None
    scale_up_events: list[TimestampedScaleEvent] = field(default_factory=list)
    scale_down_events: list[TimestampedScaleEvent] = field(default_factory=list)

    # ----------------------------------------------------------------- metrics

    def tolerances(self) -> Tolerances:
        """``tolerancesForHpa``: per-direction tolerances from ``behavior`` where set."""
        s = self.settings
        down = s.scale_down.tolerance if s.scale_down and s.scale_down.tolerance is not None else self.tolerance
        up = s.scale_up.tolerance if s.scale_up and s.scale_up.tolerance is not None else self.tolerance
        return Tolerances(scale_down=down, scale_up=up)

    def compute_replicas_for_metrics(self, spec_replicas: int, status_replicas: int, ready_pods: int,
                                     metric_values: Sequence[Optional[Sequence[int]]]) -> tuple[int, tuple[Optional[int], ...]]:
        """``computeReplicasForMetrics``: the largest proposal, or -1 when the HPA must not act.

        ``metric_values[i]`` holds the milli-values the external metrics API returns for
        metric ``i`` (None: the query failed). Some invalid metrics still allow a scale-up,
        never a scale-down.
        """
        tolerances = self.tolerances()
        replicas = 0
        invalid = 0
        proposals: list[Optional[int]] = []
        for metric, values in zip(self.settings.metrics, metric_values, strict=True):
            try:
                if values is None:
                    raise MetricError(f"unable to get external metric {metric.name}")
                if metric.target_type == "AverageValue":
                    proposal, _ = get_external_per_pod_metric_replicas(status_replicas, metric.target_milli, values, tolerances)
                else:
                    proposal, _ = get_external_metric_replicas(spec_replicas, ready_pods, status_replicas,
                                                               metric.target_milli, values, tolerances)
            except MetricError:
                invalid += 1
                proposals.append(None)
                continue
            proposals.append(proposal)
            if replicas == 0 or proposal > replicas:
                replicas = proposal
        if invalid >= len(self.settings.metrics) or (invalid > 0 and replicas < spec_replicas):
            return -1, tuple(proposals)
        return replicas, tuple(proposals)

    # ----------------------------------------------------------------- legacy path

    def record_initial_recommendation(self, current_replicas: int, now: float) -> None:
        """``recordInitialRecommendation``."""
        if self.recommendations is None:
            self.recommendations = [TimestampedRecommendation(current_replicas, now)]

    def stabilize_recommendation(self, prenormalized_desired_replicas: int, now: float) -> int:
        """``stabilizeRecommendation`` (legacy path): the maximum over the downscale window."""
        if self.recommendations is None:
            self.recommendations = []
        max_recommendation = prenormalized_desired_replicas
        old_index = None
        cutoff = now - self.downscale_stabilisation_window
        for i, rec in enumerate(self.recommendations):
            if rec.timestamp < cutoff:
                old_index = i
            elif rec.recommendation > max_recommendation:
                max_recommendation = rec.recommendation
        new = TimestampedRecommendation(prenormalized_desired_replicas, now)
        if old_index is not None:
            self.recommendations[old_index] = new
        else:
            self.recommendations.append(new)
        return max_recommendation

    def normalize_desired_replicas(self, current_replicas: int, prenormalized: int, now: float) -> tuple[int, str]:
        """``normalizeDesiredReplicas`` (legacy path)."""
        stabilized = self.stabilize_recommendation(prenormalized, now)
        return convert_desired_replicas_with_rules(current_replicas, stabilized, self.settings.min_replicas,
                                                   self.settings.max_replicas)

    # ----------------------------------------------------------------- behavior path

    def stabilize_recommendation_with_behaviors(self, args: NormalizationArg, now: float) -> int:
        """``stabilizeRecommendationWithBehaviors``.

        Scale-up uses the minimum, scale-down the maximum of the recommendations inside
        their windows; the result is the current count brought inside ``[up, down]``.
        Stores the unstabilised recommendation, reusing a slot older than both windows.
        """
        if self.recommendations is None:
            self.recommendations = []
        up_recommendation = args.desired_replicas
        up_cutoff = now - args.scale_up_behavior.stabilization_window_seconds
        down_recommendation = args.desired_replicas
        down_cutoff = now - args.scale_down_behavior.stabilization_window_seconds
        old_index = None
        for i, rec in enumerate(self.recommendations):
            if rec.timestamp > up_cutoff:
                up_recommendation = min(rec.recommendation, up_recommendation)
            if rec.timestamp > down_cutoff:
                down_recommendation = max(rec.recommendation, down_recommendation)
            if rec.timestamp < up_cutoff and rec.timestamp < down_cutoff:
                old_index = i
        recommendation = args.current_replicas
        if recommendation < up_recommendation:
            recommendation = up_recommendation
        if recommendation > down_recommendation:
            recommendation = down_recommendation
        new = TimestampedRecommendation(args.desired_replicas, now)
        if old_index is not None:
            self.recommendations[old_index] = new
        else:
            self.recommendations.append(new)
        return recommendation

    def convert_desired_replicas_with_behavior_rate(self, args: NormalizationArg, now: float) -> tuple[int, str]:
        """``convertDesiredReplicasWithBehaviorRate``: apply the policies, then min/max."""
        if args.desired_replicas > args.current_replicas:
            limit = calculate_scale_up_limit_with_scaling_rules(args.current_replicas, self.scale_up_events,
                                                                self.scale_down_events, args.scale_up_behavior, now)
            # Events in the period already used the allowance: hold, do not shrink.
            limit = max(limit, args.current_replicas)
            if args.max_replicas > limit:
                maximum_allowed, reason = limit, "ScaleUpLimit"
            else:
                maximum_allowed, reason = args.max_replicas, "TooManyReplicas"
            if args.desired_replicas > maximum_allowed:
                return maximum_allowed, reason
        elif args.desired_replicas < args.current_replicas:
            limit = calculate_scale_down_limit_with_behaviors(args.current_replicas, self.scale_up_events,
                                                              self.scale_down_events, args.scale_down_behavior, now)
            limit = min(limit, args.current_replicas)
            if args.min_replicas < limit:
                minimum_allowed, reason = limit, "ScaleDownLimit"
            else:
                minimum_allowed, reason = args.min_replicas, "TooFewReplicas"
            if args.desired_replicas < minimum_allowed:
                return minimum_allowed, reason
        return args.desired_replicas, "DesiredWithinRange"

    def normalization_arg(self, current_replicas: int, desired_replicas: int) -> NormalizationArg:
        """The ``NormalizationArg`` of this HPA, with ``maybeInitScaleDownStabilizationWindow`` applied."""
        s = self.settings
        assert s.scale_up is not None and s.scale_down is not None
        down = s.scale_down
        if down.stabilization_window_seconds is None:
            down = replace(down, stabilization_window_seconds=self.downscale_stabilisation_window)
        return NormalizationArg(s.scale_up, down, s.min_replicas, s.max_replicas, current_replicas, desired_replicas)

    def normalize_desired_replicas_with_behaviors(self, current_replicas: int, prenormalized: int,
                                                  now: float) -> tuple[int, str]:
        """``normalizeDesiredReplicasWithBehaviors``: stabilise, then rate-limit."""
        args = self.normalization_arg(current_replicas, prenormalized)
        stabilized = self.stabilize_recommendation_with_behaviors(args, now)
        return self.convert_desired_replicas_with_behavior_rate(replace(args, desired_replicas=stabilized), now)

    def store_scale_event(self, rules: Optional[ScalingRules], prev_replicas: int, new_replicas: int,
                          now: float) -> None:
        """``storeScaleEvent``: remember a change, reusing a slot outdated for every policy.

        ``rules`` are the scaling rules of the direction of the change; None (no
        ``behavior``) stores nothing, as upstream.
        """
        if rules is None:
            return
        events = self.scale_up_events if new_replicas > prev_replicas else self.scale_down_events
        mark_scale_events_outdated(events, get_longest_policy_period(rules), now)
        old_index = None
        for i, event in enumerate(events):
            if event.outdated:
                old_index = i
        new = TimestampedScaleEvent(abs(new_replicas - prev_replicas), now, False)
        if old_index is not None:
            events[old_index] = new
        else:
            events.append(new)

    # ----------------------------------------------------------------- one sync

    def reconcile(self, now: float, spec_replicas: int, status_replicas: int, ready_pods: int,
                  metric_values: Sequence[Optional[Sequence[int]]]) -> Decision:
        """``reconcileAutoscaler`` for a Deployment: the replica count to set at ``now``.

        ``spec_replicas`` is the scale's ``spec.replicas`` (the last count set),
        ``status_replicas`` the pods that exist, ``ready_pods`` the running and ready ones.
        """
        s = self.settings
        current = spec_replicas
        self.record_initial_recommendation(current, now)
        metric_desired: Optional[int] = None
        proposals: tuple[Optional[int], ...] = ()
        if current == 0:
            return Decision(0, None, (), "ScalingDisabled")
        if current > s.max_replicas:
            desired, reason = s.max_replicas, "TooManyReplicas"
        elif current < s.min_replicas:
            desired, reason = s.min_replicas, "TooFewReplicas"
        else:
            metric_desired, proposals = self.compute_replicas_for_metrics(spec_replicas, status_replicas, ready_pods,
                                                                          metric_values)
            if metric_desired == -1:
                return Decision(current, None, proposals, "FailedGetExternalMetric")
            desired = max(0, metric_desired)
            if s.has_behavior:
                desired, reason = self.normalize_desired_replicas_with_behaviors(current, desired, now)
            else:
                desired, reason = self.normalize_desired_replicas(current, desired, now)
        if desired == current:
            return Decision(current, metric_desired, proposals, reason)
        self.store_scale_event(
            None if not s.has_behavior else (s.scale_up if desired > current else s.scale_down),
            current, desired, now,
        )
        return Decision(desired, metric_desired, proposals, reason)
