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

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Sequence

from components.hpa import GPU_UTILIZATION_METRIC, PENDING_REQUESTS_METRIC

from .controller import DEFAULT_DOWNSCALE_STABILIZATION_SECONDS, DEFAULT_SYNC_PERIOD_SECONDS, DEFAULT_TOLERANCE
from .controller import HorizontalController, HpaSettings, SpecError
from .serving import Deployment, ServingModel, StartupDelay
from .traces import Trace

DEFAULT_METRICS_LAG_SECONDS = 30


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
    """

    startup: StartupDelay
    sync_period_seconds: int = DEFAULT_SYNC_PERIOD_SECONDS
    metrics_lag_seconds: int = DEFAULT_METRICS_LAG_SECONDS
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilization_seconds: int = DEFAULT_DOWNSCALE_STABILIZATION_SECONDS

    def __post_init__(self) -> None:
        if self.sync_period_seconds < 1 or self.metrics_lag_seconds < 0 or self.tolerance < 0:
            raise ValueError("syncPeriodSeconds must be >= 1, metricsLagSeconds and tolerance >= 0")
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
    """Per-second series of one run (index = second)."""

    load: list[float] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    starting: list[int] = field(default_factory=list)
    #: The replica count the HPA last set (the scale's spec.replicas).
    desired: list[int] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    #: GPU utilisation of a ready pod (percent).
    utilization: list[float] = field(default_factory=list)


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
    needed: list[int]
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


def simulate(hpa: HpaSettings, serving: ServingModel, trace: Trace, loop: ControlLoop) -> Run:
    """Replay ``trace`` against ``hpa``; the deployment starts at ``minReplicas``, all ready."""
    sources = _metric_sources(hpa)
    target = utilization_target(hpa)
    controller = HorizontalController(hpa, tolerance=loop.tolerance,
                                      downscale_stabilisation_window=loop.downscale_stabilization_seconds)
    deployment = Deployment(serving)
    ready = hpa.min_replicas
    starting: deque[int] = deque()  # ready-at seconds, oldest first
    spec = ready
    deployment.settle(trace.rps[0], ready)
    tl = Timeline()
    events: list[ScaleEvent] = []
    # The metrics as the recording rules produce them, per second; None: no series.
    gpu_metric: list[Optional[int]] = []
    queue_metric: list[Optional[int]] = []
    startup = loop.startup.total_seconds
    period, lag = loop.sync_period_seconds, loop.metrics_lag_seconds

    for t, rps in enumerate(trace.rps):
        while starting and starting[0] <= t:
            starting.popleft()
            ready += 1
        _, waiting, util = deployment.step(rps, ready)
        if ready:
            # Milli-quantities, as the external metrics API serves them.
            gpu_metric.append(int(ready * util * 1000))
            queue_metric.append(int(waiting * 1000))
        else:
            gpu_metric.append(None)
            queue_metric.append(None)
        if t % period == 0:
            seen = max(0, t - lag)
            values = [gpu_metric[seen] if name == GPU_UTILIZATION_METRIC else queue_metric[seen] for name in sources]
            decision = controller.reconcile(float(t), spec, ready + len(starting), ready,
                                            [None if v is None else [v] for v in values])
            if decision.desired_replicas != spec:
                events.append(ScaleEvent(t, spec, decision.desired_replicas))
                change = decision.desired_replicas - spec
                if change > 0:
                    starting.extend([t + startup] * change)
                else:
                    for _ in range(-change):
                        if starting:
                            starting.pop()  # newest starting pod first
                        else:
                            ready -= 1
                spec = decision.desired_replicas
        tl.load.append(rps)
        tl.ready.append(ready)
        tl.starting.append(len(starting))
        tl.desired.append(spec)
        tl.queue.append(waiting)
        tl.utilization.append(util)

    needed = [min(hpa.max_replicas, max(hpa.min_replicas, n)) for n in needed_replicas(serving, trace.rps, target)]
    oracle_ready, oracle_starting = oracle_plan(needed, startup)
    oracle = _replay(serving, trace, oracle_ready, oracle_starting)
    return Run(trace, hpa, serving, loop, tl, events, needed, oracle, target)


def needed_replicas(serving: ServingModel, rps: Sequence[float], utilization_target: float) -> list[int]:
    """Ready replicas that keep every second at or below the utilisation target, unbounded.

    Follows the requests in flight as the serving model does (they lag the arrival rate
    by the request latency), so the need falls only as the earlier requests complete.
    """
    per_replica = serving.capacity.concurrency * serving.occupancy_at(utilization_target)
    latency = serving.capacity.mean_latency_seconds
    in_system = max(0.0, rps[0] * latency - rps[0])
    out = []
    for v in rps:
        in_system += v
        # The epsilon lets the in-flight count, which only approaches a steady state, reach it.
        out.append(max(0, math.ceil(in_system / per_replica - 1e-6)))
        in_system -= min(in_system, in_system / latency)
    return out


def oracle_plan(needed: Sequence[int], startup_seconds: int) -> tuple[list[int], list[int]]:
    """Ready and starting replicas per second of the oracle for a ``needed`` profile.

    Replicas are interchangeable, so replica ``k`` (the k-th layer) runs exactly while
    ``needed >= k``, bridging gaps of at most ``startup_seconds`` and starting
    ``startup_seconds`` before each run. Layers that run from t=0 are already ready.
    """
    n = len(needed)
    # Runs of equal need: (start, end, value).
    runs: list[tuple[int, int, int]] = []
    for t, v in enumerate(needed):
        if runs and runs[-1][2] == v:
            runs[-1] = (runs[-1][0], t + 1, v)
        else:
            runs.append((t, t + 1, v))
    ready_diff = [0] * (n + 1)
    starting_diff = [0] * (n + 1)
    for k in range(1, max(needed, default=0) + 1):
        intervals: list[list[int]] = []
        for start, end, v in runs:
            if v < k:
                continue
            if intervals and (start - intervals[-1][1]) <= startup_seconds:
                intervals[-1][1] = end  # keeping it running is no dearer than a restart
            else:
                intervals.append([start, end])
        for start, end in intervals:
            ready_diff[start] += 1
            ready_diff[end] -= 1
            if start > 0:
                boot = max(0, start - startup_seconds)
                starting_diff[boot] += 1
                starting_diff[start] -= 1
    ready, starting = [], []
    r = s = 0
    for t in range(n):
        r += ready_diff[t]
        s += starting_diff[t]
        ready.append(r)
        starting.append(s)
    return ready, starting


def _replay(serving: ServingModel, trace: Trace, ready: Sequence[int], starting: Sequence[int]) -> Timeline:
    """The serving model under a fixed replica profile (the oracle's)."""
    deployment = Deployment(serving)
    deployment.settle(trace.rps[0], ready[0])
    tl = Timeline()
    for t, rps in enumerate(trace.rps):
        _, waiting, util = deployment.step(rps, ready[t])
        tl.load.append(rps)
        tl.ready.append(ready[t])
        tl.starting.append(starting[t])
        tl.desired.append(ready[t] + starting[t])
        tl.queue.append(waiting)
        tl.utilization.append(util)
    return tl
