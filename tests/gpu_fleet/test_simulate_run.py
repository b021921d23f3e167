"""Serving model, traces, the simulation loop, the oracle and the summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gpu_fleet.components.config import AutoscalingConfig, load_stack_file, pool_offering
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.components.sizing import size_model
from gpu_fleet.simulate import traces
from gpu_fleet.simulate.controller import settings_from_spec
from gpu_fleet.simulate.kernels import tally
from gpu_fleet.simulate.report import reversals, summarize
from gpu_fleet.simulate.run import ControlLoop, ScaleEvent, needed_replicas, oracle_plan, simulate
from gpu_fleet.simulate.serving import (
    Deployment,
    ReplicaCapacity,
    ServingModel,
    StartupDelay,
    max_num_seqs,
    model_load_seconds,
    replica_capacity,
)

REPO = Path(__file__).resolve().parents[2]
#: 100 sequences, 10 req/s when full: 10 s mean latency, 4 GPUs.
CAP = ReplicaCapacity(100, 10, 4)
LINEAR = ServingModel(CAP, utilization_curve=0)


def _hpa(**autoscaling):
    return settings_from_spec(hpa_spec(AutoscalingConfig(**autoscaling), "vllm-test"))


def _loop(startup: int = 60, lag: int = 0) -> ControlLoop:
    return ControlLoop(StartupDelay(0, 0, startup), metrics_lag_seconds=lag)


# --------------------------------------------------------------------------- serving


def test_capacity_is_derived_from_the_kv_cache_and_latency():
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    sizing = size_model(model, shape)
    cap = replica_capacity(model, shape)
    assert cap.concurrency == sizing.kv_cache_tokens // 1500
    assert cap.throughput_rps == pytest.approx(cap.concurrency / 15)
    assert cap.gpus == model.tensor_parallel_size == 4
    assert replica_capacity(model, shape, avg_tokens_per_request=3000).concurrency == sizing.kv_cache_tokens // 3000
    given = replica_capacity(model, shape, concurrency=64, throughput_rps=8, gpus=8)
    assert (given.concurrency, given.throughput_rps, given.gpus, given.mean_latency_seconds) == (64, 8, 8, 8)
    capped = model.model_copy(update={"extra_args": ["--max_num_seqs=128"]})
    assert max_num_seqs(capped) == 128 and replica_capacity(capped, shape).concurrency == 128
    assert model_load_seconds(model, shape) == math.ceil(sizing.load_seconds_estimate)


def test_utilization_saturates_and_inverts():
    curved = ServingModel(CAP, utilization_curve=1.0)
    assert curved.utilization(0) == 0 and curved.utilization(1) == pytest.approx(100) and curved.utilization(2) == pytest.approx(100)
    assert curved.utilization(0.5) > 50  # concave: GPU time fills faster than the batch
    assert [curved.utilization(x / 10) for x in range(11)] == sorted(curved.utilization(x / 10) for x in range(11))
    assert LINEAR.utilization(0.5) == 50
    for model in (curved, LINEAR):
        assert model.utilization(model.occupancy_at(75)) == pytest.approx(75)
    # 7.5 req/s per replica at 75 % on the linear curve: 30 req/s needs exactly 4.
    assert LINEAR.rps_at(75) == pytest.approx(7.5)
    assert [LINEAR.replicas_for_load(r, 75) for r in (0, 7.5, 30, 30.01)] == [0, 1, 4, 5]


def test_steady_load_under_capacity_runs_little_s_law_and_queues_nothing():
    d = Deployment(LINEAR)
    d.settle(15, ready=3)
    for _ in range(100):
        running, waiting, util = d.step(15, ready=3)
    assert running == pytest.approx(150) and waiting == 0 and util == pytest.approx(50)


def test_more_load_more_queue():
    def queue_after(rps: float) -> float:
        d = Deployment(LINEAR)
        d.settle(10, ready=2)
        return [d.step(rps, ready=2)[1] for _ in range(120)][-1]

    queues = [queue_after(r) for r in (10, 20, 30, 40)]
    assert queues[0] == 0 and queues[1] == pytest.approx(0, abs=1)  # 20 req/s is exactly full
    assert queues[1] < queues[2] < queues[3]
    # Overloaded, the queue grows by the excess: (40 - 2 x 10) req/s over the last minute.
    d = Deployment(LINEAR)
    d.settle(10, ready=2)
    series = [d.step(40, ready=2)[1] for _ in range(300)]
    assert series[-1] - series[-61] == pytest.approx(60 * 20, rel=0.01)


def test_no_ready_replica_serves_nothing():
    d = Deployment(LINEAR)
    assert d.step(5, ready=0) == (0, 5, 0)


# --------------------------------------------------------------------------- traces


def test_spike_rises_five_fold_within_a_minute_holds_and_returns():
    t = traces.builtin_trace("spike", 10)
    assert t.rps[:600].tolist() == [10] * 600
    assert t.rps[659] == pytest.approx(50) and max(t.rps) == pytest.approx(50)
    assert all(v == pytest.approx(50) for v in t.rps[660:660 + 30 * 60])
    assert t.rps[-1] == 10 and t.step == traces.Step(600, 50)
    assert traces.builtin_trace("spike", 10, {"spikeFactor": 3, "spikeHoldMinutes": 5}).rps[700] == pytest.approx(30)


def test_diurnal_is_a_day_from_night_trough_to_afternoon_peak():
    t = traces.builtin_trace("diurnal", 10)
    assert t.seconds == 86400 and t.step is None
    assert min(t.rps) == pytest.approx(10) and int(t.rps.argmin()) == 4 * 3600
    assert max(t.rps) == pytest.approx(30) and int(t.rps.argmax()) == 16 * 3600


def test_ramp_climbs_slowly():
    t = traces.builtin_trace("ramp", 10)
    assert list(t.rps) == sorted(t.rps)
    assert t.rps[-1] == pytest.approx(40)
    assert max(b - a for a, b in zip(t.rps, t.rps[1:])) < 0.01  # 30 rps over two hours


def test_failover_doubles_at_once():
    t = traces.builtin_trace("failover", 10)
    assert (t.rps[599], t.rps[600], t.rps[600 + 3599], t.rps[600 + 3600]) == (10, 20, 20, 10)
    assert t.step == traces.Step(600, 20)


def test_noise_is_seeded_and_trace_parameters_are_checked():
    a = traces.builtin_trace("spike", 10, {"noise": 0.1})
    assert a == traces.builtin_trace("spike", 10, {"noise": 0.1})
    assert a != traces.builtin_trace("spike", 10, {"noise": 0.1, "seed": 1})
    assert a.rps.tolist() != traces.builtin_trace("spike", 10).rps.tolist()
    with pytest.raises(traces.TraceError, match="rampFactor does not apply to the spike trace"):
        traces.builtin_trace("spike", 10, {"rampFactor": 2})
    with pytest.raises(traces.TraceError, match="unknown trace 'weekly'"):
        traces.builtin_trace("weekly", 10)


def test_csv_trace_is_interpolated_per_second(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("# my trace\nseconds,requests_per_second\n0,10\n\n4,30\n6,30\n")
    t = traces.csv_trace(f)
    assert t.rps.tolist() == [10, 15, 20, 25, 30, 30, 30]


@pytest.mark.parametrize(("text", "error"), [
    ("0,10\n5,x\n", "t.csv:2: not numbers"),
    ("0,10\n5,1,2\n", "t.csv:2: expected 'seconds,requests_per_second'"),
    ("0,10\n5,10\n5,20\n", "t.csv:3: seconds must increase, 5 follows 5"),
    ("0,10\n5,-1\n", "t.csv:2: requests_per_second must be a number from 0 to 1e+07"),
    ("0,10\n2.5,1\n", "t.csv:2: seconds must be a whole number"),
    ("3,10\n", "t.csv:1: the first row must be at second 0"),
    ("# nothing\n", "t.csv: no rows"),
    ("0,nan\n", "t.csv:1: requests_per_second must be a number from 0 to 1e+07"),
    # Huge but finite loads overflowed the replica arithmetic (OverflowError, exit 1).
    ("0,10\n60,1e308\n", "t.csv:2: requests_per_second must be a number from 0 to 1e+07"),
    ("0,2e7\n", "t.csv:1: requests_per_second must be a number from 0 to 1e+07"),
])
def test_csv_errors_name_the_file_and_line(tmp_path, text, error):
    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(traces.TraceError) as e:
        traces.csv_trace(f)
    assert error in str(e.value) and str(tmp_path) in str(e.value)


def test_missing_csv(tmp_path):
    with pytest.raises(traces.TraceError, match="cannot read"):
        traces.csv_trace(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- oracle


def test_oracle_starts_replicas_a_startup_delay_early_and_bridges_short_gaps():
    needed = [1] * 10 + [3] * 5 + [1] * 3 + [3] * 5 + [1] * 20 + [2] * 3 + [1] * 4
    ready, starting = (a.tolist() for a in oracle_plan(needed, startup_seconds=4))
    # Layers 2 and 3 run from 10, idle through the 3-second gap (3 <= 4), stop at 23.
    assert ready[:10] == [1] * 10 and ready[10:23] == [3] * 13 and ready[23:43] == [1] * 20
    assert starting[6:10] == [2] * 4 and starting[:6] == [0] * 6
    # Layer 2 again at 43: started at 39, ready for 3 s.
    assert starting[39:43] == [1] * 4 and ready[43:46] == [2] * 3 and ready[46:] == [1] * 4
    assert all(r >= n for r, n in zip(ready, needed))


def test_oracle_need_follows_requests_in_flight():
    # 10 s latency: after the load drops, the in-flight requests take a while to finish.
    need = needed_replicas(LINEAR, [30.0] * 5 + [7.5] * 300, 75).tolist()
    assert need[0] == 4 and need[-1] == 1
    assert need[5] > 1 and need.index(1) > 5


# --------------------------------------------------------------------------- the loop and summary


def test_constant_load_needing_four_replicas_converges_to_four():
    hpa = _hpa(min_replicas=1, max_replicas=10)
    trace = traces.Trace("constant", (30.0,) * 7200, "30 rps")
    run = simulate(hpa, LINEAR, trace, _loop())
    summary = summarize(run, queue_threshold=20, alert_for_minutes=2)
    assert run.timeline.desired[-1] == run.timeline.ready[-1] == 4
    assert run.timeline.utilization[-1] == pytest.approx(75)
    assert set(run.needed) == {4}
    # The oracle runs 4 replicas from the start: 2 h x 4 replicas x 4 GPUs.
    assert summary.oracle_gpu_hours == pytest.approx(32)
    assert summary.oracle_gpu_hours <= summary.gpu_hours
    assert summary.gpu_hours == pytest.approx(sum(r + s for r, s in zip(run.timeline.ready, run.timeline.starting)) * 4 / 3600)
    assert summary.oracle_queue_above_threshold_minutes == 0
    assert summary.queue_above_threshold_minutes > 0  # it started on one replica
    assert summary.scale_events == len(run.events) == summary.scale_ups + summary.scale_downs


def test_a_deployment_at_rest_does_not_move():
    run = simulate(_hpa(), LINEAR, traces.builtin_trace("spike", 5, {"spikeFactor": 1.0}), _loop())
    assert run.events == [] and max(run.timeline.queue) == 0
    assert set(run.timeline.ready) == {2}


def test_spike_reaction_time_is_bounded_by_the_startup_delay_and_lag():
    hpa = _hpa()  # the seed's HPA
    run = simulate(hpa, LINEAR, traces.builtin_trace("spike", 7.5), _loop(startup=300, lag=30))
    s = summarize(run, 20, 2)
    assert s.step_at_seconds == 600 and s.replicas_needed_after_step == 5
    first_up = next(e for e in run.events if e.after > e.before)
    # The lagged metric, then the 60 s up window: no scale-up in the first minute.
    assert first_up.t >= 600 + 60
    assert s.seconds_to_enough_ready >= first_up.t - 600 + 300
    assert run.timeline.ready[600 + s.seconds_to_enough_ready] >= 5 > run.timeline.ready[600 + s.seconds_to_enough_ready - 1]
    assert s.alert_firing_minutes < s.queue_above_threshold_minutes


def test_too_small_a_maximum_never_has_enough():
    run = simulate(_hpa(max_replicas=3), LINEAR, traces.builtin_trace("failover", 20), _loop())
    s = summarize(run, 20, 2)
    assert s.replicas_needed_after_step == 6 and s.seconds_to_enough_ready is None
    assert s.peak_ready_replicas == 3


def test_scale_down_removes_starting_pods_first():
    # A short overload makes the HPA start pods that are not needed any more once the
    # queue is gone: the scale-down takes them before any ready pod.
    hpa = settings_from_spec(hpa_spec(AutoscalingConfig(
        scale_up={"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
        scale_down={"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
    ), "vllm-test"))
    trace = traces.Trace("blip", (10.0,) * 60 + (40.0,) * 30 + (5.0,) * 600, "blip")
    run = simulate(hpa, LINEAR, trace, _loop(startup=600))
    downs = [e for e in run.events if e.after < e.before]
    assert downs
    t = downs[0].t
    assert run.timeline.ready[t] == run.timeline.ready[t - 1] == 2
    assert run.timeline.starting[t] < run.timeline.starting[t - 1]


def test_reversals_and_alert_firing():
    events = [ScaleEvent(0, 2, 4), ScaleEvent(300, 4, 3), ScaleEvent(1000, 3, 2), ScaleEvent(1200, 2, 4)]
    assert reversals(events) == 2  # up->down after 300 s, down->up after 200 s
    queue = np.array([30.0] * 130 + [0.0] + [30.0] * 50)
    ready, starting = np.full(len(queue), 2), np.r_[np.ones(100, np.int64), np.zeros(len(queue) - 100, np.int64)]
    # replica-seconds, peak ready, seconds above, seconds firing, peak queue
    assert tally(ready, starting, queue, 20, 120) == (2 * len(queue) + 100, 2, 180, 10, 30.0)


# --------------------------------------------------------------------------- warm spare nodes


def test_warm_nodes_default_to_the_pool_minimum_left_after_min_replicas():
    from gpu_fleet.simulate.serving import default_warm_nodes, node_provision_seconds, replicas_per_node
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    h100 = next(p for p in cfg.gpu_pools if p.name == "h100")
    shape = pool_offering(cfg, h100).shape
    # Two TP4 models at 2 replicas fill 16 GPUs = 2 nodes of 8; minNodes 1 leaves none warm.
    assert default_warm_nodes(cfg, h100, shape) == 0
    assert default_warm_nodes(cfg, h100.model_copy(update={"min_nodes": 4}), shape) == 2
    assert replicas_per_node(shape, 4) == 2 and replicas_per_node(shape, 3) == 2
    assert node_provision_seconds("aws") == node_provision_seconds("gcp") == 240


def test_replicas_on_warm_nodes_skip_node_provisioning():
    # The HPA adds a 3rd replica at 0 s and a 4th at 15 s; one fits on a warm node.
    hpa = _hpa(minReplicas=2, maxReplicas=4, scaleUp={"stabilizationWindowSeconds": 0,
                                                      "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]})
    trace = traces.Trace("step", (30.0,) * 1800, "30 rps")
    cold = simulate(hpa, LINEAR, trace, ControlLoop(StartupDelay(100, 0, 60), metrics_lag_seconds=0))
    warm = simulate(hpa, LINEAR, trace, ControlLoop(StartupDelay(100, 0, 60), metrics_lag_seconds=0, warm_replicas=1))
    assert [(e.t, e.after) for e in cold.events] == [(e.t, e.after) for e in warm.events] == [(0, 3), (15, 4)]
    # Cold: both wait for a node (100 s) and the load (60 s).
    assert (cold.timeline.ready[159], cold.timeline.ready[160], cold.timeline.ready[175]) == (2, 3, 4)
    # Warm: the 3rd skips the node; the 4th, beyond the warm node, does not.
    assert (warm.timeline.ready[59], warm.timeline.ready[60], warm.timeline.ready[174], warm.timeline.ready[175]) == (2, 3, 3, 4)
    assert warm.timeline.queue.sum() < cold.timeline.queue.sum()  # served sooner; the GPUs are held either way
    with pytest.raises(ValueError, match="warmNodes"):
        ControlLoop(StartupDelay(0, 0, 1), warm_replicas=-1)
