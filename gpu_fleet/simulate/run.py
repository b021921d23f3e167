"""The simulation loop: a trace, a deployment and the HPA controller, one second at a time.

Each second: starting replicas whose start-up delay has passed become ready; the
deployment serves the second's arrivals (:class:`~.serving.Deployment`); the two metrics
are recorded. Every ``syncPeriodSeconds`` (15) the controller reads the metrics as they
were ``metricsLagSeconds`` (30) ago, the Prometheus scrape and recording interval plus the
adapter's cache, and sets the replica count. New replicas start at once and are ready
after the start-up delay; removed replicas go at once.

The oracle knows the whole trace. It runs exactly the replicas the serving model needs to
stay at the utilisation target (:func:`needed_replicas`, within ``[minReplicas,
maxReplicas]``), starting each one the start-up delay before it is
needed, and keeps an idle replica through a gap no longer than the start-up delay (a
restart would cost that much GPU time anyway). Whatever it needs at t=0 it already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from gpu_fleet.components.contract import GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC

from .controller import DEFAULT_DOWNSCALE_STABILIZATION_SECONDS, DEFAULT_SYNC_PERIOD_SECONDS, DEFAULT_TOLERANCE
from . import kernels
from .controller import (HorizontalController, HpaSettings, ScalingRules, SpecError, TimestampedRecommendation,
                         TimestampedScaleEvent)
from .serving import Deployment, ServingModel, StartupDelay
from .traces import Trace

DEFAULT_METRICS_LAG_SECONDS = 30
#: Codes of ``selectPolicy`` and policy types in :func:`.kernels.advance`'s rule tables.
SELECT_POLICIES = ("Max", "Min", "Disabled")
POLICY_TYPES = ("Pods", "Percent")


@dataclass(frozen=True)
class ScaleToZero:
    """KEDA's step between 0 and 1 replica (``engine: keda`` with ``minReplicas: 0``), as
    kedacore/keda@v2.20.2 ``pkg/scaling/executor/scale_scaledobjects.go`` (``RequestScale``)
    takes it: every ``pollingInterval`` a trigger is active while its query value is above
    its ``activationThreshold`` (``pkg/scalers/prometheus_scaler.go``: ``val >
    ActivationThreshold``; a missing series reads 0, ``ignoreNullValues``). Active at 0
    replicas: scale to 1 (``scaleFromZeroOrIdle``; the HPA KEDA creates takes 1..N,
    ``GetHPAMinReplicas``). Active above 0: the last active time moves. Inactive above 0:
    to 0 once the last active time is more than ``cooldownPeriod`` ago (``scaleToZeroOrIdle``;
    the ScaledObject sets no ``idleReplicaCount``, so it goes to ``minReplicaCount``, 0).

    Args:
        idle_seconds: ``cooldownPeriod``.
        activation_gpu_utilization: the GPU trigger's activation (sum over the pods, percent).
        activation_pending_requests: the queue trigger's activation (requests).
        cold_start_seconds: the start-up of the replica that leaves zero
            (:func:`gpu_fleet.components.sizing.cold_start`: a node when none is warm, image pull,
            start-up budget).
        polling_interval_seconds: ``pollingInterval``; KEDA polls on the HPA's sync seconds.
    """

    idle_seconds: int
    activation_gpu_utilization: float
    activation_pending_requests: float
    cold_start_seconds: int
    polling_interval_seconds: int = 15


@dataclass(frozen=True)
class ControlLoop:
    """Timing of the control loop around the HPA.

    Args:
        startup: start-up delay of a new replica.
        sync_period_seconds: HPA sync period (default 15 s, the controller default).
        metrics_lag_seconds: age of the metrics the HPA reads (default 30 s).
        tolerance: the controller's ``--horizontal-pod-autoscaler-tolerance`` (0.1).
        downscale_stabilization_seconds: the controller flag (300 s), used where
            ``behavior.scaleDown`` sets no window.
        warm_replicas: replicas above ``minReplicas`` that fit on warm spare GPU nodes
            (``warmNodes`` x replicas per node); they start without node provisioning.
        scale_to_zero: KEDA's scale to zero in front of the HPA (None: the HPA alone).
    """

    startup: StartupDelay
    sync_period_seconds: int = DEFAULT_SYNC_PERIOD_SECONDS
    metrics_lag_seconds: int = DEFAULT_METRICS_LAG_SECONDS
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilization_seconds: int = DEFAULT_DOWNSCALE_STABILIZATION_SECONDS
    warm_replicas: int = 0
    scale_to_zero: Optional[ScaleToZero] = None

    def __post_init__(self) -> None:
        if self.sync_period_seconds < 1 or self.metrics_lag_seconds < 0 or self.tolerance < 0:
            raise ValueError("syncPeriodSeconds must be >= 1, metricsLagSeconds and tolerance >= 0")
        if self.warm_replicas < 0:
            raise ValueError("warmNodes must be >= 0")
        if min(self.startup.node_provision_seconds, self.startup.image_pull_seconds,
               self.startup.model_load_seconds) < 0:
            raise ValueError("start-up phases must be >= 0 seconds")


@dataclass(frozen=True)
class ScaleEvent:
    """The HPA set the replica count from ``before`` to ``after`` at second ``t``."""

    t: int
    before: int
    after: int


@dataclass
class Timeline:
    """Per-second series of one run (numpy arrays, index = second)."""

    load: np.ndarray
    ready: np.ndarray
    starting: np.ndarray
    #: The replica count the HPA last set (the scale's spec.replicas).
    desired: np.ndarray
    queue: np.ndarray
    #: GPU utilisation of a ready pod (percent); None where not computed (the oracle's, by default).
    utilization: Optional[np.ndarray]


@dataclass
class Run:
    """A finished simulation: the HPA's timeline and the oracle's."""

    trace: Trace
    hpa: HpaSettings
    serving: ServingModel
    loop: ControlLoop
    timeline: Timeline
    events: list[ScaleEvent]
    #: Ready replicas the serving model needs each second (within min/max).
    needed: np.ndarray
    oracle: Timeline
    utilization_target: float


def _metric_sources(hpa: HpaSettings) -> list[str]:
    known = (GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC)
    for m in hpa.metrics:
        if m.name not in known:
            raise SpecError(f"metric {m.name!r}: the serving model produces {' and '.join(known)} only")
    return [m.name for m in hpa.metrics]


def utilization_target(hpa: HpaSettings) -> float:
    """The per-pod GPU utilisation the HPA aims at (percent)."""
    for m in hpa.metrics:
        if m.name == GPU_UTILIZATION_METRIC:
            return m.target_milli / 1000
    raise SpecError(f"the HPA has no {GPU_UTILIZATION_METRIC} metric to take the utilisation target from")


def simulate(hpa: HpaSettings, serving: ServingModel, trace: Trace, loop: ControlLoop, *,
             skip_quiet_syncs: bool = True, oracle_utilization: bool = False, reference: Optional["Run"] = None) -> Run:
    """Replay ``trace`` against ``hpa``; the deployment starts at ``minReplicas``, all ready.

    Event-driven: :func:`.kernels.advance` runs the seconds and decides the syncs it can
    (see :mod:`.kernels`); the controller decides the others. ``skip_quiet_syncs=False`` hands it every sync
    (the reference the fast path is tested against). The oracle's per-second utilisation
    is only for the plot: ``oracle_utilization=True`` computes it. ``reference``: take the
    oracle (and the need) from that run of the same trace instead (``gpu-fleet tune``
    compares every setting with one oracle).
    """
    sources = _metric_sources(hpa)
    target = utilization_target(hpa)
    controller = HorizontalController(hpa, tolerance=loop.tolerance,
                                      downscale_stabilisation_window=loop.downscale_stabilization_seconds)
    tolerances = controller.tolerances()
    if hpa.has_behavior:
        args = controller.normalization_arg(hpa.min_replicas, hpa.min_replicas)
        up_rules, down_rules = args.scale_up_behavior, args.scale_down_behavior
        up_window, down_window = up_rules.stabilization_window_seconds, down_rules.stabilization_window_seconds
    else:
        up_rules = down_rules = None
        up_window, down_window = 0, loop.downscale_stabilization_seconds
    zero = loop.scale_to_zero
    # KEDA's polls are Python's: with scale to zero every sync goes to the controller.
    decide = (skip_quiet_syncs and zero is None and hpa.has_behavior
              and all(m.target_type == "AverageValue" for m in hpa.metrics))
    if zero is not None and zero.polling_interval_seconds != loop.sync_period_seconds:
        raise ValueError("KEDA's pollingInterval must equal the HPA's sync period here")
    last_active = 0  # the run starts serving: KEDA's cooldown counts from t=0
    cap = serving.capacity
    rps = np.asarray(trace.rps, dtype=np.float64)
    n = len(rps)
    tl = Timeline(rps, np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
                  np.empty(n, np.float64), np.empty(n, np.float64))
    # Written every second before any sync reads them.
    gpu_metric = np.empty(n, np.int64)
    queue_metric = np.empty(n, np.int64)
    has_metric = np.empty(n, np.bool_)
    starting_at = np.zeros(hpa.max_replicas + 1, np.int64)  # ready-at second of each starting pod, oldest first
    syncs = n // loop.sync_period_seconds + 3
    # Every stored recommendation (second, replicas): the first sync records the initial count.
    rec_t = np.zeros(syncs, np.int64)
    rec_v = np.zeros(syncs, np.int64)
    rec_t[0], rec_v[0] = 0, hpa.min_replicas
    # The controller's scale events (rows: change, second, outdated) and the changes made.
    up_events = np.zeros((3, syncs), np.int64)
    down_events = np.zeros((3, syncs), np.int64)
    scale_t, scale_before, scale_after = (np.zeros(syncs, np.int64) for _ in range(3))
    deployment = Deployment(serving)
    deployment.settle(rps[0], hpa.min_replicas)
    # ready, spec, starting pods, requests in the system, recommendations stored,
    # scale-up events, scale-down events, changes made, the need's requests in the system
    # Unless the reference has them: the oracle's need per second, computed alongside the run
    # (:func:`needed_replicas`), and the requests in the system while nothing waits.
    per_replica = cap.concurrency * serving.occupancy_at(target)
    need_low = 0 if zero is not None else hpa.min_replicas
    need = np.empty(0 if reference is not None else n, np.int64)
    track = np.empty(0 if reference is not None else n + 1, np.float64)
    state = np.array([hpa.min_replicas, hpa.min_replicas, 0, deployment.in_system, 1, 0, 0, 0,
                      kernels.need_start(rps, cap.mean_latency_seconds)], np.float64)
    kinds = np.array([0 if name == GPU_UTILIZATION_METRIC else 1 for name in sources], np.int64)
    targets = np.array([m.target_milli for m in hpa.metrics], np.int64)
    longest = max(up_window, down_window)
    controller.recommendations = [TimestampedRecommendation(hpa.min_replicas, 0.0)]
    synced = 1
    keep = 2 * (longest // loop.sync_period_seconds + 2)
    startup = loop.startup.total_seconds
    warm_startup = startup - loop.startup.node_provision_seconds
    # Replicas up to this count start on warm spare nodes, without node provisioning.
    warm_up_to = hpa.min_replicas + loop.warm_replicas
    up_table, down_table = _rules_table(up_rules), _rules_table(down_rules)
    t = 0
    while t < n:
        t = kernels.advance(t, rps, state, starting_at, gpu_metric, queue_metric, has_metric,
                            tl.ready, tl.starting, tl.desired, tl.queue, tl.utilization,
                            cap.concurrency, cap.mean_latency_seconds, serving.utilization_curve,
                            loop.sync_period_seconds, loop.metrics_lag_seconds, kinds, targets,
                            tolerances.scale_down, tolerances.scale_up, decide, up_window, down_window,
                            rec_t, rec_v, hpa.min_replicas, hpa.max_replicas, up_table, down_table,
                            up_events, down_events, scale_t, scale_before, scale_after,
                            warm_up_to, startup, warm_startup, need, track, per_replica, need_low, hpa.max_replicas)
        if t >= n:
            break
        ready, spec, count, n_rec = int(state[0]), int(state[1]), int(state[2]), int(state[4])
        seen = max(0, t - loop.metrics_lag_seconds)
        values = [None if not has_metric[seen]
                  else [int(gpu_metric[seen] if kind == 0 else queue_metric[seen])] for kind in kinds]
        # The controller's list gets the recommendations the kernel stored since its last
        # call; entries older than both windows never count again and are dropped.
        # Those the kernel stored before ``t - longest`` are skipped at once (rec_t ascends).
        recs = controller.recommendations
        first = synced + int(np.searchsorted(rec_t[synced:n_rec], t - longest))
        recs.extend(TimestampedRecommendation(int(rec_v[j]), float(rec_t[j])) for j in range(first, n_rec))
        if len(recs) > keep:
            recs[:] = [r for r in recs if r.timestamp >= t - longest]
        if zero is not None:
            spec, ready, count, last_active = _keda_poll(zero, t, seen, spec, ready, count, last_active,
                                                       has_metric, gpu_metric, queue_metric, tl.queue, starting_at,
                                                       scale_t, scale_before, scale_after, state)
        if decide:
            # The kernel keeps the scale events when it decides; the controller gets them here.
            controller.scale_up_events = _events_list(up_events, int(state[5]))
            controller.scale_down_events = _events_list(down_events, int(state[6]))
        decision = controller.reconcile(float(t), spec, ready + count, ready, values)
        if decide:
            state[5] = _events_array(controller.scale_up_events, up_events)
            state[6] = _events_array(controller.scale_down_events, down_events)
        if decision.metric_desired_replicas is not None and decision.reason != "FailedGetExternalMetric":
            # reconcile stored max(0, the metrics' proposal) as this sync's recommendation.
            rec_t[n_rec], rec_v[n_rec] = t, max(0, decision.metric_desired_replicas)
            n_rec += 1
            state[4] = n_rec
        synced = n_rec
        if decision.desired_replicas != spec:
            changes = int(state[7])
            scale_t[changes], scale_before[changes], scale_after[changes] = t, spec, decision.desired_replicas
            state[7] = changes + 1
            change = decision.desired_replicas - spec
            for replicas in range(spec + 1, spec + change + 1):
                starting_at[count] = t + (warm_startup if replicas <= warm_up_to else startup)
                count += 1
            for _ in range(-change):
                if count:
                    count -= 1  # newest starting pod first
                else:
                    ready -= 1
            spec = decision.desired_replicas
            state[0], state[1], state[2] = ready, spec, count
        tl.ready[t], tl.starting[t], tl.desired[t] = ready, count, spec
        t += 1
    events = [ScaleEvent(int(a), int(b), int(c)) for a, b, c in
              zip(scale_t[:int(state[7])], scale_before[:int(state[7])], scale_after[:int(state[7])])]

    if reference is not None:
        return Run(trace, hpa, serving, loop, tl, events, reference.needed, reference.oracle, target)
    oracle_ready, oracle_starting = oracle_plan(need, startup, warm_up_to, warm_startup)
    oracle = _replay(serving, rps, oracle_ready, oracle_starting, oracle_utilization, track)
    return Run(trace, hpa, serving, loop, tl, events, need, oracle, target)


def _keda_poll(zero: ScaleToZero, t: int, seen: int, spec: int, ready: int, count: int, last_active: int,
               has_metric: np.ndarray, gpu_metric: np.ndarray, queue_metric: np.ndarray, queue: np.ndarray,
               starting_at: np.ndarray, scale_t: np.ndarray, scale_before: np.ndarray, scale_after: np.ndarray,
               state: np.ndarray) -> tuple[int, int, int, int]:
    """One KEDA poll at sync second ``t`` (see :class:`ScaleToZero`): ``(spec, ready, starting, last active)``."""
    gpu = gpu_metric[seen] / 1000 if has_metric[seen] else 0.0
    # At zero no vLLM counts waiting requests; the simulator lets the activation see the
    # requests held meanwhile (an assumption: the deployed stack answers 503, README).
    pending = queue_metric[seen] / 1000 if has_metric[seen] else float(queue[seen])
    active = gpu > zero.activation_gpu_utilization or pending > zero.activation_pending_requests
    new = spec
    if active and spec == 0:
        new = 1
        starting_at[count] = t + zero.cold_start_seconds
        count += 1
    elif active:
        last_active = t
    elif spec > 0 and last_active + zero.idle_seconds < t:
        new, ready, count = 0, 0, 0
        # The requests still on the removed pods go with them (the fluid queue's remainder
        # would otherwise look like held requests and wake the model at once).
        state[3] = 0.0
    if new != spec:
        changes = int(state[7])
        scale_t[changes], scale_before[changes], scale_after[changes] = t, spec, new
        state[7] = changes + 1
        state[0], state[1], state[2] = ready, new, count
    return new, ready, count, last_active


def _rules_table(rules: Optional[ScalingRules]) -> np.ndarray:
    """Scaling rules as :func:`.kernels.advance` reads them: ``(selectPolicy, policies)``,
    then ``(type, value, periodSeconds)`` per policy."""
    if rules is None:
        return np.zeros((1, 3), np.int64)
    policies = rules.policies or ()
    table = [(SELECT_POLICIES.index(rules.select_policy), len(policies), 0)]
    table += [(POLICY_TYPES.index(p.type), p.value, p.period_seconds) for p in policies]
    return np.array(table, np.int64)


def _events_list(events: np.ndarray, count: int) -> list[TimestampedScaleEvent]:
    return [TimestampedScaleEvent(int(events[0, i]), float(events[1, i]), bool(events[2, i])) for i in range(count)]


def _events_array(events: list[TimestampedScaleEvent], out: np.ndarray) -> int:
    for i, e in enumerate(events):
        out[0, i], out[1, i], out[2, i] = e.replica_change, int(e.timestamp), e.outdated
    return len(events)


def needed_replicas(serving: ServingModel, rps: Sequence[float], utilization_target: float,
                    low: int = 0, high: int = kernels.MAX_INT32, track: Optional[np.ndarray] = None) -> np.ndarray:
    """Ready replicas that keep every second at or below the utilisation target, within ``[low, high]``.

    Follows the requests in flight as the serving model does (they lag the arrival rate
    by the request latency), so the need falls only as the earlier requests complete.
    ``track`` (``len(rps) + 1``), if given, gets those requests at the start of each second
    (the oracle's replay follows it while nothing waits).
    """
    per_replica = serving.capacity.concurrency * serving.occupancy_at(utilization_target)
    return kernels.needed(np.asarray(rps, dtype=np.float64), per_replica, serving.capacity.mean_latency_seconds,
                          low, high, np.empty(0) if track is None else track)


def oracle_plan(needed: Sequence[int], startup_seconds: int, warm_up_to: int = 0,
                warm_startup_seconds: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ready and starting replicas per second of the oracle for a ``needed`` profile.

    Replicas are interchangeable, so replica ``k`` (the k-th layer) runs exactly while
    ``needed >= k``, bridging gaps of at most ``startup_seconds`` and starting
    ``startup_seconds`` before each run (``warm_startup_seconds`` for layers up to
    ``warm_up_to``, which fit on warm spare nodes). Layers that run from t=0 are already ready.
    """
    return kernels.oracle_layers(np.asarray(needed, dtype=np.int64), startup_seconds, warm_up_to, warm_startup_seconds)


def _replay(serving: ServingModel, rps: np.ndarray, ready: np.ndarray, starting: np.ndarray,
            with_utilization: bool, track: np.ndarray) -> Timeline:
    """The serving model under a fixed replica profile (the oracle's)."""
    cap = serving.capacity
    deployment = Deployment(serving)
    deployment.settle(rps[0], int(ready[0]))
    queue = np.empty(len(rps), np.float64)
    utilization = np.empty(len(rps) if with_utilization else 0, np.float64)
    kernels.replay(rps, ready, cap.concurrency, cap.mean_latency_seconds, serving.utilization_curve,
                   deployment.in_system, queue, utilization, track)
    return Timeline(rps, ready, starting, ready + starting, queue, utilization if with_utilization else None)
