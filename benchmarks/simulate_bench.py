"""How fast ``gpu-fleet simulate`` runs: simulated hours per wall-clock second.

Replays the 24 h ``diurnal`` trace against us-east's first model with its deployed HPA
(the controller, the serving model, the oracle and the summary; no plot) and prints the
best of a few runs, in wall-clock and in CPU time (steadier on a shared machine). The
first run of a process may compile the numba kernels (cached afterwards); it is not
counted::

    .venv/bin/python benchmarks/simulate_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Measure the checkout this script is in, not whichever copy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_fleet.components.config import load_stack_file, pool_offering
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.simulate import traces
from gpu_fleet.simulate.controller import settings_from_spec
from gpu_fleet.simulate.report import summarize
from gpu_fleet.simulate.run import ControlLoop, simulate, utilization_target
from gpu_fleet.simulate.serving import StartupDelay, ServingModel, model_load_seconds, replica_capacity

STACK = Path(__file__).resolve().parents[1] / "stacks" / "Pulumi.us-east.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="runs; the best is reported (default 20)")
    args = parser.parse_args()

    cfg = load_stack_file(STACK)
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    hpa = settings_from_spec(hpa_spec(model.autoscaling, f"vllm-{model.name}"))
    serving = ServingModel(replica_capacity(model, shape))
    loop = ControlLoop(StartupDelay(240, 120, model_load_seconds(model, shape)))
    trace = traces.builtin_trace("diurnal", traces.DEFAULT_BASELINE_FRACTION * hpa.min_replicas
                                 * serving.rps_at(utilization_target(hpa)))

    simulate(hpa, serving, trace, loop)  # load (or compile) the kernels
    best = best_cpu = float("inf")
    for _ in range(args.repeat):
        started, cpu = time.perf_counter(), time.process_time()
        summary = summarize(simulate(hpa, serving, trace, loop), cfg.alerts.pending_requests_threshold,
                            cfg.alerts.pending_requests_for_minutes)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    hours = trace.seconds / 3600
    print(f"diurnal trace, {hours:.0f} h simulated ({trace.seconds} one-second steps, HPA sync every "
          f"{loop.sync_period_seconds} s) for us-east/{model.name}, best of {args.repeat} runs: "
          f"{best * 1000:.1f} ms wall = {hours / best:,.0f} simulated hours per wall second; "
          f"{best_cpu * 1000:.1f} ms CPU = {hours / max(best_cpu, 1e-9):,.0f} per CPU second "
          f"({summary.scale_events} scale events, {summary.gpu_hours:.0f} GPU-hours)")


if __name__ == "__main__":
    main()
