"""Write the Kubernetes objects a plan creates and check them with real validators.

- Built-in kinds: ``kubernetes-validate`` in strict mode (unknown fields are errors)
  against one pinned Kubernetes version.
- HorizontalPodAutoscalers: their enum fields too, which the OpenAPI schemas leave as
  free strings (a typo such as ``type: external`` passes the schema and fails the API).
- PrometheusRules: ``promtool check rules`` on their groups, when promtool is installed.
- Other custom resources have no schema here; they are written and listed as unchecked.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

#: The Kubernetes version manifests are validated against (the clusters' pinned minor).
KUBERNETES_VERSION = "1.33.0"

HPA_ENUMS = {
    "metricTypes": {"Object", "Pods", "Resource", "External", "ContainerResource"},
    "targetTypes": {"Utilization", "Value", "AverageValue"},
    "policyTypes": {"Pods", "Percent"},
    "selectPolicies": {"Max", "Min", "Disabled"},
}


@dataclass
class ManifestReport:
    written: list[Path] = field(default_factory=list)
    #: (file, message) for every object that failed a check.
    errors: list[tuple[Path, str]] = field(default_factory=list)
    #: Custom resources with no schema to check against.
    unchecked: list[Path] = field(default_factory=list)


def hpa_enum_errors(manifest: dict) -> list[str]:
    """Enum violations in an autoscaling/v2 HPA (empty when valid)."""
    spec = manifest.get("spec") or {}
    errors = []
    for i, metric in enumerate(spec.get("metrics") or []):
        mtype = metric.get("type")
        if mtype not in HPA_ENUMS["metricTypes"]:
            errors.append(f"spec.metrics[{i}].type: {mtype!r} is not one of {sorted(HPA_ENUMS['metricTypes'])}")
            continue
        body = metric.get(mtype[0].lower() + mtype[1:]) or {}
        if not body:
            errors.append(f"spec.metrics[{i}]: type {mtype} needs the {mtype[0].lower() + mtype[1:]} field")
        ttype = (body.get("target") or {}).get("type")
        if ttype not in HPA_ENUMS["targetTypes"]:
            errors.append(f"spec.metrics[{i}].target.type: {ttype!r} is not one of {sorted(HPA_ENUMS['targetTypes'])}")
    for direction in ("scaleUp", "scaleDown"):
        rules = (spec.get("behavior") or {}).get(direction) or {}
        sp = rules.get("selectPolicy")
        if sp is not None and sp not in HPA_ENUMS["selectPolicies"]:
            errors.append(f"spec.behavior.{direction}.selectPolicy: {sp!r} is not one of {sorted(HPA_ENUMS['selectPolicies'])}")
        for j, policy in enumerate(rules.get("policies") or []):
            if policy.get("type") not in HPA_ENUMS["policyTypes"]:
                errors.append(f"spec.behavior.{direction}.policies[{j}].type: {policy.get('type')!r} is not one of {sorted(HPA_ENUMS['policyTypes'])}")
    return errors


def promtool_errors(groups: list[dict]) -> list[str]:
    """``promtool check rules`` output for failing groups; empty when valid or promtool absent."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": groups}, f)
    try:
        proc = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    finally:
        Path(f.name).unlink()
    return [] if proc.returncode == 0 else [(proc.stdout + proc.stderr).strip()]


def _filename(index: int, manifest: dict) -> str:
    meta = manifest.get("metadata") or {}
    parts = [manifest.get("kind", "Object"), meta.get("namespace", ""), meta.get("name", "")]
    slug = "-".join(re.sub(r"[^a-zA-Z0-9.-]+", "-", p) for p in parts if p)
    return f"{index:03d}-{slug}.yaml"


@functools.lru_cache(maxsize=1)
def _schema_dir() -> str:
    """The strict schema folder ``kubernetes_validate.validate`` picks for KUBERNETES_VERSION
    (the newest schema version not newer than it; kubernetes-validate 1.37.0, utils.py)."""
    want = kv_utils.major_minor(KUBERNETES_VERSION)
    version = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= want][-1]
    return f"kubernetes-json-schema/v{version}-local-strict"


@functools.lru_cache(maxsize=1)
def _definitions() -> Resource:
    # The 1.45 MB definitions file, parsed once per process instead of once per manifest.
    return Resource.from_contents(kv_utils.schema_contents(f"{_schema_dir()}/_definitions.json", KUBERNETES_VERSION))


@functools.lru_cache(maxsize=None)
def _validator(kind: str, api_version: str) -> Optional[jsonschema.Draft202012Validator]:
    """One validator per kind, built from the same files and registry as
    ``kubernetes_validate.validate(..., strict=True)``; None when there is no schema."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(f"{_schema_dir()}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    registry = _definitions() @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(manifest: dict) -> tuple[bool, list[str]]:
    """(checked, errors) for one manifest."""
    errors: list[str] = []
    validator = _validator(manifest["kind"], manifest["apiVersion"])
    if validator is None:
        if manifest.get("kind") == "PrometheusRule":
            return True, promtool_errors((manifest.get("spec") or {}).get("groups") or [])
        return False, []
    # The first error, as Validator.validate raises it (and kubernetes_validate reports it).
    error = next(validator.iter_errors(manifest), None)
    if error is not None:
        where = ".".join(str(p) for p in error.path)
        errors.append(f"{where}: {error.message}" if where else error.message)
    if manifest.get("kind") == "HorizontalPodAutoscaler":
        errors.extend(hpa_enum_errors(manifest))
    return True, errors


def write_and_validate(manifests: list[dict], out_dir: Path) -> ManifestReport:
    """Write each manifest to ``out_dir`` (emptied first) and check it."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    report = ManifestReport()
    for i, manifest in enumerate(manifests, 1):
        path = out_dir / _filename(i, manifest)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        report.written.append(path)
        checked, errors = validate(manifest)
        if not checked:
            report.unchecked.append(path)
        report.errors.extend((path, e) for e in errors)
    return report
