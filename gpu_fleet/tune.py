"""``gpu-fleet tune``: search HPA settings for a model with the simulator.

``gpu-fleet tune STACK [--model M] [--trace T ...] [--max-queue-minutes X]
[--format table|json] [--plot FILE.png]``

Every setting of a grid inside the policy pack's bounds (targets, stabilisation windows,
scaling policies, min and max replicas, warm spare nodes) is simulated on each trace
with the stack's serving model and start-up delay (:mod:`gpu_fleet.simulate`). Two
numbers per setting, summed over the traces: GPU-hours, and minutes with the queue above
the alert threshold. The Pareto front of the two is printed; the recommendation is the
front's cheapest setting within ``--max-queue-minutes`` (default: the deployed HPA's own
queue minutes, so it never queues more than today), with its ratio to the oracle on each
trace. The oracle is the deployed HPA's (its ``[minReplicas, maxReplicas]`` and warm
nodes), the same for every setting, so a lower cap is not rewarded with a lower oracle.

The recommendation is checked against the mandatory policies of ``policies/rules.py``
(the real rules, on its HPA spec) and printed as ``--set`` flags for ``gpu-fleet
simulate`` and as the stack-file YAML to paste. Exit status: 0 ok, 2 config or usage
error, 1 any other failure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from gpu_fleet.components.config import AutoscalingConfig, ModelConfig, pool_offering
from gpu_fleet.components.contract import deployment_name
from gpu_fleet.components.hpa import hpa_spec

from . import engine, policy_check
from .exits import EXIT_OK
from .project import project_dir
from .simulate import serving, traces
from .simulate.cli import UsageError, _model, _resolve_stack, autoscaling_with, deployed_baseline_rps, exit_status
from .simulate.controller import settings_from_spec
from .simulate.report import summarize
from .simulate.run import ControlLoop, Run, simulate

#: The policies whose bounds the search respects, and the HPA type they check.
HPA_TYPE = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
#: Grid values inside those bounds (filtered by them at run time).
UTILIZATION_TARGETS = (70, 75, 80)
PENDING_TARGETS = (5, 10, 20, 40)
MAX_REPLICAS = (3, 4, 5, 6, 7, 8, 10, 12, 16, 20)
SCALE_UP_WINDOWS = (0, 60, 120)
SCALE_UP_POLICIES = ("Pods:1:60", "Pods:2:60", "Pods:4:60", "Percent:100:60")
SCALE_DOWN_WINDOWS = (300, 600)
SCALE_DOWN_POLICIES = ("Pods:1:120", "Percent:50:60")
EXTRA_WARM_NODES = (0, 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("stack", nargs="?", metavar="STACK", help="region stack (default: the first in stacks/)")
    parser.add_argument("--model", metavar="NAME", help="model of the stack (default: the first)")
    parser.add_argument("--trace", metavar="NAME", action="append", choices=(*traces.BUILTIN, "all"),
                        help=f"built-in trace to tune on, repeatable: {', '.join(traces.BUILTIN)} or all (default: spike)")
    parser.add_argument("--max-queue-minutes", type=float, metavar="X",
                        help="most minutes above the queue alert threshold the recommendation may have, summed over "
                             "the traces (default: the deployed HPA's)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--plot", metavar="FILE.png", help="write the front and the deployed HPA's point as a PNG")


# --------------------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Bounds:
    """What the mandatory HPA policies allow, from their config schema defaults."""

    min_replicas: int
    max_up_window: int
    max_up_period: int
    min_down_window: int
    max_down_window: int
    min_gpu_target: float
    max_gpu_target: float


def _defaults(policies: list, name: str) -> dict[str, Any]:
    policy = next(p for p in policies if p.name == name)
    return {k: v["default"] for k, v in (policy.config_schema.properties if policy.config_schema else {}).items()}


def bounds(policies: list) -> Bounds:
    up = _defaults(policies, "hpa-scale-up-fast")
    down = _defaults(policies, "hpa-scale-down-slow")
    gpu = _defaults(policies, "hpa-gpu-utilization-target")
    return Bounds(_defaults(policies, "hpa-min-replicas")["minReplicas"], up["maxStabilizationWindowSeconds"],
                  up["maxPeriodSeconds"], down["minStabilizationWindowSeconds"], down["maxStabilizationWindowSeconds"],
                  gpu["minTarget"], gpu["maxTarget"])


def grid(b: Bounds, seed: AutoscalingConfig, default_warm: int) -> list[dict[str, str]]:
    """Every setting to try, as ``--set`` overrides (strings, as on the command line)."""
    out = []
    period_ok = [p for p in SCALE_UP_POLICIES if int(p.split(":")[2]) <= b.max_up_period]
    maxima = sorted({m for m in (*MAX_REPLICAS, seed.max_replicas) if b.min_replicas < m <= seed.max_replicas})
    for gpu, pending, top, up_w, up_p, down_w, down_p, extra in itertools.product(
            [t for t in UTILIZATION_TARGETS if b.min_gpu_target <= t <= b.max_gpu_target], PENDING_TARGETS, maxima,
            [w for w in SCALE_UP_WINDOWS if w <= b.max_up_window], period_ok,
            [w for w in SCALE_DOWN_WINDOWS if b.min_down_window <= w <= b.max_down_window], SCALE_DOWN_POLICIES,
            EXTRA_WARM_NODES):
        out.append({"minReplicas": str(b.min_replicas), "maxReplicas": str(top), "gpuUtilizationTarget": str(gpu),
                    "pendingRequestsTarget": str(pending), "scaleUp.stabilizationWindowSeconds": str(up_w),
                    "scaleUp.policies": up_p, "scaleDown.stabilizationWindowSeconds": str(down_w),
                    "scaleDown.policies": down_p, "warmNodes": str(default_warm + extra)})
    return out


def overrides_of(autoscaling: AutoscalingConfig, warm_nodes: int) -> dict[str, str]:
    """A config as the ``--set`` overrides that produce it."""
    def policies(rules: Any) -> str:
        return ",".join(f"{p.type}:{p.value}:{p.period_seconds}" for p in rules.policies)
    a = autoscaling
    return {"minReplicas": str(a.min_replicas), "maxReplicas": str(a.max_replicas),
            "gpuUtilizationTarget": str(a.gpu_utilization_target), "pendingRequestsTarget": str(a.pending_requests_target),
            "scaleUp.stabilizationWindowSeconds": str(a.scale_up.stabilization_window_seconds),
            "scaleUp.policies": policies(a.scale_up),
            "scaleDown.stabilizationWindowSeconds": str(a.scale_down.stabilization_window_seconds),
            "scaleDown.policies": policies(a.scale_down), "warmNodes": str(warm_nodes)}


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Context:
    """Everything a worker needs to score a setting (inherited by forked workers)."""

    model: ModelConfig
    serving: serving.ServingModel
    startup: serving.StartupDelay
    replicas_per_node: int
    traces: tuple[traces.Trace, ...]
    references: tuple[Run, ...]
    threshold: int
    for_minutes: int


_CONTEXT: Optional[Context] = None


def score(overrides: dict[str, str], ctx: Optional[Context] = None) -> tuple[float, float, tuple[tuple[float, float, float], ...]]:
    """``(GPU-hours, queue minutes, per trace (GPU-hours, oracle GPU-hours, queue minutes))``."""
    ctx = ctx or _CONTEXT
    assert ctx is not None
    autoscaling = autoscaling_with(ctx.model.autoscaling, overrides)
    hpa = settings_from_spec(hpa_spec(autoscaling, deployment_name(ctx.model.name)))
    loop = ControlLoop(ctx.startup, warm_replicas=int(overrides["warmNodes"]) * ctx.replicas_per_node)
    per_trace = []
    for trace, reference in zip(ctx.traces, ctx.references):
        s = summarize(simulate(hpa, ctx.serving, trace, loop, reference=reference), ctx.threshold, ctx.for_minutes)
        per_trace.append((s.gpu_hours, s.oracle_gpu_hours, s.queue_above_threshold_minutes))
    return sum(p[0] for p in per_trace), sum(p[2] for p in per_trace), tuple(per_trace)


def _score_all(settings: list[dict[str, str]], ctx: Context) -> list:
    global _CONTEXT
    _CONTEXT = ctx
    workers = min(len(settings), os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [score(s) for s in settings]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(score, settings, chunksize=max(1, len(settings) // (workers * 8)))


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both numbers (lower is better), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_queue = [], float("inf")
    for i in order:
        if points[i][1] < best_queue:
            front.append(i)
            best_queue = points[i][1]
    return front


def hpa_violations(spec: dict, project: Path) -> list[str]:
    """The mandatory policy violations of an HPA with ``spec`` (the real pack, one resource)."""
    recording = engine.Recording(stack="tune")
    recording.resources.append(engine.ResourceRecord(
        urn=f"urn:pulumi:tune::gpu-fleet::{HPA_TYPE}::tuned", type=HPA_TYPE, name="tuned", custom=True, parent="",
        provider="", inputs={"metadata": {"name": "tuned"}, "spec": spec}, outputs={}))
    return [f"{v.policy}: {v.message}" for v in policy_check.evaluate(recording, policy_check.load_policies(project))
            if v.mandatory]


def stack_yaml(model: ModelConfig, overrides: dict[str, str], pool: str, warm_nodes: int, default_warm: int) -> str:
    """The model's ``autoscaling`` block as it goes in the stack file."""
    a = autoscaling_with(model.autoscaling, overrides)
    block = {"autoscaling": a.model_dump(by_alias=True, exclude={"preset"})}
    text = f"# models[name={model.name}]\n" + yaml.safe_dump(block, sort_keys=False)
    if warm_nodes > default_warm:
        text += (f"# and {warm_nodes - default_warm} more warm GPU node(s): raise gpuPools[name={pool}].minNodes "
                 f"by {warm_nodes - default_warm}\n")
    return text


# --------------------------------------------------------------------------- main


def _trace_names(given: Optional[list[str]]) -> list[str]:
    if not given:
        return ["spike"]
    if "all" in given:
        return list(traces.BUILTIN)
    return list(dict.fromkeys(given))


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    stack, cfg, path = _resolve_stack(args.stack)
    model = _model(cfg, path, args.model)
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    shape = pool_offering(cfg, pool).shape
    project = project_dir(Path.cwd())
    b = bounds(policy_check.load_policies(project))

    capacity = serving.replica_capacity(model, shape)
    model_serving = serving.ServingModel(capacity)
    startup = serving.StartupDelay(serving.node_provision_seconds(cfg.cloud), serving.DEFAULT_IMAGE_PULL_SECONDS,
                                   serving.model_load_seconds(model, shape))
    per_node = serving.replicas_per_node(shape, capacity.gpus)
    default_warm = serving.default_warm_nodes(cfg, pool, shape)
    deployed = settings_from_spec(hpa_spec(model.autoscaling, deployment_name(model.name)))
    baseline = deployed_baseline_rps(model, model_serving)
    names = _trace_names(args.trace)
    trace_list = tuple(traces.builtin_trace(n, baseline) for n in names)
    seed_loop = ControlLoop(startup, warm_replicas=default_warm * per_node)
    references = tuple(simulate(deployed, model_serving, t, seed_loop) for t in trace_list)
    ctx = Context(model, model_serving, startup, per_node, trace_list, references,
                  cfg.alerts.pending_requests_threshold, cfg.alerts.pending_requests_for_minutes)

    seed_overrides = overrides_of(model.autoscaling, default_warm)
    seed = score(seed_overrides, ctx)
    settings = grid(b, model.autoscaling, default_warm)
    results = _score_all(settings, ctx)
    points = [(r[0], r[1]) for r in results]
    front = pareto(points)
    limit = args.max_queue_minutes if args.max_queue_minutes is not None else seed[1]
    allowed = [i for i in front if points[i][1] <= limit + 1e-9]
    if not allowed:
        raise UsageError(f"--max-queue-minutes {limit:g}: no setting queues that little (least: "
                         f"{min(p[1] for p in points):.1f} min)")
    best = allowed[0]
    chosen = settings[best]
    spec = hpa_spec(autoscaling_with(model.autoscaling, chosen), deployment_name(model.name))
    violations = hpa_violations(spec, project)
    elapsed = time.perf_counter() - started

    def trace_rows(result: tuple) -> dict[str, dict[str, float]]:
        return {n: {"gpuHours": round(g, 3), "oracleGpuHours": round(o, 3), "oracleRatio": round(g / o, 3),
                    "queueAboveThresholdMinutes": round(q, 3)} for n, (g, o, q) in zip(names, result[2])}

    def entry(overrides: dict[str, str], result: tuple) -> dict[str, Any]:
        return {"settings": overrides, "gpuHours": round(result[0], 3), "queueAboveThresholdMinutes": round(result[1], 3),
                "traces": trace_rows(result)}

    warm = int(chosen["warmNodes"])
    recommended = {**entry(chosen, results[best]),
                   "setFlags": [f"--set {k}={v}" for k, v in chosen.items()],
                   "stackYaml": stack_yaml(model, chosen, pool.name, warm, default_warm),
                   "mandatoryPolicyViolations": violations}
    if args.plot:
        _plot(points, front, seed, best, Path(args.plot), f"{stack} / {model.name} on {', '.join(names)}")
    if args.format == "json":
        print(json.dumps({
            "stack": stack, "model": model.name, "traces": names, "evaluated": len(settings),
            "seconds": round(elapsed, 2), "maxQueueMinutes": limit,
            "deployed": entry(seed_overrides, seed),
            "front": [entry(settings[i], results[i]) for i in front],
            "recommended": recommended, **({"plot": args.plot} if args.plot else {}),
        }, indent=2))
        return EXIT_OK
    lines = [f"tune {stack} / {model.name} on {', '.join(names)}: {len(settings):,} settings in {elapsed:.1f} s "
             f"(start-up {startup.total_seconds} s; queue alert > {ctx.threshold} pending)",
             f"  deployed HPA: {seed[0]:.1f} GPU-hours, {seed[1]:.1f} min above the queue threshold; "
             + ", ".join(f"{n} {g / o:.2f}x oracle" for n, (g, o, _) in zip(names, seed[2])),
             "", "Pareto front (GPU-hours against minutes above the queue threshold):",
             f"  {'GPU-h':>8} {'queue min':>9}  setting"]
    for i in front:
        s = settings[i]
        lines.append(f"  {points[i][0]:8.1f} {points[i][1]:9.1f}  max {s['maxReplicas']}, gpu {s['gpuUtilizationTarget']} %, "
                     f"pending {s['pendingRequestsTarget']}, up {s['scaleUp.stabilizationWindowSeconds']} s "
                     f"{s['scaleUp.policies']}, down {s['scaleDown.stabilizationWindowSeconds']} s "
                     f"{s['scaleDown.policies']}, warm nodes {s['warmNodes']}" + ("   <- recommended" if i == best else ""))
    lines += ["", f"recommended (cheapest within {limit:.1f} queue minutes): "
              + ", ".join(f"{n} {r['oracleRatio']:.2f}x oracle" for n, r in recommended["traces"].items()),
              "  mandatory policies: " + ("pass" if not violations else "; ".join(violations)),
              "  as flags:  gpu-fleet simulate " + stack + f" --model {model.name} " + " ".join(recommended["setFlags"]),
              "  in the stack file:", *("    " + line for line in recommended["stackYaml"].splitlines())]
    if args.plot:
        lines.append(f"\nplot written to {args.plot}")
    print("\n".join(lines))
    return EXIT_OK


def _plot(points: list[tuple[float, float]], front: list[int], seed: tuple, best: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=4, color="lightgray", label="settings tried")
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "o-", color="tab:blue", label="Pareto front")
    ax.scatter([seed[0]], [seed[1]], marker="*", s=200, color="tab:red", label="deployed HPA (seed)", zorder=5)
    ax.scatter([points[best][0]], [points[best][1]], marker="D", s=80, color="tab:green", label="recommended", zorder=5)
    ax.set_xlabel("GPU-hours (sum over traces)")
    ax.set_ylabel("minutes above the queue alert threshold")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    """Run ``gpu-fleet tune``; the exit status."""
    return exit_status("tune", _run, args)
