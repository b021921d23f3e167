"""Plan stacks offline: the real program under recording mocks, with the real stack config.

Region stacks are planned first so the global stack's ``StackReference``s can be answered
with their (offline) outputs, exactly the names ``pulumi up`` would export.
"""

from __future__ import annotations

import ipaddress
import os
import runpy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from components.config import (
    ConfigError,
    FleetConfig,
    GlobalConfig,
    Problem,
    RegionConfig,
    load_stack_file,
    read_stack_file,
)
from components.global_routing import stack_reference_name
from components.program import STACKS_DIR_ENV

from . import engine
from .readiness import SecretsReport, endpoint_notes, secrets_report, stack_environments

#: Stand-in for secret config the stack file does not set (secrets are never in the repo).
PLACEHOLDER_SECRET = "offline-plan-placeholder"


@dataclass
class StackPlan:
    stack: str
    path: Path
    config: FleetConfig
    recording: engine.Recording
    #: Where each secret ``pulumi up`` needs comes from (stack file, ESC, nowhere).
    secrets: SecretsReport
    #: Why the deployer's network cannot reach the cluster API (empty: it can, or unknown).
    endpoint_notes: list[str]

    @property
    def warnings(self) -> list[str]:
        """The program's warnings, then what a real preview would stop at (secrets, network)."""
        return [*self.recording.warnings, *self.secrets.warnings(self.path.name), *self.endpoint_notes]


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


def plan_stack(path: Path, program: Path, region_plans: Optional[dict[str, StackPlan]] = None,
               deployer_cidrs: Sequence[ipaddress.IPv4Network] = ()) -> StackPlan:
    """Plan one stack file by running ``program`` (the project's ``__main__.py``).

    ``region_plans`` supplies the outputs a global stack's StackReferences read;
    ``deployer_cidrs`` is the network ``pulumi`` will run from, if known.
    Raises ConfigError for invalid config; anything else the program raises propagates.
    """
    cfg = load_stack_file(path)
    sf = read_stack_file(path)
    kind = "global" if isinstance(cfg, GlobalConfig) else "region"
    config = {k: v for k, v in sf.config.items() if not (isinstance(v, dict) and set(v) == {"secure"})}
    secret_keys = sorted(sf.secret_keys)
    secrets = secrets_report(sf, kind, stack_environments(path))
    for full in secrets.sources:
        # Encrypted (or ESC) values cannot be read offline; the plan only needs them to be secret.
        config[full] = PLACEHOLDER_SECRET
        secret_keys.append(full)
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
    notes = endpoint_notes(cfg, list(deployer_cidrs)) if isinstance(cfg, RegionConfig) else []
    return StackPlan(sf.stack, path, cfg, recording, secrets, notes)


def stack_files(stacks_dir: Path) -> list[Path]:
    """Every stack file in ``stacks_dir``, region stacks before global ones."""
    files = sorted(stacks_dir.glob("Pulumi.*.yaml"))

    def is_global(p: Path) -> bool:
        try:
            return isinstance(load_stack_file(p), GlobalConfig)
        except ConfigError:
            return False

    return sorted(files, key=is_global)

