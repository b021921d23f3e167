"""Finding a project and its stack files: light (config only, no Pulumi), so the CLI
validates every stack file a plan names before it imports the planning machinery."""

from __future__ import annotations

from pathlib import Path

from gpu_fleet.components.config import ConfigError, GlobalConfig, load_stack_file


def project_dir(start: Path) -> Path:
    """The folder holding ``Pulumi.yaml`` at or above ``start``."""
    for d in (start, *start.parents):
        if (d / "Pulumi.yaml").exists():
            return d
    raise FileNotFoundError(f"no Pulumi.yaml at or above {start}")


def stack_files(stacks_dir: Path) -> list[Path]:
    """Every stack file in ``stacks_dir``, region stacks before global ones."""
    files = sorted(stacks_dir.glob("Pulumi.*.yaml"))

    def is_global(p: Path) -> bool:
        try:
            return isinstance(load_stack_file(p), GlobalConfig)
        except ConfigError:
            return False

    return sorted(files, key=is_global)
