"""The simulator's per-second arithmetic, compiled with numba.

One definition of each formula, used both from Python (:class:`.serving.ServingModel`,
:class:`.serving.Deployment`) and inside the compiled loops, so the event-driven run
(:func:`.run.simulate`) performs the same floating-point operations in the same order as
a one-second-at-a-time Python loop would, only without the interpreter.

:func:`advance` runs the seconds and, for ``AverageValue`` External metrics and a
``behavior`` (every stack's HPA), decides the syncs with the controller's own rules: the
replica calculator's tolerance band, the stabilisation windows, the Pods/Percent rate
limits over the stored scale events (with upstream's slot reuse) and min/max. Every other
sync (no metric yet, a count outside min/max, the legacy path, ``Value`` targets, KEDA's
polls) goes to the Python port (:mod:`.controller`), which stays the reference: the tests
replay traces both ways and compare them second by second.

``cache=True`` keeps the compiled code beside the module: the first run on a machine
compiles (a few seconds), later processes load it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MAX_INT32 = 2**31 - 1


@njit(cache=True)
def utilization_of(occupancy: float, k: float) -> float:
    """GPU utilisation (percent) of a ready pod at ``occupancy`` (see :mod:`.serving`)."""
    x = min(max(occupancy, 0.0), 1.0)
    if k == 0:
        return 100.0 * x
    return 100.0 * (1.0 - math.exp(-k * x)) / (1.0 - math.exp(-k))


@njit(cache=True)
def flow(in_system: float, arrivals: float, slots: float, latency: float, dt: float) -> tuple[float, float, float]:
    """One step of the fluid FIFO: ``(running, waiting, requests in the system after it)``."""
    total = in_system + arrivals * dt
    running = min(total, slots)
    return running, total - running, total - min(running, running * dt / latency)


@njit(cache=True)
def replay(rps, ready, concurrency, latency, k, in_system, queue_out, util_out, track):
    """The serving model under a fixed replica profile; fills ``queue_out`` and, unless it
    is empty, ``util_out``.

    ``track`` (may be empty): the requests in the system at the start of each second
    when nothing ever waits (:func:`needed`'s). While the replay is on it and the
    arrivals fit the slots, :func:`flow` would do the very same operations on the same
    numbers, so the next value is taken from it instead of recomputed.
    """
    with_util = util_out.shape[0] > 0
    tracked = track.shape[0] > 0
    for t in range(rps.shape[0]):
        slots = ready[t] * concurrency
        if tracked and in_system == track[t] and in_system + rps[t] <= slots:
            queue_out[t] = 0.0
            if with_util:
                util_out[t] = utilization_of((in_system + rps[t]) / slots, k)
            in_system = track[t + 1]
            continue
        running, waiting, in_system = flow(in_system, rps[t], slots, latency, 1.0)
        queue_out[t] = waiting
        if with_util:
            util_out[t] = utilization_of(running / slots, k) if slots else 0.0


@njit(cache=True)
def tally(ready, starting, queue, threshold, for_seconds):
    """One pass over a timeline for the summary: ``(replica-seconds ready + starting, peak
    ready, seconds with the queue above threshold, seconds the alert fires, peak queue)``.
    The alert fires every second of a run above threshold after its first ``for_seconds``."""
    pods = 0
    peak_ready = 0
    above = 0
    firing = 0
    run = 0
    peak_queue = -math.inf
    for t in range(queue.shape[0]):
        pods += ready[t] + starting[t]
        peak_ready = max(peak_ready, ready[t])
        peak_queue = max(peak_queue, queue[t])
        if queue[t] > threshold:
            above += 1
            run += 1
            if run > for_seconds:
                firing += 1
        else:
            run = 0
    return pods, peak_ready, above, firing, peak_queue


@njit(cache=True)
def need_start(rps, latency):
    """The requests in the system before the first second of :func:`needed`, in steady state."""
    return max(0.0, rps[0] * latency - rps[0])


@njit(cache=True)
def _need(in_system, arrivals, per_replica, latency, low, high):
    """One second of :func:`needed`: ``(replicas needed, requests in the system after it)``."""
    # flow()'s operations (dt = 1) with every request running.
    in_system += arrivals
    # The epsilon lets the in-flight count, which only approaches a steady state, reach it.
    need = min(high, max(low, math.ceil(in_system / per_replica - 1e-6)))
    return need, in_system - min(in_system, in_system / latency)


@njit(cache=True)
def needed(rps, per_replica, latency, low, high, track):
    """Ready replicas per second that keep the in-flight requests at the target, within
    ``[low, high]``. Unless ``track`` is empty, it gets the requests in the system at
    the start of each second and after the last (for :func:`replay`)."""
    out = np.empty(rps.shape[0], dtype=np.int64)
    tracked = track.shape[0] > 0
    in_system = need_start(rps, latency)
    for t in range(rps.shape[0]):
        if tracked:
            track[t] = in_system
        out[t], in_system = _need(in_system, rps[t], per_replica, latency, low, high)
    if tracked:
        track[rps.shape[0]] = in_system
    return out


@njit(cache=True)
def oracle_layers(needed, startup_seconds, warm_up_to, warm_startup_seconds):
    """Ready and starting replicas per second of the oracle (see :func:`.run.oracle_plan`);
    layers up to ``warm_up_to`` start in ``warm_startup_seconds`` (warm spare nodes)."""
    n = needed.shape[0]
    # Runs of equal need: starts[i] .. starts[i + 1], value values[i].
    starts = np.empty(n + 1, dtype=np.int64)
    values = np.empty(n, dtype=np.int64)
    runs = 0
    top = 0
    for t in range(n):
        if runs == 0 or needed[t] != values[runs - 1]:
            starts[runs] = t
            values[runs] = needed[t]
            runs += 1
            top = max(top, needed[t])
    starts[runs] = n
    ready_diff = np.zeros(n + 1, dtype=np.int64)
    starting_diff = np.zeros(n + 1, dtype=np.int64)
    for k in range(1, top + 1):
        startup = warm_startup_seconds if k <= warm_up_to else startup_seconds
        # Layer k runs while needed >= k; a gap no longer than the start-up delay is bridged
        # (keeping it running is no dearer than a restart).
        open_start = -1
        open_end = -1
        for i in range(runs):
            if values[i] < k:
                continue
            if open_start >= 0 and starts[i] - open_end <= startup:
                open_end = starts[i + 1]
                continue
            if open_start >= 0:
                _add_layer(ready_diff, starting_diff, open_start, open_end, startup)
            open_start, open_end = starts[i], starts[i + 1]
        if open_start >= 0:
            _add_layer(ready_diff, starting_diff, open_start, open_end, startup)
    return np.cumsum(ready_diff[:n]), np.cumsum(starting_diff[:n])


@njit(cache=True)
def _add_layer(ready_diff, starting_diff, start, end, startup_seconds):
    ready_diff[start] += 1
    ready_diff[end] -= 1
    if start > 0:
        boot = max(0, start - startup_seconds)
        starting_diff[boot] += 1
        starting_diff[start] -= 1


@njit(cache=True)
def _proposal(usage, target_milli, status, tol_down, tol_up):
    """``GetExternalPerPodMetricReplicas`` for one series: the count it proposes."""
    ratio = usage / (target_milli * status) if status else (math.inf if usage else math.nan)
    if (1.0 - tol_down) <= ratio <= (1.0 + tol_up):
        return status
    x = usage / target_milli
    return MAX_INT32 if x > MAX_INT32 else int(math.ceil(x))


@njit(cache=True)
def _change_per_period(period, ev_change, ev_t, n_ev, now):
    """``getReplicasChangePerPeriod``: the change of events strictly after ``now - period``."""
    total = 0
    for i in range(n_ev):
        if ev_t[i] > now - period:
            total += ev_change[i]
    return total


@njit(cache=True)
def _rate_limit(up, current, rules, up_events, down_events, n_up, n_down, now):
    """``calculateScaleUpLimitWithScalingRules`` (``up``) or ``calculateScaleDownLimitWithBehaviors``.

    ``rules``: row 0 ``(selectPolicy, policies)`` with 0 Max, 1 Min, 2 Disabled; then one
    row per policy ``(type, value, periodSeconds)``, type 0 Pods, 1 Percent.
    """
    select = rules[0, 0]
    if select == 2:
        return current
    # Min for scale-up, and Max for scale-down, keep the smallest change.
    take_min = (select == 1) == up
    result = MAX_INT32 if take_min else -MAX_INT32 - 1
    for i in range(1, rules[0, 1] + 1):
        kind, value, period = rules[i, 0], rules[i, 1], rules[i, 2]
        added = _change_per_period(period, up_events[0], up_events[1], n_up, now)
        deleted = _change_per_period(period, down_events[0], down_events[1], n_down, now)
        period_start = current - added + deleted
        if up:
            if kind == 0:
                proposed = period_start + value
            else:
                proposed = int(math.ceil(float(period_start) * (1 + float(value) / 100)))
        else:
            if kind == 0:
                proposed = period_start - value
            else:
                proposed = int(float(period_start) * (1 - float(value) / 100))
        result = min(result, proposed) if take_min else max(result, proposed)
    return result


@njit(cache=True)
def _store_event(events, n_ev, change, rules, now):
    """``storeScaleEvent``: mark events older than the rules' longest period outdated and
    reuse the last outdated slot, else append. ``events`` rows: change, second, outdated.
    Returns the new event count."""
    longest = 0
    for i in range(1, rules[0, 1] + 1):
        longest = max(longest, rules[i, 2])
    old = -1
    for i in range(n_ev):
        if events[1, i] < now - longest:
            events[2, i] = 1
        if events[2, i]:
            old = i
    slot = old if old >= 0 else n_ev
    events[0, slot] = change
    events[1, slot] = now
    events[2, slot] = 0
    return n_ev if old >= 0 else n_ev + 1


@njit(cache=True)
def _behavior_rate(current, desired, min_replicas, max_replicas, up_rules, down_rules,
                   up_events, down_events, n_up, n_down, now):
    """``convertDesiredReplicasWithBehaviorRate``: the policies, then min/max."""
    if desired > current:
        limit = max(_rate_limit(True, current, up_rules, up_events, down_events, n_up, n_down, now), current)
        allowed = limit if max_replicas > limit else max_replicas
        if desired > allowed:
            return allowed
    elif desired < current:
        limit = min(_rate_limit(False, current, down_rules, up_events, down_events, n_up, n_down, now), current)
        allowed = limit if min_replicas < limit else min_replicas
        if desired < allowed:
            return allowed
    return desired


@njit(cache=True)
def advance(t, rps, state, starting_at, gpu_metric, queue_metric, has_metric,
            ready_tl, starting_tl, desired_tl, queue_tl, util_tl,
            concurrency, latency, k, period, lag,
            metric_kind, target_milli, tol_down, tol_up, decide,
            up_window, down_window, rec_t, rec_v,
            min_replicas, max_replicas, up_rules, down_rules, up_events, down_events,
            scale_t, scale_before, scale_after, warm_up_to, startup, warm_startup,
            need_out, track, per_replica, need_low, need_high):
    """Run from second ``t`` until a sync the Python controller must decide, or the end.

    ``state`` (float64): ready, spec, starting pods, requests in the system,
    recommendations stored, scale-up events, scale-down events, changes made, the need's requests in the system.
    ``starting_at[:starting]`` holds the ready-at second of each starting pod, oldest
    first. ``metric_kind[i]`` is 0 for the GPU metric and 1 for the queue metric.

    With ``decide`` (a ``behavior`` and ``AverageValue`` metrics only) the syncs whose
    metrics exist are decided here, as :meth:`.controller.HorizontalController.reconcile`
    does: the proposals, the stabilisation windows over ``rec_t``/``rec_v``, the rate
    limits over the stored scale events (``up_events``/``down_events``, rows change,
    second, outdated; the same slot reuse as upstream) and min/max; a change is recorded
    in ``scale_*`` and its new pods start (``warm_startup`` for counts up to
    ``warm_up_to``). Unless ``need_out`` is empty, :func:`needed` is computed alongside
    (``per_replica``, ``need_low``, ``need_high``; ``track``; its state in ``state[8]``). Returns the second of the sync to hand over (its queue and
    utilisation already recorded, its replica counts not), or ``len(rps)``.
    """
    n = rps.shape[0]
    ready = int(state[0])
    spec = int(state[1])
    count = int(state[2])
    in_system = state[3]
    n_rec = int(state[4])
    n_up = int(state[5])
    n_down = int(state[6])
    n_scale = int(state[7])
    need_in = state[8]
    with_need = need_out.shape[0] > 0
    longest = max(up_window, down_window)
    stop = n
    next_sync = (t + period - 1) // period * period
    # The seconds syncs read, max(0, sync - lag): 0, then those congruent to -lag.
    first_seen = (period - lag % period) % period
    if first_seen == 0:
        first_seen = period
    next_seen = 0 if t == 0 else t + (first_seen - t) % period
    while t < n:
        if count:
            # Pods on warm nodes skip provisioning: ready-at is not in start order.
            kept = 0
            for i in range(count):
                if starting_at[i] <= t:
                    ready += 1
                else:
                    starting_at[kept] = starting_at[i]
                    kept += 1
            count = kept
        slots = ready * concurrency
        running, waiting, in_system = flow(in_system, rps[t], slots, latency, 1.0)
        util = utilization_of(running / slots, k) if slots else 0.0
        queue_tl[t] = waiting
        util_tl[t] = util
        if with_need:
            # The oracle's need rides along: an independent chain the CPU overlaps with this one.
            track[t] = need_in
            need_out[t], need_in = _need(need_in, rps[t], per_replica, latency, need_low, need_high)
        if t == next_seen:
            # Only the seconds a sync reads (``lag`` before it): milli-quantities, as the
            # external metrics API serves them.
            next_seen = first_seen if t < first_seen else t + period
            if ready:
                gpu_metric[t] = int(ready * util * 1000)
                queue_metric[t] = int(waiting * 1000)
                has_metric[t] = True
            else:
                has_metric[t] = False
        if t == next_sync:
            next_sync += period
            if not decide:
                stop = t
                break
            seen = max(0, t - lag)
            # No metric, or a count outside [min, max] (reconcile clamps it first): Python decides.
            if not has_metric[seen] or not min_replicas <= spec <= max_replicas:
                stop = t
                break
            status = ready + count
            desired = 0
            for i in range(metric_kind.shape[0]):
                usage = gpu_metric[seen] if metric_kind[i] == 0 else queue_metric[seen]
                p = _proposal(usage, target_milli[i], status, tol_down, tol_up)
                if desired == 0 or p > desired:
                    desired = p
            up = desired
            down = desired
            j = n_rec - 1
            # Newest first, back to the longer window: older ones no longer count.
            while j >= 0 and rec_t[j] > t - longest:
                if rec_t[j] > t - up_window:
                    up = min(up, rec_v[j])
                if rec_t[j] > t - down_window:
                    down = max(down, rec_v[j])
                j -= 1
            rec_t[n_rec] = t
            rec_v[n_rec] = desired
            n_rec += 1
            # The current count brought inside [up, down]; unchanged, the rate limits keep it.
            stabilized = min(max(spec, up), down)
            if stabilized != spec:
                new = _behavior_rate(spec, stabilized, min_replicas, max_replicas, up_rules, down_rules,
                                     up_events, down_events, n_up, n_down, t)
                if new > spec:
                    n_up = _store_event(up_events, n_up, new - spec, up_rules, t)
                elif new < spec:
                    n_down = _store_event(down_events, n_down, spec - new, down_rules, t)
                if new != spec:
                    scale_t[n_scale] = t
                    scale_before[n_scale] = spec
                    scale_after[n_scale] = new
                    n_scale += 1
                    for replicas in range(spec + 1, new + 1):
                        starting_at[count] = t + (warm_startup if replicas <= warm_up_to else startup)
                        count += 1
                    for _ in range(spec - new):
                        if count:
                            count -= 1  # newest starting pod first
                        else:
                            ready -= 1
                    spec = new
        ready_tl[t] = ready
        starting_tl[t] = count
        desired_tl[t] = spec
        t += 1
    state[0] = ready
    state[1] = spec
    state[2] = count
    state[3] = in_system
    state[4] = n_rec
    state[5] = n_up
    state[6] = n_down
    state[7] = n_scale
    state[8] = need_in
    if with_need and t >= n:
        track[n] = need_in
    return stop
