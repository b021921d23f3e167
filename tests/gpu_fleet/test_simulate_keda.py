"""KEDA's scale to zero in the simulator, and the compiled controller path against the Python port."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpu_fleet.components.config import load_stack_file, pool_offering
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet import cli
from gpu_fleet.simulate import traces
from gpu_fleet.simulate.cli import hpa_settings, scale_to_zero
from gpu_fleet.simulate.controller import settings_from_spec
from gpu_fleet.simulate.report import cold_start_waits, summarize
from gpu_fleet.simulate.run import ControlLoop, ScaleToZero, simulate
from gpu_fleet.simulate.serving import ServingModel, StartupDelay, model_load_seconds, replica_capacity

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "scale-to-zero" / "stacks" / "Pulumi.dev.yaml"


def _example(zero_override=None, trace_name="idle", **trace_params):
    cfg = load_stack_file(EXAMPLE)
    model = cfg.models[0]
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    shape = pool_offering(cfg, pool).shape
    hpa = hpa_settings(model.autoscaling, model.name)
    zero = zero_override or scale_to_zero(model, model.autoscaling, pool, shape)
    serving = ServingModel(replica_capacity(model, shape))
    loop = ControlLoop(StartupDelay(240, 120, model_load_seconds(model, shape)), scale_to_zero=zero)
    trace = traces.builtin_trace(trace_name, 5.0, trace_params)
    return cfg, simulate(hpa, serving, trace, loop), zero


def test_the_example_model_scales_to_zero_when_idle_and_back_with_a_cold_start():
    cfg, run, zero = _example()
    assert run.hpa.min_replicas == 1  # the HPA KEDA creates takes 1..N
    tl = run.timeline
    # First idle stretch: 3600..10800; KEDA removes the last pod after the cooldown.
    idle = slice(3600 + zero.idle_seconds + 120, 10800)
    assert (tl.desired[idle] == 0).all() and (tl.ready[idle] == 0).all() and (tl.starting[idle] == 0).all()
    assert (tl.desired[3600:3600 + zero.idle_seconds] >= 1).all()  # not before the cooldown
    # The load returns at 10800: the first request waits for the cold start (plus the metric lag and a poll).
    summary = summarize(run, cfg.alerts.pending_requests_threshold, cfg.alerts.pending_requests_for_minutes)
    assert summary.cold_starts == 1
    assert zero.cold_start_seconds <= summary.cold_start_max_wait_seconds <= zero.cold_start_seconds + 30 + 15
    assert summary.cold_start_total_wait_seconds == summary.cold_start_max_wait_seconds
    assert tl.ready[10800 + summary.cold_start_max_wait_seconds] >= 1
    assert summary.final_replicas == 0
    assert summary.as_dict()["coldStarts"] == 1


def test_cold_start_is_the_plans_node_pull_and_startup_budget():
    cfg = load_stack_file(EXAMPLE)
    model = cfg.models[0]
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    zero = scale_to_zero(model, model.autoscaling, pool, pool_offering(cfg, pool).shape)
    # The plan's figure for this model (README: 900 + 600 + 445).
    assert zero.cold_start_seconds == 1945
    assert scale_to_zero(cfg.models[1], cfg.models[1].autoscaling, pool, pool_offering(cfg, pool).shape) is None


def test_activation_is_strictly_above_the_threshold():
    # A threshold no load reaches: the model never wakes once at zero.
    _, base, zero = _example()
    high = ScaleToZero(zero.idle_seconds, 100.0 * 4, 1e9, zero.cold_start_seconds)
    _, run, _ = _example(high)
    assert (run.timeline.ready[10800:] == 0).all()
    assert (base.timeline.ready[10800:] > 0).any()


def test_cold_start_waits_measure_from_the_first_arrival():
    ready = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0])
    load = np.array([1.0, 0, 0, 2, 2, 2, 0, 0, 0])
    assert cold_start_waits(ready, load) == [2]  # arrivals at 3, ready at 5; the tail has no arrival
    assert cold_start_waits(np.array([0, 0, 0]), np.array([0.0, 1, 1])) == [2]  # still waiting at the end


def test_hpa_models_have_no_cold_start_fields():
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    hpa = settings_from_spec(hpa_spec(model.autoscaling, f"vllm-{model.name}"))
    serving = ServingModel(replica_capacity(model, shape))
    run = simulate(hpa, serving, traces.builtin_trace("spike", 20.0),
                   ControlLoop(StartupDelay(240, 120, model_load_seconds(model, shape))))
    d = summarize(run, 20, 2).as_dict()
    assert not any(k.startswith("coldStart") for k in d)


def test_simulate_cli_on_the_example_stack_reports_the_cold_start(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert cli.main(["simulate", "--config", str(EXAMPLE.relative_to(REPO))]) == 0
    out = capsys.readouterr().out
    assert "/ idle:" in out and "cold starts (from zero)  1: first request waited max" in out
    assert cli.main(["simulate", "--config", str(EXAMPLE), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["settings"]["scaleToZero"]["coldStartSeconds"] == 1945
    assert doc["summary"]["coldStarts"] == 1 and doc["summary"]["coldStartMaxWaitSeconds"] >= 1945
    assert cli.main(["simulate", "us-east", "--config", str(EXAMPLE)]) == 2


# --------------------------------------------------------------------------- the compiled controller path


@pytest.mark.parametrize("behavior", [
    # Scale-down policies with a longer period than scale-up's: upstream reuses outdated event slots.
    {"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]},
     "scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                   "policies": [{"type": "Percent", "value": 50, "periodSeconds": 300},
                                {"type": "Pods", "value": 1, "periodSeconds": 30}]}},
    {"scaleUp": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min",
                 "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60},
                              {"type": "Pods", "value": 3, "periodSeconds": 45}]},
     "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Disabled"}},
    {"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 10, "periodSeconds": 15}]},
     "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 10, "periodSeconds": 15}]}},
])
@pytest.mark.parametrize("trace", ["spike", "ramp", "failover"])
def test_compiled_decisions_equal_the_python_controller(behavior, trace):
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    spec = {**hpa_spec(model.autoscaling, f"vllm-{model.name}"), "behavior": behavior, "maxReplicas": 12}
    hpa = settings_from_spec(spec)
    serving = ServingModel(replica_capacity(model, shape))
    loop = ControlLoop(StartupDelay(240, 120, model_load_seconds(model, shape)), warm_replicas=2)
    t = traces.builtin_trace(trace, 0.7 * 2 * serving.rps_at(75), {"noise": 0.2})
    fast, reference = simulate(hpa, serving, t, loop), simulate(hpa, serving, t, loop, skip_quiet_syncs=False)
    assert [(e.t, e.before, e.after) for e in fast.events] == [(e.t, e.before, e.after) for e in reference.events]
    assert len(fast.events) >= 2
    for a, b in zip((fast.timeline.ready, fast.timeline.starting, fast.timeline.desired, fast.timeline.queue),
                    (reference.timeline.ready, reference.timeline.starting, reference.timeline.desired,
                     reference.timeline.queue)):
        assert np.array_equal(a, b)
