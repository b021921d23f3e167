#!/usr/bin/env python3
"""Whether the region stacks a global stack reads exist yet, so its preview can run.

The global stack's StackReferences fail when a region stack was never deployed (a new
fleet, a region added in this very pull request). Rather than a red job with a stack
trace, this says which ones are missing; the workflow then skips ``pulumi preview`` for
the global stack and writes the reason into the pull-request comment.

Usage: region_stacks_ready.py STACK_FILE   (run with the project's .venv python, logged in)
Writes ``ready=true|false`` to ``$GITHUB_OUTPUT`` and the reason to ``$STATUS_FILE``.
Exit 1 only for a real error (no credentials, backend unreachable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gpu_fleet.components.config import ConfigError, GlobalConfig, load_stack_file
from gpu_fleet.components.global_routing import stack_reference_name

#: ``pulumi`` exits 6 when a named stack does not exist (pulumi/pulumi@v3.259.0
#: pkg/cmd/pulumi/cmd/exit_codes.go ExitStackNotFound); older CLIs exit 1 with
#: "no stack named '<name>' found" (pkg/backend/backenderr/backenderr.go).
EXIT_STACK_NOT_FOUND = 6
NOT_FOUND_MESSAGE = "no stack named"


def missing_regions(cfg: GlobalConfig) -> list[str]:
    missing = []
    for region in cfg.regions:
        name = stack_reference_name(cfg.organization, region)
        result = subprocess.run(["pulumi", "stack", "output", "--stack", name, "--json", "--non-interactive"],
                                capture_output=True, text=True)
        if result.returncode == 0:
            continue
        if result.returncode == EXIT_STACK_NOT_FOUND or NOT_FOUND_MESSAGE in result.stderr:
            missing.append(name)
            continue
        raise RuntimeError(f"pulumi stack output --stack {name} failed: {result.stderr.strip()}")
    return missing


def main(argv: list[str]) -> int:
    try:
        cfg = load_stack_file(Path(argv[1]))
        if not isinstance(cfg, GlobalConfig):
            raise ConfigError(argv[1], [])
        missing = missing_regions(cfg)
    except (ConfigError, RuntimeError) as e:
        print(f"::error::{str(e) or argv[1] + ': not a global stack'}")
        return 1
    if missing:
        status = (f"Preview skipped: the region stack(s) {', '.join(missing)} do not exist yet, and the global "
                  f"stack reads their outputs. The deploy workflow creates them before the global stack; this "
                  f"preview runs once they exist.")
        print(f"::notice::{status}")
    else:
        status = ""
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"ready={'false' if missing else 'true'}\n")
    Path(os.environ["STATUS_FILE"]).write_text(status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
