"""What a config check reports. Its own module so the pure checks that
:mod:`gpu_fleet.components.config` runs (``cloud_limits``) sit below config, not beside it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: the field path (``gpuPools[0].gpu``) and why."""

    path: str
    message: str


class ProblemError(ValueError):
    """A config problem only the deployment can see (what a cloud data source returns):
    raised by the program, reported by ``gpu-fleet plan`` like a config error (exit 2,
    ``file: field: message``) and by ``pulumi up`` as this message."""

    def __init__(self, problem: Problem):
        super().__init__(f"{problem.path}: {problem.message}")
        self.problem = problem
