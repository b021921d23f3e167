"""How fast ``gpu-fleet plan`` runs, as a ratio to the machine's own floor.

Prints, each the median of N runs (default 5) in fresh processes, CPU time (user + sys
of the child) and wall time:

- **floor**: importing the provider SDKs alone (pulumi, pulumi_aws, pulumi_gcp,
  pulumi_kubernetes, pulumi_random), which any plan pays;
- **reference**: ``gpu-fleet plan`` of the three reference stacks;
- **fleet**: a synthetic 10-region x 5-model fleet, generated in a temp dir from the two
  reference region stacks (5 copies of each, 2 more models per stack), planned the same way;
- **ten-regions**: the example in ``examples/ten-regions/`` (10 regions and the global stack).

::

    .venv/bin/python benchmarks/plan_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: ``gpu-fleet`` of this checkout (PYTHONPATH below), not whichever one is installed editable.
GPU_FLEET = [sys.executable, "-m", "gpu_fleet.cli"]
FLOOR = "import pulumi, pulumi_aws, pulumi_gcp, pulumi_kubernetes, pulumi_random"
#: Issue 16's targets, CPU seconds (user + sys).
REFERENCE_TARGET, FLEET_TARGET = 2.0, 5.0


def timed(cmd: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    """Median CPU (user + sys of the child) and wall seconds of ``cmd`` over ``runs`` runs."""
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(cpu), statistics.median(wall)


def synthetic_fleet(root: Path) -> list[str]:
    """A project in ``root`` with 10 region stacks of 5 models each; their names."""
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(REPO / name, root / name)
    (root / "policies").symlink_to(REPO / "policies")
    (root / "stacks").mkdir()
    names = []
    for template in ("us-east", "eu-west"):
        doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{template}.yaml").read_text())
        fleet = doc["config"]["gpu-fleet:fleet"]
        models = fleet["models"]
        fleet["models"] = models + [{**copy.deepcopy(m), "name": f"{m['name']}-b"} for m in models[:5 - len(models)]]
        for i in range(5):
            name = f"{template}-{i}"
            entry = fleet.get("entrypoint") or {}
            if "domain" in entry:
                entry["domain"] = f"{name}.llm.example.com"
            (root / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            names.append(name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure; the median is printed (default 5)")
    args = parser.parse_args()
    floor = timed([sys.executable, "-c", FLOOR], REPO, args.runs)
    print(f"floor (import the provider SDKs): {floor[0]:.2f} s CPU, {floor[1]:.2f} s wall")
    with tempfile.TemporaryDirectory() as tmp:
        ref = timed([*GPU_FLEET, "plan", "--out", str(Path(tmp) / "out")], REPO, args.runs)
    print(f"reference stacks (3): {ref[0]:.2f} s CPU ({ref[0] / floor[0]:.1f}x floor; target <= {REFERENCE_TARGET} s "
          f"CPU: {'met' if ref[0] <= REFERENCE_TARGET else 'NOT met'}), {ref[1]:.2f} s wall")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = synthetic_fleet(root)
        fleet = timed([*GPU_FLEET, "plan", *names], root, args.runs)
    print(f"synthetic fleet (10 regions x 5 models): {fleet[0]:.2f} s CPU ({fleet[0] / floor[0]:.1f}x floor; target "
          f"<= {FLEET_TARGET} s CPU: {'met' if fleet[0] <= FLEET_TARGET else 'NOT met'}), {fleet[1]:.2f} s wall")
    with tempfile.TemporaryDirectory() as tmp:
        ten = timed([*GPU_FLEET, "plan", "--config", "examples/ten-regions/stacks/Pulumi.global.yaml",
                     "--out", str(Path(tmp) / "out")], REPO, args.runs)
    print(f"ten-region example (11 stacks): {ten[0]:.2f} s CPU ({ten[0] / floor[0]:.1f}x floor), {ten[1]:.2f} s wall")
    print(f"(median of {args.runs} runs each, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
