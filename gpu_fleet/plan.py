"""Plan stacks offline: the real program under recording mocks, with the real stack config.

Region stacks are planned first so the global stack's ``StackReference``s can be answered
with their (offline) outputs, exactly the names ``pulumi up`` would export.
"""

from __future__ import annotations

import ipaddress
import os
import runpy
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from gpu_fleet.components.config import (
    ConfigError,
    FleetConfig,
    GlobalConfig,
    Problem,
    RegionConfig,
    StackFile,
    load_stack_file,
    read_stack_file,
)
from gpu_fleet.components import yaml_reader
from gpu_fleet.components.global_routing import stack_reference_name
from gpu_fleet.components.program import STACKS_DIR_ENV

from . import engine
from .readiness import STACK_FILE_SOURCE, SecretsReport, endpoint_notes, secrets_report, stack_environments

#: Stand-in for secret config the stack file does not set (secrets are never in the repo).
PLACEHOLDER_SECRET = "offline-plan-placeholder"


@dataclass
class StackPlan:
    stack: str
    path: Path
    #: The fleet's config; None for a program of your own (``--program``).
    config: Optional[FleetConfig]
    recording: engine.Recording
    #: Where each secret ``pulumi up`` needs comes from (stack file, ESC, nowhere).
    secrets: SecretsReport
    #: Why the deployer's network cannot reach the cluster API (empty: it can, or unknown).
    endpoint_notes: list[str]

    @property
    def warnings(self) -> list[str]:
        """The program's warnings, then what a real preview would stop at (secrets, network)."""
        return [*self.recording.warnings, *self.secrets.warnings(self.path.name), *self.endpoint_notes]


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



def _program_project(program_dir: Path) -> tuple[str, Path]:
    """A Python Pulumi project's name and the folder its program runs from (``main``)."""
    path = program_dir / "Pulumi.yaml"
    try:
        doc = yaml_reader.read(path)
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem("program", "no such file: --program names a Pulumi project folder")]) from None
    except (OSError, yaml_reader.YamlError) as e:
        raise ConfigError(str(path), [Problem("program", f"cannot read: {e}")]) from None
    name = doc.get("name") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError(str(path), [Problem("name", "required: the project's name")])
    runtime = doc.get("runtime")
    runtime = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime != "python":
        raise ConfigError(str(path), [Problem("runtime", f"{runtime!r}: gpu-fleet plans Python programs only")])
    main = program_dir / str(doc.get("main") or ".")
    if not main.is_dir() or not (main / "__main__.py").exists():
        raise ConfigError(str(path), [Problem("main", f"no __main__.py in {main}")])
    return name, main


def plan_program(program_dir: Path, stack: str) -> StackPlan:
    """Plan a Pulumi Python program of your own (``gpu-fleet plan --program DIR --stack NAME``).

    Its ``Pulumi.yaml`` names the project (config keys without a namespace belong to it)
    and ``main``; ``Pulumi.<stack>.yaml`` beside it, if any, holds the stack's config, with
    ``secure:`` values replaced by a placeholder kept secret. The program runs as Pulumi's
    Python host runs it: ``runpy.run_path`` of the program folder as ``__main__``, from that
    folder, with it first on ``sys.path``. Raises ConfigError for an unusable project or
    stack file; anything else the program raises propagates.
    """
    program_dir = program_dir.absolute()
    project, main = _program_project(program_dir)
    path = program_dir / f"Pulumi.{stack}.yaml"
    sf = read_stack_file(path) if path.exists() else StackFile(stack, path, {}, frozenset())

    def full(key: str) -> str:
        return key if ":" in key else f"{project}:{key}"

    config = {full(k): v for k, v in sf.config.items() if k not in sf.secret_keys}
    secret_keys = sorted(full(k) for k in sf.secret_keys)
    config.update({k: PLACEHOLDER_SECRET for k in secret_keys})
    recording = engine.Recording(stack=sf.stack)
    engine.install(recording, config, tuple(secret_keys), project=project)
    cwd, sys_path = os.getcwd(), list(sys.path)
    try:
        os.chdir(main)
        sys.path.insert(0, str(main))
        engine.run(lambda: runpy.run_path(str(main), run_name="__main__"), recording)
    finally:
        os.chdir(cwd)
        sys.path[:] = sys_path
    secrets = SecretsReport((), {k: STACK_FILE_SOURCE for k in secret_keys})
    return StackPlan(sf.stack, path, None, recording, secrets, [])
