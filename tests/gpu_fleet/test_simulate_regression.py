"""The simulator's summaries, pinned: every built-in trace x every model of both reference
region stacks, with each model's deployed HPA and the start-up delay of the seed
(240 s node + 120 s image pull + the sizing's model load).

The pinned numbers were produced by the original one-second-at-a-time loop before the
event-driven rewrite; any change to the simulator that moves one of them is a change of
behaviour, not of speed. Regenerate deliberately with
``python tests/gpu_fleet/test_simulate_regression.py`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gpu_fleet.components.config import load_stack_file, pool_offering
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.simulate import traces
from gpu_fleet.simulate.controller import settings_from_spec
from gpu_fleet.simulate.report import summarize
from gpu_fleet.simulate.run import ControlLoop, simulate, utilization_target
from gpu_fleet.simulate.serving import ServingModel, StartupDelay, model_load_seconds, replica_capacity

REPO = Path(__file__).resolve().parents[2]
PINNED = Path(__file__).resolve().parent / "data" / "simulate_summaries.json"
STACKS = ("us-east", "eu-west")
#: The seed's start-up phases (node provisioning, image pull), fixed here so the pin
#: measures the engine, not a default.
NODE_SECONDS, PULL_SECONDS = 240, 120


def cases() -> list[tuple[str, str, str]]:
    out = []
    for stack in STACKS:
        cfg = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml")
        out += [(stack, m.name, trace) for m in cfg.models for trace in traces.BUILTIN]
    return out


def summary_of(stack: str, model_name: str, trace_name: str) -> dict:
    cfg = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml")
    model = next(m for m in cfg.models if m.name == model_name)
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    hpa = settings_from_spec(hpa_spec(model.autoscaling, f"vllm-{model.name}"))
    serving = ServingModel(replica_capacity(model, shape))
    loop = ControlLoop(StartupDelay(NODE_SECONDS, PULL_SECONDS, model_load_seconds(model, shape)))
    baseline = traces.DEFAULT_BASELINE_FRACTION * hpa.min_replicas * serving.rps_at(utilization_target(hpa))
    run = simulate(hpa, serving, traces.builtin_trace(trace_name, baseline), loop)
    return summarize(run, cfg.alerts.pending_requests_threshold, cfg.alerts.pending_requests_for_minutes).as_dict()


@pytest.mark.parametrize(("stack", "model", "trace"), cases())
def test_summary_is_unchanged(stack, model, trace):
    pinned = json.loads(PINNED.read_text())
    assert summary_of(stack, model, trace) == pinned[f"{stack}/{model}/{trace}"]


if __name__ == "__main__":
    PINNED.write_text(json.dumps({f"{s}/{m}/{t}": summary_of(s, m, t) for s, m, t in cases()}, indent=1) + "\n")
    print(f"wrote {PINNED}", file=sys.stderr)


def _timelines(run):
    tl, oracle = run.timeline, run.oracle
    return ([(e.t, e.before, e.after) for e in run.events], tl.ready.tolist(), tl.starting.tolist(),
            tl.desired.tolist(), tl.queue.tolist(), tl.utilization.tolist(), oracle.ready.tolist(), oracle.queue.tolist())


@pytest.mark.parametrize("autoscaling", [
    {},
    {"maxReplicas": 5, "gpuUtilizationTarget": 60},
    {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                  "scaleDown": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min",
                                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}}},
    {"behavior": {"scaleUp": {"tolerance": "0.02"}, "scaleDown": {"tolerance": "0.3"}}},
    {"behavior": None},  # the legacy path: every sync goes to the controller
])
@pytest.mark.parametrize("trace", ["spike", "diurnal"])
def test_skipping_quiet_syncs_changes_nothing(autoscaling, trace):
    """The compiled fast path against the controller deciding every sync, second for second."""
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    spec = hpa_spec(model.autoscaling, f"vllm-{model.name}")
    behavior = autoscaling.pop("behavior", spec["behavior"])
    spec = {**spec, **autoscaling}
    if behavior is None:
        spec.pop("behavior")
    else:
        spec["behavior"] = {d: {**spec["behavior"][d], **behavior.get(d, {})} for d in ("scaleUp", "scaleDown")}
    hpa = settings_from_spec(spec, configurable_tolerance=True)
    serving = ServingModel(replica_capacity(model, shape))
    loop = ControlLoop(StartupDelay(NODE_SECONDS, PULL_SECONDS, model_load_seconds(model, shape)))
    trace_ = traces.builtin_trace(trace, traces.DEFAULT_BASELINE_FRACTION * 2 * serving.rps_at(75))
    fast = simulate(hpa, serving, trace_, loop)
    reference = simulate(hpa, serving, trace_, loop, skip_quiet_syncs=False)
    assert _timelines(fast) == _timelines(reference)
    assert fast.events  # the case exercises the controller
