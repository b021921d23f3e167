"""How long ``gpu-fleet plan --config`` takes to report the error in a 10 MB stack file.

Not a test: prints figures. Three 10 MB files, each the us-east reference stack with one
mistake (gpuPools[0].gpusPerNode: 3) plus bulk:

- ``comment``: a 10 MB comment block (how a pasted log ends up in a stack file);
- ``values``: a 10 MB list under an unrelated config key (about 700,000 YAML values);
- ``duplicate``: the bulk comment, then a second ``models:`` key at the very end.

Each is timed end to end (a fresh ``gpu-fleet plan`` process, imports included: the median
CPU seconds, user + system, of :data:`RUNS` processes) and for the stack file read alone
(``gpu_fleet.components.config.load_stack_file`` in this process, wall-clock and CPU seconds).

    .venv/bin/python benchmarks/stack_file_bench.py
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = 10 * 1024 * 1024
#: Fresh processes per file; their median is printed (a shared machine's noise is one-sided).
RUNS = 5


def _files(folder: Path) -> dict[str, Path]:
    base = (REPO / "stacks" / "Pulumi.us-east.yaml").read_text().replace("gpusPerNode: 8", "gpusPerNode: 3", 1)
    comment_line = "# " + "x" * 97 + "\n"
    comment = comment_line * (SIZE // len(comment_line))
    item = "    - value-0000\n"
    docs = {
        "comment": comment + base,
        "values": base.replace("config:\n", "config:\n  other:bulk:\n" + item * (SIZE // len(item)), 1),
        "duplicate": base.replace("config:\n", comment + "config:\n", 1) + "    models: []\n",
    }
    out = {}
    for name, text in docs.items():
        path = folder / f"Pulumi.{name}.yaml"
        path.write_text(text)
        out[name] = path
    return out


def main() -> None:
    sys.path.insert(0, str(REPO))
    from gpu_fleet.components.config import ConfigError, load_stack_file

    with tempfile.TemporaryDirectory() as tmp:
        for name, path in _files(Path(tmp)).items():
            started, cpu = time.perf_counter(), time.process_time()
            try:
                load_stack_file(path)
                message = "accepted?!"
            except ConfigError as e:
                message = str(e).splitlines()[0].removeprefix(f"{path}: ")
            read, read_cpu = time.perf_counter() - started, time.process_time() - cpu
            walls, cpus, codes = [], [], set()
            for _ in range(RUNS):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "gpu_fleet.cli", "plan", "--config", str(path),
                                       "--out", str(Path(tmp) / "out")], cwd=REPO, capture_output=True, text=True)
                walls.append(time.perf_counter() - started)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                codes.add(proc.returncode)
            size = path.stat().st_size / 1024 / 1024
            # CPU seconds: on a shared machine wall time mostly measures the neighbours.
            print(f"{name:9s} {size:5.1f} MB  read+validate {read:5.2f} s ({read_cpu:4.2f} s CPU)  gpu-fleet plan "
                  f"median of {RUNS}: {statistics.median(cpus):4.2f} s CPU (max {max(cpus):4.2f}), "
                  f"{statistics.median(walls):5.2f} s wall, exit {'/'.join(map(str, sorted(codes)))}  {message[:70]}")


if __name__ == "__main__":
    main()
