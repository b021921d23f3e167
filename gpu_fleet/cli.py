"""``gpu-fleet``: plan stacks offline and simulate their autoscaling.

``gpu-fleet plan [STACK ...] [--config FILE] [--out DIR] [--format table|json]`` runs the
real program for each stack under Pulumi's mock engine and shows what ``pulumi up`` would
create. Exit status: 0 clean, 2 configuration error, 1 any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from components.config import ConfigError, GlobalConfig, Problem, load_stack_file

from . import engine, manifests, policy_check
from .plan import StackPlan, plan_stack, project_dir, stack_files

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def one_line(error: BaseException) -> str:
    """An unexpected error as one line: its type and the first line of its message."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _selected(args: argparse.Namespace, project: Path) -> tuple[list[Path], set[str]]:
    """Stack files to plan (regions a global stack needs first) and the names to show."""
    if args.config:
        wanted = [Path(args.config)]
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
    ordered += [p for p in wanted if p not in ordered]
    return sorted(ordered, key=lambda p: isinstance(load_stack_file(p), GlobalConfig)), shown


def _names(stacks_dir: Path) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def _short(urn: str) -> str:
    return urn.split("::")[-1] if urn else ""


def _tree(rec: engine.Recording) -> list[str]:
    children: dict[str, list[engine.ResourceRecord]] = {}
    for r in rec.resources:
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
    rec = plan.recording
    return {k: engine.SECRET_MARK if k in rec.secret_outputs else engine.masked(v) for k, v in rec.stack_outputs.items()}


def _print_table(plan: StackPlan, report: manifests.ManifestReport, out_dir: Path,
                 violations: Optional[list[policy_check.Violation]]) -> None:
    rec = plan.recording
    print(f"\n=== stack {plan.stack} ({plan.path}) — {len(rec.resources)} resources")
    for line in _tree(rec):
        print("  " + line)
    print("\n  resources per type:")
    for type_, n in sorted(Counter(r.type for r in rec.resources).items()):
        print(f"    {n:4d}  {type_}")
    protected = [r for r in rec.resources if r.protect]
    if protected:
        print("\n  protected (pulumi up refuses to delete or replace these; a change that needs a replace fails the update):")
        for r in protected:
            print(f"    {r.type}  {r.name}")
    print("\n  outputs:")
    for k, v in _outputs(plan).items():
        print(f"    {k}: {json.dumps(v)}")
    for w in rec.warnings:
        print(f"\n  warning: {w}")
    if plan.missing_secrets:
        print(f"\n  note: set before pulumi up: {', '.join(f'pulumi config set --secret {k}' for k in plan.missing_secrets)}")
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
    started = time.perf_counter()
    project = project_dir(Path.cwd())
    program = project / "__main__.py"
    try:
        files, shown = _selected(args, project)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG
    plans: dict[str, StackPlan] = {}
    results = []
    failed = False
    # A project without a policies/ pack (one importing our components) is planned without one.
    policies = policy_check.load_policies(project) if (project / policy_check.RULES).exists() else None
    for path in files:
        try:
            plan = plan_stack(path, program, plans)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return EXIT_CONFIG
        except Exception as e:  # noqa: BLE001 - the CLI reports any failure in one line
            print(f"{path}: plan failed: {one_line(e)}", file=sys.stderr)
            return EXIT_FAILURE
        plans[plan.stack] = plan
        if plan.stack not in shown:
            continue
        out_dir = Path(args.out) / plan.stack if args.out else project / "build" / plan.stack
        report = manifests.write_and_validate([m for _, m in plan.recording.kubernetes_objects()], out_dir)
        # The same policy functions pulumi preview --policy-pack policies runs; mandatory ones fail the plan.
        violations = policy_check.evaluate(plan.recording, policies) if policies is not None else None
        failed |= bool(report.errors) or any(v.mandatory for v in violations or [])
        results.append((plan, report, out_dir, violations))
    elapsed = time.perf_counter() - started
    if args.format == "json":
        print(json.dumps({
            "stacks": [
                {
                    "stack": plan.stack,
                    "resources": [_resource_json(plan.recording, r) for r in plan.recording.resources],
                    "outputs": _outputs(plan),
                    "warnings": plan.recording.warnings,
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
            "seconds": round(elapsed, 2),
        }, indent=2, default=str))
    else:
        for plan, report, out_dir, violations in results:
            _print_table(plan, report, out_dir, violations)
        print(f"\nplanned {len(results)} stack(s) in {elapsed:.1f} s")
    if failed:
        print("plan failed: invalid Kubernetes objects or mandatory policy violations (see above)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu-fleet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="show what pulumi up would create, offline")
    plan.add_argument("stacks", nargs="*", metavar="STACK", help="stack names (default: every stack in stacks/)")
    plan.add_argument("--config", metavar="FILE", help="plan this stack file instead (Pulumi.<stack>.yaml)")
    plan.add_argument("--out", metavar="DIR", help="where to write Kubernetes YAML (default build/<stack>/)")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    plan.set_defaults(func=cmd_plan)
    from .simulate import cli as simulate_cli

    simulate = sub.add_parser("simulate", help="replay traffic against a stack's HPA settings")
    simulate_cli.add_arguments(simulate)
    simulate.set_defaults(func=simulate_cli.main)
    from . import tune as tune_module

    tune = sub.add_parser("tune", help="search HPA settings against the oracle with the simulator")
    tune_module.add_arguments(tune)
    tune.set_defaults(func=tune_module.main)
    return parser


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
    args = build_parser().parse_args(argv)
    with _gc_tuned():
        return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
