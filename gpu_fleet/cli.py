"""``gpu-fleet``: plan stacks offline and simulate their autoscaling.

``gpu-fleet plan [STACK ...] [--config FILE] [--out DIR] [--format table|json] [--deployer-cidr CIDR]``
runs the real program for each stack under Pulumi's mock engine and shows what ``pulumi up``
would create; ``gpu-fleet plan --program DIR --stack NAME`` does the same for a Pulumi Python
program of your own. ``gpu-fleet cost-diff BASE.json HEAD.json`` turns two such JSON plans into a
markdown table of the hourly cost change. Exit status: 0 clean, 2 configuration error, 1 any
other failure, 130 interrupted.

The planning machinery (Pulumi, the provider SDKs, the Kubernetes schemas: most of a
second of imports) and the simulator (numba) are imported when a command needs them, after
a stack file given with ``--config`` is validated: a mistake in it costs the time to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

# Each command imports what it needs when it runs (Pulumi, the clouds' SDKs, the validators,
# numba): ``gpu-fleet --help`` and ``--version`` import none of it.
if TYPE_CHECKING:
    from gpu_fleet.components.capacity import PoolCapacity

    from . import engine, manifests, policy_check
    from .plan import StackPlan

from .exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, one_line

#: The source checkout this module runs from (its policies/ pack), if it is one.
CHECKOUT = Path(__file__).resolve().parents[1]
#: Where plans go by default: a folder of their own (``build/`` also holds setuptools' output).
DEFAULT_OUT = Path("build") / "plan"
#: Interrupted (Ctrl-C), as shells report a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
INTERRUPTED = "gpu-fleet: interrupted"

#: After Ctrl-C, how long cleanup (removing a half-written stack folder) may take.
INTERRUPT_GRACE_SECONDS = 10


def _selected(args: argparse.Namespace, project: Path) -> tuple[list[Path], set[str]]:
    """Stack files to plan (regions a global stack needs first) and the names to show."""
    from gpu_fleet.components.config import ConfigError, GlobalConfig, Problem, load_stack_file

    from .project import stack_files

    if args.config:
        wanted = [Path(args.config).absolute()]
    elif args.stacks:
        wanted = [project / "stacks" / f"Pulumi.{s}.yaml" for s in args.stacks]
    else:
        wanted = stack_files(project / "stacks")
    for path in wanted:
        if not path.exists():
            raise ConfigError(str(path), [Problem("stack", f"no such stack file (stacks: {', '.join(_names(project / 'stacks'))})")])
    shown = {p.name[len("Pulumi."):-len(".yaml")] for p in wanted}
    ordered: list[Path] = []
    for path in wanted:
        cfg = load_stack_file(path)
        if isinstance(cfg, GlobalConfig):
            for region in cfg.regions:
                dep = path.parent / f"Pulumi.{region}.yaml"
                if dep not in ordered:
                    ordered.append(dep)
            if args.config:
                # A fleet given by its global stack file is shown, validated and checked whole.
                shown.update(cfg.regions)
    ordered += [p for p in wanted if p not in ordered]
    return sorted(ordered, key=lambda p: isinstance(load_stack_file(p), GlobalConfig)), shown


def _project(args: argparse.Namespace) -> Path:
    """The project to plan: the one holding the working directory, else the ``--config`` file's."""
    from gpu_fleet.components.config import ConfigError, Problem

    from .project import project_dir

    starts = [Path.cwd()] + ([Path(args.config).absolute().parent] if args.config else [])
    for start in starts:
        try:
            return project_dir(start)
        except FileNotFoundError:
            continue
    where = " or ".join(str(s) for s in starts)
    raise ConfigError(str(starts[-1]), [Problem("project", f"no Pulumi.yaml at or above {where}; run gpu-fleet in "
                                                "the project folder or give --config a stack file inside one")])


def _names(stacks_dir: Path) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def _short(urn: str) -> str:
    return urn.split("::")[-1] if urn else ""


def _resources(rec: engine.Recording) -> list[engine.ResourceRecord]:
    """The recorded resources in a fixed order (they register concurrently, so their
    recording order varies from run to run)."""
    return sorted(rec.resources, key=lambda r: r.urn)


def _sorted(violations: list[policy_check.Violation]) -> list[policy_check.Violation]:
    return sorted(violations, key=lambda v: (v.policy, v.resource_type or "", v.resource_name or "", v.message))


def _tree(rec: engine.Recording) -> list[str]:
    children: dict[str, list[engine.ResourceRecord]] = {}
    for r in _resources(rec):
        children.setdefault(r.parent, []).append(r)
    by_urn = {r.urn for r in rec.resources}
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for r in children.get(parent, []):
            flags = " [protected]" if r.protect else ""
            lines.append(f"{'  ' * depth}{r.type}  {r.name}{flags}")
            walk(r.urn, depth + 1)

    roots = [p for p in children if p not in by_urn]
    for root in roots:
        walk(root, 0)
    return lines


def _resource_json(rec: engine.Recording, r: engine.ResourceRecord) -> dict:
    from . import engine

    provider = rec.provider_of(r)
    return {
        "type": r.type,
        "name": r.name,
        "parent": _short(r.parent),
        "provider": f"{provider.type}::{provider.name}" if provider else ("default" if r.custom else None),
        "inputs": engine.masked(r.inputs),
        "options": {
            "protect": r.protect,
            "ignoreChanges": r.ignore_changes,
            "replaceOnChanges": r.replace_on_changes,
            "retainOnDelete": r.retain_on_delete,
            "deleteBeforeReplace": r.delete_before_replace,
            "customTimeouts": r.custom_timeouts,
        },
    }


def _outputs(plan: StackPlan) -> dict[str, Any]:
    from . import engine

    rec = plan.recording
    return {k: engine.SECRET_MARK if k in rec.secret_outputs else engine.masked(v) for k, v in rec.stack_outputs.items()}


def _capacity(plan: StackPlan) -> Optional[list[PoolCapacity]]:
    """A region stack's GPU capacity and cost per pool (None for a global stack)."""
    from gpu_fleet.components.capacity import region_capacity
    from gpu_fleet.components.config import RegionConfig

    return region_capacity(plan.config) if isinstance(plan.config, RegionConfig) else None


def _cache_cost(plan: StackPlan) -> Optional[float]:
    """A region stack's cache US$ per hour at the catalog's price (None: no price there)."""
    from gpu_fleet.components.cache_settings import cache_hourly_usd
    from gpu_fleet.components.gpu_catalog import cache_prices

    cfg = plan.config
    return cache_hourly_usd(cfg.cloud, cfg.location, cfg.cache, cache_prices())


def _print_capacity(pools: list[PoolCapacity], cache_usd: Optional[float]) -> None:
    from gpu_fleet.components.capacity import cost_json

    print("\n  GPU capacity and cost (models at min / max replicas; on-demand list prices):")
    for p in pools:
        print(f"    {p.name}: {p.machine_type} x {p.min_nodes}-{p.max_nodes} nodes ({', '.join(p.capacity)}), "
              f"GPUs warm {p.warm_gpus}, reachable {p.max_gpus}; models ask {p.model_gpus_at_min} / "
              f"{p.model_gpus_at_max}; nodes {p.nodes_at_min} / {p.nodes_at_max} at "
              f"{p.hourly_usd_per_node:.2f} USD/h: {p.min_hourly_usd:,.2f} / {p.max_hourly_usd:,.2f} USD/h"
              + ("" if p.capacity[0] == "on-demand" else f" ({p.price_note})"))
    cost = cost_json(pools)
    print(f"    stack: {cost['minHourlyUsd']:,.2f} / {cost['maxHourlyUsd']:,.2f} USD/h")
    print("    regional cache: " + ("no price in the catalog (unverified)" if cache_usd is None
                                     else f"{cache_usd:,.4f} USD/h (on-demand list price)"))


def _print_table(plan: StackPlan, report: manifests.ManifestReport, out_dir: Path,
                 violations: Optional[list[policy_check.Violation]]) -> None:
    from . import manifests

    rec = plan.recording
    print(f"\n=== stack {plan.stack} ({plan.path}) — {len(rec.resources)} resources")
    for line in _tree(rec):
        print("  " + line)
    print("\n  resources per type:")
    for type_, n in sorted(Counter(r.type for r in rec.resources).items()):
        print(f"    {n:4d}  {type_}")
    protected = [r for r in _resources(rec) if r.protect]
    if protected:
        print("\n  protected (pulumi up refuses to delete or replace these; a change that needs a replace fails the update):")
        for r in protected:
            print(f"    {r.type}  {r.name}")
    print("\n  outputs:")
    for k, v in _outputs(plan).items():
        print(f"    {k}: {json.dumps(v)}")
    print(f"\n  secrets: {plan.secrets.summary()}")
    pools = _capacity(plan)
    if pools is not None:
        _print_capacity(pools, _cache_cost(plan))
    for w in plan.warnings:
        print(f"\n  warning: {w}")
    print(f"\n  kubernetes objects: {len(report.written)} written to {out_dir}, "
          f"validated against Kubernetes {manifests.KUBERNETES_VERSION} (strict); "
          f"{len(report.unchecked)} custom resources without a schema")
    for path, err in report.errors:
        print(f"    INVALID {path.name}: {err}")
    if violations is None:
        print("\n  policy pack: none (no policies/rules.py in this project)")
    else:
        print(f"\n  policy pack (policies/): {len(violations)} violation(s)")
        for v in violations:
            print(f"    {v}")


def cmd_plan(args: argparse.Namespace) -> int:
    from gpu_fleet.components.config import reading_once

    # Each stack file is read once per plan (ordering, planning, a global stack's regions).
    with reading_once():
        return _plan(args)


def _plan(args: argparse.Namespace) -> int:
    from gpu_fleet.components.config import ConfigError
    from gpu_fleet.components.problem import ProblemError

    started = time.perf_counter()
    if bool(args.program) != bool(args.stack) or (args.program and (args.stacks or args.config)):
        print("gpu-fleet plan: --program DIR and --stack NAME go together, without STACK names or --config",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.program:
            project = Path(args.program).absolute()
            files, shown = [project / f"Pulumi.{args.stack}.yaml"], {args.stack}
        else:
            # Every stack file is read and validated here, before the planning machinery is
            # imported: a bad file is reported in a fraction of the time (read once: reading_once).
            project = _project(args)
            files, shown = _selected(args, project)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG

    from gpu_fleet.components.capacity import capacity_json, cost_json, fleet_json

    from . import manifests, policy_check
    from .plan import plan_program, plan_stack
    from .readiness import DEPLOYER_CIDRS_ENV, parse_cidrs

    try:
        deployer = parse_cidrs(" ".join(args.deployer_cidr) if args.deployer_cidr
                               else os.environ.get(DEPLOYER_CIDRS_ENV, ""),
                               "--deployer-cidr" if args.deployer_cidr else DEPLOYER_CIDRS_ENV)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG

    program = project / "__main__.py"
    out_root = Path(args.out) if args.out else project / DEFAULT_OUT
    try:
        # Refused before any planning: a folder the plan did not create is never written into.
        manifests.prepare_output(out_root)
    except manifests.OutputError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG
    plans: dict[str, StackPlan] = {}
    results = []
    failed = False
    # A project without a policies/ pack (one importing our components) is planned without one;
    # a program of your own gets gpu-fleet's pack when it has none (from a source checkout).
    pack = next((p for p in (project, *([CHECKOUT] if args.program else []))
                 if (p / policy_check.RULES).exists()), None)
    policies = policy_check.load_policies(pack) if pack is not None else None
    for path in files:
        try:
            plan = plan_program(project, args.stack) if args.program else plan_stack(path, program, plans, deployer)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return EXIT_CONFIG
        except ProblemError as e:  # a config problem the program found in cloud data
            print(ConfigError(str(path), [e.problem]), file=sys.stderr)
            return EXIT_CONFIG
        except Exception as e:  # noqa: BLE001 - the CLI reports any failure in one line
            if _interrupted.is_set():
                # Ctrl-C landed inside a library that swallowed it (half an import, say): this
                # failure is its echo, and the interrupt is what gets reported.
                raise KeyboardInterrupt from None
            print(f"{path}: plan failed: {one_line(e)}", file=sys.stderr)
            return EXIT_FAILURE
        plans[plan.stack] = plan
        # The same policy functions pulumi preview --policy-pack policies runs; mandatory ones fail the plan.
        # Region stacks planned only for a global stack are checked too: the fleet is what gets deployed.
        violations = _sorted(policy_check.evaluate(plan.recording, policies)) if policies is not None else None
        failed |= any(v.mandatory for v in violations or [])
        if plan.stack not in shown:
            if violations:
                print(f"{plan.path}: policy pack (planned for the global stack): {len(violations)} violation(s)",
                      file=sys.stderr)
                for v in violations:
                    print(f"    {v}", file=sys.stderr)
            continue
        out_dir = out_root / plan.stack
        try:
            report = manifests.write_and_validate([m for _, m in plan.recording.kubernetes_objects()], out_dir)
        except manifests.OutputError as e:
            print(e, file=sys.stderr)
            return EXIT_CONFIG
        except manifests.ObjectTooLarge as e:
            print(f"{plan.path}: {e}", file=sys.stderr)
            return EXIT_CONFIG
        failed |= bool(report.errors)
        results.append((plan, report, out_dir, violations))
    elapsed = time.perf_counter() - started
    capacities = {plan.stack: _capacity(plan) for plan, *_ in results}
    regions = {stack: pools for stack, pools in capacities.items() if pools is not None}
    if args.format == "json":
        # No timings: the same stacks give byte-identical JSON.
        print(json.dumps({
            "stacks": [
                {
                    "stack": plan.stack,
                    **({"capacity": capacity_json(capacities[plan.stack]), "cost": cost_json(capacities[plan.stack], _cache_cost(plan))}
                       if capacities[plan.stack] is not None else {}),
                    "resources": [_resource_json(plan.recording, r) for r in _resources(plan.recording)],
                    "outputs": _outputs(plan),
                    "warnings": plan.warnings,
                    "secrets": plan.secrets.to_json(),
                    "manifests": {"written": [str(p) for p in report.written],
                                  "errors": [{"file": str(p), "error": e} for p, e in report.errors]},
                    "policyViolations": [
                        {"policy": v.policy, "enforcementLevel": v.enforcement_level.value, "resourceType": v.resource_type,
                         "resourceName": v.resource_name, "message": v.message}
                        for v in violations or []
                    ],
                }
                for plan, report, _, violations in results
            ],
            "fleet": fleet_json(regions),
        }, indent=2, default=str))
    else:
        for plan, report, out_dir, violations in results:
            _print_table(plan, report, out_dir, violations)
        if regions:
            fleet = fleet_json(regions)["cost"]
            print(f"\nfleet ({', '.join(sorted(regions))}): {fleet['minHourlyUsd']:,.2f} / "
                  f"{fleet['maxHourlyUsd']:,.2f} USD/h at the models' min / max replicas (on-demand list prices)")
        print(f"\nplanned {len(results)} stack(s) in {elapsed:.1f} s")
    if failed:
        print("plan failed: invalid Kubernetes objects or mandatory policy violations (see above)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_cost_diff(args: argparse.Namespace) -> int:
    from . import cost_diff

    try:
        base, head = cost_diff.read_plan(Path(args.base)), cost_diff.read_plan(Path(args.head))
    except cost_diff.PlanFileError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG
    print(cost_diff.render(cost_diff.diff(base, head, args.stack)))
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpu-fleet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The CLI's parser. Given ``argv``, only the subcommand it names gets its arguments
    (the others' would import their modules for nothing); without, every one does."""
    command = None if argv is None else next((a for a in argv if not a.startswith("-")), "")

    def full(name: str) -> bool:
        return command is None or command == name

    parser = argparse.ArgumentParser(prog="gpu-fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="show what pulumi up would create, offline")
    if full("plan"):
        from .readiness import DEPLOYER_CIDRS_ENV

        plan.add_argument("stacks", nargs="*", metavar="STACK", help="stack names (default: every stack in stacks/)")
        plan.add_argument("--config", metavar="FILE", help="plan this stack file instead (Pulumi.<stack>.yaml); "
                          "a global stack's file plans and shows its region stacks too")
        plan.add_argument("--program", metavar="DIR", help="plan a Pulumi Python program of your own (its folder, "
                          "with Pulumi.yaml) instead of gpu-fleet's; needs --stack")
        plan.add_argument("--stack", metavar="NAME", help="with --program: the stack (config from Pulumi.NAME.yaml "
                          "beside Pulumi.yaml, if any)")
        plan.add_argument("--out", metavar="DIR", help=f"where to write Kubernetes YAML, one folder per stack (default {DEFAULT_OUT}/); "
                          "a folder with other content is refused")
        plan.add_argument("--format", choices=("table", "json"), default="table")
        plan.add_argument("--deployer-cidr", action="append", metavar="CIDR",
                          help=f"network pulumi runs from (repeatable; default ${DEPLOYER_CIDRS_ENV}): "
                               "the plan says when it cannot reach a cluster's API endpoint")
        plan.set_defaults(func=cmd_plan)
    cost = sub.add_parser("cost-diff", help="markdown table of the hourly cost change between two plan JSONs")
    if full("cost-diff"):
        cost.add_argument("base", metavar="BASE.json", help="gpu-fleet plan --format json of the base branch")
        cost.add_argument("head", metavar="HEAD.json", help="the same for the change")
        cost.add_argument("--stack", action="append", metavar="STACK", help="only these stacks (repeatable)")
        cost.set_defaults(func=cmd_cost_diff)
    simulate = sub.add_parser("simulate", help="replay traffic against a stack's HPA settings")
    if full("simulate"):
        from .simulate import cli as simulate_cli

        simulate_cli.add_arguments(simulate)
        simulate.set_defaults(func=simulate_cli.main)
    tune = sub.add_parser("tune", help="search HPA settings against the oracle with the simulator")
    if full("tune"):
        from . import tune as tune_module

        tune_module.add_arguments(tune)
        tune.set_defaults(func=tune_module.main)
    return parser


#: Set by the first Ctrl-C of this process (see :func:`_interrupts`).
_interrupted = threading.Event()


@contextmanager
def _interrupts() -> Iterator[dict[str, bool]]:
    """Ctrl-C ends the command with one line and exit 130, whatever it is doing.

    The first Ctrl-C raises KeyboardInterrupt (so half-written folders are removed) and
    gives cleanup :data:`INTERRUPT_GRACE_SECONDS`: code that swallows the interrupt (the
    Pulumi engine's event loop) can neither finish with exit 0 nor hang. A second Ctrl-C
    exits at once.
    """
    state = {"interrupted": False}
    _interrupted.clear()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    timer: list[threading.Timer] = []

    def handler(signum: int, frame: Any) -> None:
        if state["interrupted"]:
            os._exit(EXIT_INTERRUPTED)
        state["interrupted"] = True
        _interrupted.set()
        print(INTERRUPTED, file=sys.stderr, flush=True)
        timer.append(threading.Timer(INTERRUPT_GRACE_SECONDS, os._exit, args=(EXIT_INTERRUPTED,)))
        timer[0].daemon = True
        timer[0].start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
        for t in timer:
            t.cancel()


@contextlib.contextmanager
def _gc_tuned() -> Iterator[None]:
    """Fewer garbage collections while a command runs: the modules already imported are
    frozen out of the collector's scans, and young objects (a plan allocates millions,
    nearly all alive until the end) are collected 20x less often. Restored afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(thresholds[0] * 20, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with _gc_tuned(), _interrupts() as state:
        try:
            # Parsed in here: simulate's and tune's options import the simulator, a Ctrl-C away.
            args = build_parser(argv).parse_args(argv)
            code = args.func(args)
        except KeyboardInterrupt:
            if not state["interrupted"]:
                print(INTERRUPTED, file=sys.stderr)
            return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if state["interrupted"] else code


if __name__ == "__main__":
    sys.exit(main())
