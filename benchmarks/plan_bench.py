"""How long ``gpu-fleet plan`` takes: the reference fleet and the ten-region example.

Plans each fleet the way the CLI does (every region stack, then the global stack, with
manifest validation and the policy pack) and prints the best of a few runs, in wall-clock
seconds and in this process's CPU seconds (steadier on a busy machine; child processes such
as ``promtool`` are not in it)::

    .venv/bin/python benchmarks/plan_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path

from gpu_fleet import cli

REPO = Path(__file__).resolve().parents[1]
FLEETS = {
    "reference (stacks/, 2 regions + global)": [],
    "ten-regions (examples/ten-regions/, 10 regions + global)":
        ["--config", "examples/ten-regions/stacks/Pulumi.global.yaml"],
}


def _plan(args: list[str], out: str) -> tuple[float, float, int]:
    """One CLI run: its wall and CPU seconds and the number of stacks it planned and showed."""
    buffer = io.StringIO()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(["plan", *args, "--format", "json", "--out", out])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"gpu-fleet plan {' '.join(args)} exited {code}")
    return elapsed, cpu, len(json.loads(buffer.getvalue())["stacks"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per fleet; the best is reported (default 3)")
    parser.add_argument("--out", default="/tmp/gpu-fleet-plan-bench", help="where the manifests go")
    args = parser.parse_args()
    os.chdir(REPO)
    for name, fleet in FLEETS.items():
        runs = [_plan(fleet, args.out) for _ in range(args.repeat)]
        wall, cpu, stacks = min(runs)
        print(f"{name}: {stacks} stacks, best of {args.repeat} runs {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"({cpu / stacks:.2f} CPU s per stack; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
