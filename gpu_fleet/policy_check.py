"""Evaluate the CrossGuard policy pack offline, against a recorded plan.

``pulumi preview --policy-pack policies`` needs the Pulumi CLI and real clouds;
``gpu-fleet plan`` has neither, so this module runs the *same* policy objects (from
``policies/rules.py``) the way pulumi_policy's analyzer would:

- every resource policy on every recorded resource, with a real
  ``ResourceValidationArgs`` (type, inputs, URN, name, options, provider, config);
- every stack policy once, with a real ``StackValidationArgs`` over every resource but
  the providers (``PolicyResource`` with parent and dependencies linked), as the engine
  does;
- props are the recorded inputs (camelCase) behind pulumi_policy's own unknown-checking
  proxy, so rules see the Mapping/Sequence types a Pulumi run hands them. Pulumi gives
  stack policies outputs instead: for custom resources those only add computed
  attributes; for a component they are what it passes to ``register_outputs``, which the
  mocks do not record, so a component whose props a stack policy reads must register
  them as outputs too;
- enforcement levels and per-policy config follow Pulumi's policy config format
  (``{"<policy>": "advisory"}``, ``{"<policy>": {"enforcementLevel": ..., <property>:
  ...}}``, ``{"all": "mandatory"}``); ``get_config()`` returns the policy's schema
  defaults merged with the overrides; ``remediate`` reports as mandatory, ``disabled``
  skips, a policy calling ``args.not_applicable()`` reports nothing.

Secrets: a Pulumi run hands policies secret values decrypted and unmarked. The recording
keeps them marked, so here every Pulumi secret is passed as ``pulumi_policy.Secret``
(the wrapper pulumi_policy uses for secrets in remediations) and policies with a
``secretMarkers`` config property get it set to true: ``secret-inputs-encrypted`` then
tells a Pulumi secret (safe) from a plaintext credential, which a Pulumi run cannot.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from types import ModuleType
from dataclasses import dataclass
from inspect import isawaitable
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from pulumi.runtime import rpc
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)

# What args.not_applicable() raises; pulumi_policy keeps it private but its analyzer
# catches exactly this class.
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import unknown_checking_proxy

from . import engine
from .project import project_dir

#: The policy rules, relative to the project folder (not part of the installed package).
RULES = Path("policies") / "rules.py"
RULES_MODULE = "gpu_fleet_policy_rules"
#: The config property telling a policy that secrets arrive marked (see module docstring).
SECRET_MARKERS = "secretMarkers"
#: pulumi_policy's default for a policy without its own level (``PolicyPack``'s default).
DEFAULT_LEVEL = EnforcementLevel.ADVISORY

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "array": (list, tuple), "object": (dict,),
}
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Violation:
    """One policy violation.

    policy: the policy's name. enforcement_level: as configured (``REMEDIATE`` reports as
    ``MANDATORY``, like Pulumi). resource_type / resource_name / urn: the resource in
    violation, None for a stack policy's violation of the whole stack. message: what the
    policy reported (without its description).
    """

    policy: str
    enforcement_level: EnforcementLevel
    resource_type: Optional[str]
    resource_name: Optional[str]
    message: str
    urn: Optional[str] = None

    @property
    def mandatory(self) -> bool:
        """Whether this violation blocks ``pulumi up`` (and fails ``gpu-fleet plan``)."""
        return self.enforcement_level == EnforcementLevel.MANDATORY

    def __str__(self) -> str:
        where = f"{self.resource_type}  {self.resource_name}" if self.resource_type else "stack"
        return f"[{self.enforcement_level.value}] {self.policy}: {where}: {self.message}"


def load_pack(project: Path) -> dict[str, ModuleType]:
    """The modules of ``<project>/policies/`` by file name (``rules``: ``rules.py``, imported
    by path).

    The pack's modules import each other by bare name (``contract``, ``hpa_rules``...), as
    Pulumi runs them with their folder first on ``sys.path``; here the folder is on the path
    only while loading, and those names are forgotten afterwards (the rules keep their
    references), so neither another project's pack nor a same-named module of the caller's
    is shadowed.
    """
    path = Path(project) / RULES
    folder = str(path.parent)
    siblings = {p.stem for p in path.parent.glob("*.py") if not p.stem.startswith("__")}
    saved = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(RULES_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
    finally:
        sys.path.remove(folder)
        for name in siblings:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return {**modules, "rules": module}


def load_policies(project: Path) -> list[Policy]:
    """The policies of ``<project>/policies/rules.py`` (its ``POLICIES``)."""
    return list(load_pack(project)["rules"].POLICIES)


def _level(policy: str, value: Any) -> EnforcementLevel:
    try:
        return value if isinstance(value, EnforcementLevel) else EnforcementLevel(value)
    except ValueError:
        levels = ", ".join(level.value for level in EnforcementLevel)
        raise ValueError(f"policy config {policy}: enforcement level {value!r} is not one of {levels}") from None


def _settings(policy: Policy, config: Mapping[str, Any]) -> tuple[EnforcementLevel, dict]:
    """The policy's enforcement level and its ``get_config()`` under ``config``."""
    level = policy.enforcement_level or DEFAULT_LEVEL
    if "all" in config:
        level = _level("all", config["all"])
    entry = config.get(policy.name, {})
    if isinstance(entry, (str, EnforcementLevel)):
        entry = {"enforcementLevel": entry}
    entry = dict(entry)
    if "enforcementLevel" in entry:
        level = _level(policy.name, entry.pop("enforcementLevel"))
    schema = policy.config_schema.properties if policy.config_schema else {}
    for key, value in entry.items():
        if key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise ValueError(f"policy config {policy.name}: no property {key!r} (properties: {known})")
        types = _JSON_TYPES.get(schema[key].get("type", ""), (object,))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"policy config {policy.name}.{key}: {value!r} is not of type {schema[key]['type']}")
    settings = {k: v["default"] for k, v in schema.items() if "default" in v}
    if SECRET_MARKERS in schema:
        settings[SECRET_MARKERS] = True
    settings.update(entry)
    if level == EnforcementLevel.REMEDIATE:
        level = EnforcementLevel.MANDATORY
    return level, settings


def _policy_value(value: Any) -> Any:
    """A recorded value as a policy sees it, with Pulumi secrets as ``pulumi_policy.Secret``."""
    if rpc.is_rpc_secret(value):
        return Secret(_policy_value(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, dict):
        return {k: _policy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_policy_value(v) for v in value]
    return value


def _seconds(duration: str) -> float:
    """A custom timeout (Go duration such as ``"30m"``) in seconds; 0 when unset."""
    return sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_DURATION.findall(duration or ""))


def _options(rec: engine.ResourceRecord) -> PolicyResourceOptions:
    timeouts = rec.custom_timeouts
    return PolicyResourceOptions(
        protect=rec.protect,
        ignore_changes=list(rec.ignore_changes),
        delete_before_replace=rec.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(*(_seconds(timeouts.get(k, "")) for k in ("create", "update", "delete"))),
        additional_secret_outputs=[],
        parent=rec.parent or None,
    )


def _run(policy: Policy, args: Any, report: Callable[..., None]) -> None:
    try:
        result = policy.validate(args, report)
        if isawaitable(result):
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(result)
            finally:
                loop.close()
    except _NotApplicableError:
        pass


def evaluate(recording: engine.Recording, policies: Optional[Sequence[Policy]] = None,
             config: Optional[Mapping[str, Any]] = None) -> list[Violation]:
    """Every violation of ``policies`` in ``recording``, resource policies first (in
    registration order), then stack policies.

    recording: a recorded plan (``gpu_fleet.engine.Recording``).
    policies: the policies to run; default None loads ``policies/rules.py`` of the
        project holding the current directory (:func:`load_policies`).
    config: Pulumi policy config (see module docstring); default None keeps every
        policy's own level and schema defaults. ValueError for a policy or property the
        pack does not have, or a value of the wrong type.
    """
    policies = load_policies(project_dir(Path.cwd())) if policies is None else list(policies)
    config = dict(config or {})
    unknown = sorted(set(config) - {p.name for p in policies} - {"all"})
    if unknown:
        raise ValueError(f"policy config names policies the pack does not have: {', '.join(unknown)}")
    active = []
    for policy in policies:
        level, settings = _settings(policy, config)
        if level != EnforcementLevel.DISABLED:
            active.append((policy, level, settings))

    props = {r.urn: unknown_checking_proxy(_policy_value(r.inputs)) for r in recording.resources}
    by_urn = {r.urn: r for r in recording.resources}

    def provider(rec: engine.ResourceRecord) -> Optional[PolicyProviderResource]:
        p = recording.provider_of(rec)
        return PolicyProviderResource(p.type, props[p.urn], p.urn, p.name) if p else None

    violations: list[Violation] = []

    def reporter(policy: Policy, level: EnforcementLevel, default_urn: Optional[str]) -> Callable[..., None]:
        def report(message: str, urn: Optional[str] = None) -> None:
            # Like pulumi_policy: a resource policy's violation is always its resource's.
            target = by_urn.get(default_urn or urn or "")
            violations.append(Violation(policy.name, level, target.type if target else None,
                                        target.name if target else None, message, target.urn if target else None))
        return report

    for rec in recording.resources:
        opts, prov = _options(rec), provider(rec)
        for policy, level, settings in active:
            if isinstance(policy, ResourceValidationPolicy):
                args = ResourceValidationArgs(rec.type, props[rec.urn], rec.urn, rec.name, opts, prov, settings)
                _run(policy, args, reporter(policy, level, rec.urn))

    stack = [r for r in recording.resources if not r.type.startswith("pulumi:providers:")]
    resources = {r.urn: PolicyResource(r.type, props[r.urn], r.urn, r.name, _options(r), provider(r), None, [], {})
                 for r in stack}
    for rec in stack:
        resources[rec.urn].parent = resources.get(rec.parent)
        resources[rec.urn].dependencies = [resources[d] for d in rec.depends_on if d in resources]
    for policy, level, settings in active:
        if isinstance(policy, StackValidationPolicy):
            _run(policy, StackValidationArgs(list(resources.values()), settings), reporter(policy, level, None))
    return violations
