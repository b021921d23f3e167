"""``gpu-fleet simulate``: replay traffic against a stack's real HPA settings.

``gpu-fleet simulate [STACK] [--model NAME] [--trace NAME|FILE] [--plot FILE.png]
[--format table|json] [--set key=value ...]``

The HPA is the spec ``pulumi up`` deploys: the stack file is read with
:func:`gpu_fleet.components.config.load_stack_file` and the model's HPA built with
:func:`gpu_fleet.components.hpa.hpa_spec`; ``--set`` changes the config the same way a stack file
edit would, then the controller reads the resulting spec. Exit status: 0 ok, 2 config or
usage error, 1 any other failure.
"""

from __future__ import annotations

import argparse
import difflib
import math
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import ValidationError

from gpu_fleet.components.config import (
    AutoscalingConfig,
    ConfigError,
    GpuPoolConfig,
    ModelConfig,
    RegionConfig,
    load_stack_file,
    pool_offering,
)
from gpu_fleet.components.contract import deployment_name
from gpu_fleet.components.gpu_catalog import GpuShape
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet.components.keda import POLLING_INTERVAL_SECONDS
from gpu_fleet.components.sizing import cold_start, size_model

from ..project import project_dir, stack_files
from ..exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, one_line
from . import report, serving, traces
from .controller import (
    DEFAULT_SYNC_PERIOD_SECONDS,
    DEFAULT_TOLERANCE,
    KUBERNETES_RELEASE,
    HpaSettings,
    ScalingRules,
    SpecError,
    settings_from_spec,
)
from .run import DEFAULT_METRICS_LAG_SECONDS, ControlLoop, ScaleToZero, simulate, utilization_target


#: ``--set`` keys that edit the model's ``autoscaling`` config (stack file names).
AUTOSCALING_KEYS = (
    "preset", "minReplicas", "maxReplicas", "gpuUtilizationTarget", "pendingRequestsTarget",
    *(f"{d}.{f}" for d in ("scaleUp", "scaleDown") for f in ("stabilizationWindowSeconds", "selectPolicy", "policies")),
)

#: Every other ``--set`` key: its type and what it sets (default in brackets).
SIM_KEYS: dict[str, tuple[type, str]] = {
    "tolerance": (float, f"controller tolerance [{DEFAULT_TOLERANCE}]"),
    "syncPeriodSeconds": (int, f"HPA sync period [{DEFAULT_SYNC_PERIOD_SECONDS}]"),
    "metricsLagSeconds": (int, f"age of the metrics the HPA reads [{DEFAULT_METRICS_LAG_SECONDS}]"),
    "concurrency": (float, "sequences per replica [KV-cache tokens / avgTokensPerRequest]"),
    "throughputRps": (float, "requests/s of a full replica [concurrency / meanLatencySeconds]"),
    "avgTokensPerRequest": (int, f"prompt + output tokens [{serving.DEFAULT_AVG_TOKENS_PER_REQUEST}]"),
    "meanLatencySeconds": (float, f"mean request latency [{serving.DEFAULT_MEAN_LATENCY_SECONDS:g}]"),
    "gpuUtilizationCurve": (float, f"saturation of GPU utilisation, 0 = linear [{serving.DEFAULT_UTILIZATION_CURVE:g}]"),
    "gpusPerReplica": (int, "GPUs per replica [tensorParallelSize]"),
    "nodeProvisionSeconds": (int, "new GPU node [per cloud and provisioner: "
                                  + ", ".join(f"{c}/{p} {s} s" for (c, p), s in serving.NODE_PROVISION_SECONDS.items()) + "]"),
    "warmNodes": (int, "warm spare GPU nodes; replicas that fit on them skip node provisioning "
                       "[the pool's minNodes minus the nodes its models fill at minReplicas, at least 0]"),
    "imagePullSeconds": (int, f"vLLM image pull [{serving.DEFAULT_IMAGE_PULL_SECONDS}]"),
    "modelLoadSeconds": (int, "container start to serving [gpu_fleet.components.sizing's load_seconds_estimate]"),
    "startupSeconds": (int, "total start-up delay, instead of its three phases"),
    "baselineRps": (float, "baseline load of a built-in trace [baselineFraction x capacity at minReplicas]"),
    "baselineFraction": (float, "baseline as a fraction of what the stack's minReplicas serve at its utilisation target "
                                f"[{traces.DEFAULT_BASELINE_FRACTION}]"),
    "pendingRequestsThreshold": (int, "queue alert threshold [the stack's alerts.pendingRequestsThreshold]"),
    "pendingRequestsForMinutes": (int, "queue alert 'for' [the stack's alerts.pendingRequestsForMinutes]"),
    **{k: (float, f"{name} trace [{v:g}]") for name, p in traces.TRACE_PARAMS.items() for k, v in p.items()},
    "noise": (float, "seeded per-minute noise of a built-in trace, as a fraction [0]"),
    "seed": (int, "seed of that noise [0]"),
}
STARTUP_PHASES = ("nodeProvisionSeconds", "imagePullSeconds", "modelLoadSeconds")


class UsageError(Exception):
    """A bad argument; the message is printed as is."""


def _epilog() -> str:
    lines = ["--set keys that edit the model's autoscaling config, as in the stack file",
             "(policies as TYPE:VALUE:PERIOD_SECONDS[,...], e.g. Pods:4:15,Percent:100:15):",
             textwrap.fill(", ".join(AUTOSCALING_KEYS), 100, initial_indent="  ", subsequent_indent="  "),
             "", "other --set keys [default]:"]
    width = max(map(len, SIM_KEYS))
    lines += [f"  {key.ljust(width)}  {what}" for key, (_, what) in SIM_KEYS.items()]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` subcommand's arguments."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _epilog()
    parser.add_argument("stack", nargs="?", metavar="STACK", help="region stack (default: the first in stacks/)")
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="a region stack file anywhere (e.g. examples/scale-to-zero/stacks/Pulumi.dev.yaml) "
                             "instead of STACK")
    parser.add_argument("--model", metavar="NAME", help="model of the stack (default: the first)")
    parser.add_argument("--trace", metavar="NAME|FILE",
                        help=f"{', '.join((*traces.BUILTIN, *traces.IDLE))} or a CSV of seconds,requests_per_second "
                             "(default: spike; idle for a model that scales to zero)")
    parser.add_argument("--plot", metavar="FILE.png", help="write a PNG of the run")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--set", dest="overrides", metavar="key=value", action="append", default=[],
                        help="override a setting (repeatable; keys below)")


# --------------------------------------------------------------------------- arguments


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``key=value`` strings as a dict; UsageError for a malformed item or an unknown key."""
    known = (*AUTOSCALING_KEYS, *SIM_KEYS)
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError(f"--set {item!r}: expected key=value")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--set {key}: unknown key{hint} (keys: {', '.join(known)})")
        out[key] = value
    return out


#: Largest magnitude a numeric ``--set`` value may have.
MAX_SETTING = 1e9


def _number(key: str, value: str) -> float:
    kind = SIM_KEYS[key][0]
    try:
        number = kind(value)
    except ValueError:
        raise UsageError(f"--set {key}={value}: expected {'a whole number' if kind is int else 'a number'}") from None
    # Settings are seconds, rates and counts: beyond 1e9 the arithmetic leaves finite numbers.
    if not math.isfinite(number) or abs(number) > MAX_SETTING:
        raise UsageError(f"--set {key}={value}: expected a finite number of at most {MAX_SETTING:.0e}")
    return number


def _policies(key: str, value: str) -> list[dict[str, Any]]:
    """``Pods:2:60,Percent:100:15`` as HPA policies."""
    out = []
    for part in value.split(","):
        bits = part.strip().split(":")
        if len(bits) != 3 or not bits[1].strip().isdigit() or not bits[2].strip().isdigit():
            raise UsageError(f"--set {key}={value}: expected TYPE:VALUE:PERIOD_SECONDS[,...], like Pods:2:60,Percent:100:15")
        out.append({"type": bits[0].strip(), "value": int(bits[1]), "periodSeconds": int(bits[2])})
    return out


def autoscaling_with(base: AutoscalingConfig, overrides: dict[str, str]) -> AutoscalingConfig:
    """``base`` with the autoscaling ``--set`` keys applied, validated like a stack file."""
    # A preset replaces the stack's own values; other keys given with it still win.
    if "preset" in overrides:
        try:
            base = AutoscalingConfig.model_validate({"preset": overrides["preset"]})
        except ValidationError as e:
            raise UsageError(f"--set preset: {e.errors()[0]['msg']}") from None
    raw = base.model_dump(by_alias=True)
    for key in AUTOSCALING_KEYS:
        if key not in overrides or key == "preset":
            continue
        value = overrides[key]
        section, _, field = key.rpartition(".")
        target = raw[section] if section else raw
        target[field] = _policies(key, value) if field == "policies" else value
    try:
        return AutoscalingConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"--set {where}: {first['msg']}") from None


def _resolve_stack(name: Optional[str], config: Optional[Path] = None) -> tuple[str, RegionConfig, Path]:
    if config is not None:
        if name is not None:
            raise UsageError("give STACK or --config, not both")
        if not config.is_file():
            raise UsageError(f"--config {config}: no such stack file")
        cfg = load_stack_file(config)
        if not isinstance(cfg, RegionConfig):
            raise UsageError(f"{config}: a global stack has no models; simulate a region stack")
        return config.name[len("Pulumi."):-len(".yaml")] if config.name.startswith("Pulumi.") else config.stem, cfg, config
    try:
        project = project_dir(Path.cwd())
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    stacks_dir = project / "stacks"
    names = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
    if name is not None:
        path = stacks_dir / f"Pulumi.{name}.yaml"
        if not path.exists():
            raise UsageError(f"{path}: no such stack file (stacks: {', '.join(names)})")
        cfg = load_stack_file(path)
        if not isinstance(cfg, RegionConfig):
            raise UsageError(f"{path}: a global stack has no models; simulate a region stack")
        return name, cfg, path
    for path in stack_files(stacks_dir):
        cfg = load_stack_file(path)
        if isinstance(cfg, RegionConfig):
            return path.name[len("Pulumi."):-len(".yaml")], cfg, path
    raise UsageError(f"{stacks_dir}: no region stack")


def _model(cfg: RegionConfig, path: Path, name: Optional[str]) -> ModelConfig:
    if not cfg.models:
        raise UsageError(f"{path}: the stack serves no models")
    if name is None:
        return cfg.models[0]
    for m in cfg.models:
        if m.name == name:
            return m
    raise UsageError(f"--model {name}: not in {path.name} (models: {', '.join(m.name for m in cfg.models)})")


def deployed_baseline_rps(model: ModelConfig, model_serving: serving.ServingModel,
                          fraction: float = traces.DEFAULT_BASELINE_FRACTION) -> float:
    """The built-in traces' baseline: ``fraction`` of what the stack's own HPA serves at
    ``minReplicas`` and its utilisation target, whatever ``--set`` changes, so runs of one
    model compare on the same traffic."""
    deployed = hpa_settings(model.autoscaling, model.name)
    return fraction * deployed.min_replicas * model_serving.rps_at(utilization_target(deployed))


def hpa_settings(autoscaling: AutoscalingConfig, model_name: str) -> HpaSettings:
    """The HPA the model gets: its spec, with ``minReplicas`` 1 where KEDA scales it to zero
    (KEDA hands 1..N to the HPA it creates: kedacore/keda@v2.20.2
    ``apis/keda/v1alpha1/scaledobject_types.go`` ``GetHPAMinReplicas``)."""
    spec = hpa_spec(autoscaling, deployment_name(model_name))
    if autoscaling.engine == "keda":
        spec = {**spec, "minReplicas": max(1, spec["minReplicas"])}
    return settings_from_spec(spec)


def scale_to_zero(model: ModelConfig, autoscaling: AutoscalingConfig, pool: GpuPoolConfig,
                  shape: GpuShape) -> Optional[ScaleToZero]:
    """KEDA's scale to zero of the model, None unless ``engine: keda`` with ``minReplicas: 0``.
    The replica leaving zero waits the cold start the plan prints (a node where the pool may
    have none, ``gpu_fleet.components.model_deployment``'s rule)."""
    if autoscaling.engine != "keda" or autoscaling.min_replicas != 0:
        return None
    zero = autoscaling.scale_to_zero
    node = pool.provisioning_seconds if pool.min_nodes == 0 else 0
    wait = cold_start(size_model(model, shape), node_seconds=node)
    return ScaleToZero(zero.idle_seconds, zero.activation_gpu_utilization, zero.activation_pending_requests,
                       wait.total_seconds, POLLING_INTERVAL_SECONDS)


# --------------------------------------------------------------------------- text


def _rules_text(rules: Optional[ScalingRules], flag_window: int) -> str:
    if rules is None:
        return "no behavior (legacy)"
    window = rules.stabilization_window_seconds if rules.stabilization_window_seconds is not None else flag_window
    policies = ", ".join(f"{p.type} {p.value}/{p.period_seconds}s" for p in rules.policies or ())
    select = "" if rules.select_policy == "Max" else f" ({rules.select_policy})"
    return f"window {window} s, {policies}{select}"


def _hpa_text(hpa: HpaSettings, loop: ControlLoop) -> str:
    targets = ", ".join(f"{m.name} {m.target_milli / 1000:g}/pod" for m in hpa.metrics)
    return (f"min {hpa.min_replicas}, max {hpa.max_replicas}; {targets}; "
            f"up: {_rules_text(hpa.scale_up, loop.downscale_stabilization_seconds)}; "
            f"down: {_rules_text(hpa.scale_down, loop.downscale_stabilization_seconds)}")


# --------------------------------------------------------------------------- main


def _run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    numbers = {k: _number(k, v) for k, v in overrides.items() if k in SIM_KEYS}
    stack, cfg, path = _resolve_stack(args.stack, args.config)
    model = _model(cfg, path, args.model)
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    shape = pool_offering(cfg, pool).shape

    autoscaling = autoscaling_with(model.autoscaling, overrides)
    spec = hpa_spec(autoscaling, deployment_name(model.name))
    hpa = hpa_settings(autoscaling, model.name)
    zero = scale_to_zero(model, autoscaling, pool, shape)
    trace_name = args.trace or (traces.IDLE[0] if zero is not None else "spike")

    if "startupSeconds" in numbers and any(k in numbers for k in STARTUP_PHASES):
        raise UsageError("--set startupSeconds replaces its phases; do not also set " + ", ".join(STARTUP_PHASES))
    try:
        capacity = serving.replica_capacity(
            model, shape,
            concurrency=numbers.get("concurrency"), throughput_rps=numbers.get("throughputRps"),
            avg_tokens_per_request=int(numbers.get("avgTokensPerRequest", serving.DEFAULT_AVG_TOKENS_PER_REQUEST)),
            mean_latency_seconds=numbers.get("meanLatencySeconds", serving.DEFAULT_MEAN_LATENCY_SECONDS),
            gpus=None if "gpusPerReplica" not in numbers else int(numbers["gpusPerReplica"]),
        )
        warm_nodes = int(numbers.get("warmNodes", serving.default_warm_nodes(cfg, pool, shape)))
        model_serving = serving.ServingModel(capacity, numbers.get("gpuUtilizationCurve", serving.DEFAULT_UTILIZATION_CURVE))
        if "startupSeconds" in numbers:
            startup = serving.StartupDelay(0, 0, int(numbers["startupSeconds"]))
            startup_settings: dict[str, Any] = {"totalSeconds": startup.total_seconds, "source": "--set startupSeconds"}
        else:
            load = numbers.get("modelLoadSeconds")
            startup = serving.StartupDelay(
                int(numbers.get("nodeProvisionSeconds", serving.node_provision_seconds(cfg.cloud))),
                int(numbers.get("imagePullSeconds", serving.DEFAULT_IMAGE_PULL_SECONDS)),
                int(load) if load is not None else serving.model_load_seconds(model, shape),
            )
            startup_settings = {"nodeProvisionSeconds": startup.node_provision_seconds,
                                "imagePullSeconds": startup.image_pull_seconds,
                                "modelLoadSeconds": startup.model_load_seconds, "totalSeconds": startup.total_seconds}
        loop = ControlLoop(
            startup,
            sync_period_seconds=int(numbers.get("syncPeriodSeconds", DEFAULT_SYNC_PERIOD_SECONDS)),
            metrics_lag_seconds=int(numbers.get("metricsLagSeconds", DEFAULT_METRICS_LAG_SECONDS)),
            tolerance=numbers.get("tolerance", DEFAULT_TOLERANCE),
            warm_replicas=warm_nodes * serving.replicas_per_node(shape, capacity.gpus),
            scale_to_zero=zero,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None

    trace_params = {k: v for k, v in numbers.items() if any(k in p for p in (*traces.TRACE_PARAMS.values(), traces.COMMON_PARAMS))}
    fraction = numbers.get("baselineFraction", traces.DEFAULT_BASELINE_FRACTION)
    baseline = numbers.get("baselineRps", deployed_baseline_rps(model, model_serving, fraction))
    if trace_name in (*traces.BUILTIN, *traces.IDLE):
        trace = traces.builtin_trace(trace_name, baseline, trace_params)
    else:
        trace_path = Path(trace_name)
        if not trace_path.exists():
            raise UsageError(f"--trace {trace_name}: neither a built-in trace "
                             f"({', '.join((*traces.BUILTIN, *traces.IDLE))}) nor a file")
        if "baselineRps" in numbers or "baselineFraction" in numbers or trace_params:
            raise UsageError("--set baseline and trace parameters apply to built-in traces, not to a CSV file")
        trace = traces.csv_trace(trace_path)

    threshold = int(numbers.get("pendingRequestsThreshold", cfg.alerts.pending_requests_threshold))
    for_minutes = int(numbers.get("pendingRequestsForMinutes", cfg.alerts.pending_requests_for_minutes))
    result = simulate(hpa, model_serving, trace, loop, oracle_utilization=bool(args.plot))
    summary = report.summarize(result, threshold, for_minutes)

    settings = {
        "kubernetesController": KUBERNETES_RELEASE,
        "hpaSpec": spec,
        "overrides": overrides,
        "replica": {"gpus": capacity.gpus, "concurrency": round(capacity.concurrency, 2),
                    "throughputRps": round(capacity.throughput_rps, 3),
                    "meanLatencySeconds": round(capacity.mean_latency_seconds, 2),
                    "gpuUtilizationCurve": model_serving.utilization_curve, "gpuShape": shape.machine_type},
        "startup": startup_settings,
        "syncPeriodSeconds": loop.sync_period_seconds,
        "metricsLagSeconds": loop.metrics_lag_seconds,
        "tolerance": loop.tolerance,
        "warmNodes": warm_nodes,
        **({"scaleToZero": {"idleSeconds": zero.idle_seconds, "activationGpuUtilization": zero.activation_gpu_utilization,
                            "activationPendingRequests": zero.activation_pending_requests,
                            "coldStartSeconds": zero.cold_start_seconds}} if zero is not None else {}),
        "alert": {"pendingRequestsThreshold": threshold, "pendingRequestsForMinutes": for_minutes},
    }
    title = "\n".join([
        f"{stack} / {model.name} / {trace.name} trace: {trace.description}",
        f"HPA {_hpa_text(hpa, loop)}",
        f"start-up {startup.total_seconds} s, metrics lag {loop.metrics_lag_seconds} s, sync {loop.sync_period_seconds} s; "
        f"replica: {capacity.gpus} GPUs, {capacity.concurrency:.0f} sequences, {capacity.throughput_rps:.3g} req/s when full",
    ])
    if args.plot:
        report.plot(result, summary, Path(args.plot), title)
    if args.format == "json":
        print(json.dumps({
            "stack": stack, "model": model.name,
            "trace": {"name": trace.name, "description": trace.description, "seconds": trace.seconds},
            "settings": settings, "summary": summary.as_dict(),
            **({"plot": args.plot} if args.plot else {}),
        }, indent=2))
    else:
        headline = "\n".join([
            f"simulate {stack} / {model.name} / {trace.name}: {trace.description}",
            f"  HPA ({path.name}, Kubernetes {KUBERNETES_RELEASE} controller): {_hpa_text(hpa, loop)}",
            f"  replica: {capacity.gpus} GPUs ({shape.machine_type}), {capacity.concurrency:.0f} concurrent sequences, "
            f"{capacity.throughput_rps:.3g} req/s when full ({capacity.mean_latency_seconds:.3g} s mean latency)",
            f"  start-up {startup.total_seconds} s"
            + (f" (node {startup.node_provision_seconds} + pull {startup.image_pull_seconds} + load {startup.model_load_seconds})"
               if "startupSeconds" not in numbers else "")
            + f", metrics lag {loop.metrics_lag_seconds} s, sync every {loop.sync_period_seconds} s",
            f"  warm spare nodes {warm_nodes}: {loop.warm_replicas} replicas above minReplicas skip node provisioning",
            *([f"  KEDA scale to zero: after {zero.idle_seconds} s inactive (GPU <= {zero.activation_gpu_utilization:g} %, "
               f"pending <= {zero.activation_pending_requests:g}); the replica leaving zero starts in "
               f"{zero.cold_start_seconds} s (cold start, as the plan prints it)"] if zero is not None else []),
            *([f"  overrides: {', '.join(f'{k}={v}' for k, v in overrides.items())}"] if overrides else []),
            "",
            "summary:",
        ])
        print(report.format_table(summary, headline))
        if args.plot:
            print(f"\nplot written to {args.plot}")
    return EXIT_OK


def exit_status(command: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``'s exit status, with any error as one line: 2 for usage, trace and config
    errors, 1 for anything else (shared by ``simulate`` and ``tune``)."""
    try:
        return run(args)
    except (UsageError, SpecError, traces.TraceError) as e:
        print(f"{command}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG
    except Exception as e:  # noqa: BLE001 - the CLI reports any failure in one line
        print(f"{command} failed: {one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE


def main(args: argparse.Namespace) -> int:
    """Run ``gpu-fleet simulate``; the exit status."""
    return exit_status("simulate", _run, args)
