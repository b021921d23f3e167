"""Plan stacks offline: the real program under recording mocks, with the real stack config.

Region stacks are planned first so the global stack's ``StackReference``s can be answered
with their (offline) outputs, exactly the names ``pulumi up`` would export.
"""

from __future__ import annotations

import os
import runpy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from components.config import (
    PROJECT,
    SECRET_KEYS,
    ConfigError,
    FleetConfig,
    GlobalConfig,
    Problem,
    load_stack_file,
    read_stack_file,
)
from components.global_routing import stack_reference_name
from components.program import STACKS_DIR_ENV

from . import engine

#: Stand-in for secret config the stack file does not set (secrets are never in the repo).
PLACEHOLDER_SECRET = "offline-plan-placeholder"


@dataclass
class StackPlan:
    stack: str
    path: Path
    config: FleetConfig
    recording: engine.Recording
    #: Secret config keys the stack file does not set (``pulumi up`` needs them).
    missing_secrets: list[str]


def project_dir(start: Path) -> Path:
    """The folder holding ``Pulumi.yaml`` at or above ``start``."""
    for d in (start, *start.parents):
        if (d / "Pulumi.yaml").exists():
            return d
    raise FileNotFoundError(f"no Pulumi.yaml at or above {start}")


@contextmanager
def _stacks_dir(path: Path) -> Iterator[None]:
    old = os.environ.get(STACKS_DIR_ENV)
    os.environ[STACKS_DIR_ENV] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(STACKS_DIR_ENV, None)
        else:
            os.environ[STACKS_DIR_ENV] = old


def plan_stack(path: Path, program: Path, region_plans: Optional[dict[str, StackPlan]] = None) -> StackPlan:
    """Plan one stack file by running ``program`` (the project's ``__main__.py``).

    ``region_plans`` supplies the outputs a global stack's StackReferences read.
    Raises ConfigError for invalid config; anything else the program raises propagates.
    """
    cfg = load_stack_file(path)
    sf = read_stack_file(path)
    kind = "global" if isinstance(cfg, GlobalConfig) else "region"
    config = {k: v for k, v in sf.config.items() if not (isinstance(v, dict) and set(v) == {"secure"})}
    secret_keys = sorted(sf.secret_keys)
    missing = []
    for key in SECRET_KEYS[kind]:
        full = f"{PROJECT}:{key}"
        # Encrypted values cannot be read offline; the plan only needs them to be secret.
        config[full] = PLACEHOLDER_SECRET
        secret_keys.append(full)
        if full not in sf.secret_keys:
            missing.append(full)
    stack_outputs = {}
    if isinstance(cfg, GlobalConfig):
        region_plans = region_plans or {}
        for name in cfg.regions:
            if name not in region_plans:
                raise ConfigError(str(path), [Problem("regions", f"region stack {name!r} was not planned")])
            rec = region_plans[name].recording
            stack_outputs[stack_reference_name(cfg.organization, name)] = (rec.stack_outputs, rec.secret_outputs)
    recording = engine.Recording(stack=sf.stack)
    engine.install(recording, config, tuple(secret_keys), stack_outputs)
    cwd = os.getcwd()
    try:
        os.chdir(program.parent)
        with _stacks_dir(path.parent.resolve()):
            engine.run(lambda: runpy.run_path(str(program), run_name="__main__"), recording)
    finally:
        os.chdir(cwd)
    return StackPlan(sf.stack, path, cfg, recording, missing)


def stack_files(stacks_dir: Path) -> list[Path]:
    """Every stack file in ``stacks_dir``, region stacks before global ones."""
    files = sorted(stacks_dir.glob("Pulumi.*.yaml"))

    def is_global(p: Path) -> bool:
        try:
            return isinstance(load_stack_file(p), GlobalConfig)
        except ConfigError:
            return False

    return sorted(files, key=is_global)

