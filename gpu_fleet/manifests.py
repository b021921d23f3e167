"""Write the Kubernetes objects a plan creates and check them with real validators.

- Built-in kinds: ``kubernetes-validate`` in strict mode (unknown fields are errors)
  against one pinned Kubernetes version.
- HorizontalPodAutoscalers: their enum fields too, which the OpenAPI schemas leave as
  free strings (a typo such as ``type: external`` passes the schema and fails the API).
- PrometheusRules: ``promtool check rules`` on their groups, when promtool is installed.
- Other custom resources have no schema here; they are written and listed as unchecked.

Writes never destroy what the plan did not write: the output folder is one the plan
created or marked (:data:`MARKER`); a stack's folder is written beside its old one and
moved into place (:func:`write_and_validate`), so a reader, a concurrent plan or an
interrupt sees the old files or the new ones, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from gpu_fleet.components import pins
from gpu_fleet.components.config import KUBERNETES_ANNOTATIONS_MAX_BYTES

#: The Kubernetes version manifests are validated against (the clusters' pinned minor).
KUBERNETES_VERSION = f"{pins.KUBERNETES.version}.0"

HPA_ENUMS = {
    "metricTypes": {"Object", "Pods", "Resource", "External", "ContainerResource"},
    "targetTypes": {"Utilization", "Value", "AverageValue"},
    "policyTypes": {"Pods", "Percent"},
    "selectPolicies": {"Max", "Min", "Disabled"},
}


#: Marks a folder as written by ``gpu-fleet plan``: in the output folder, and in each stack's
#: folder, where it lists the files the plan wrote there.
MARKER = ".gpu-fleet-plan"
_MARKER_TEXT = "written by gpu-fleet plan; it replaces the folders beside this file on every plan\n"


class OutputError(Exception):
    """The output folder cannot be written without touching what the plan did not write."""


def _mark(folder: Path, names: list[str] | None = None) -> None:
    text = _MARKER_TEXT + "".join(f"{n}\n" for n in names or [])
    (folder / MARKER).write_text(text, encoding="utf-8")


def prepare_output(out: Path) -> None:
    """Make ``out`` the plan's output folder, touching nothing of anyone else's.

    A missing folder is created and marked, an empty one marked, a marked one used; any
    other (a file, a folder with content but no marker) raises OutputError.
    """
    try:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: --out: is a file, not a folder")
        if out.is_dir() and (out / MARKER).is_file():
            return
        if out.is_dir() and any(out.iterdir()):
            raise OutputError(f"{out}: --out: the folder is not empty and was not written by gpu-fleet plan (it has "
                              f"no {MARKER} file); name a new or empty folder, nothing was written")
        out.mkdir(parents=True, exist_ok=True)
        _mark(out)
    except OSError as e:
        raise OutputError(f"{out}: --out: cannot write there: {e.strerror or e}") from None


def _written_by_us(folder: Path) -> bool:
    """Whether ``folder`` holds exactly the files a plan listed in its marker."""
    try:
        listed = (folder / MARKER).read_text(encoding="utf-8").splitlines()[1:]
        present = {p.name for p in folder.iterdir()}
    except (OSError, UnicodeDecodeError):
        return False
    return present == {MARKER, *listed} and not any(p.is_dir() and not p.is_symlink() for p in folder.iterdir())


def _remove_written(folder: Path) -> None:
    """Delete a folder a plan wrote: the files its marker lists, the marker, then the folder."""
    listed = (folder / MARKER).read_text(encoding="utf-8").splitlines()[1:]
    for name in listed:
        (folder / name).unlink(missing_ok=True)
    (folder / MARKER).unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails when something was added meanwhile: that stays


def _restore(old: Path, target: Path) -> None:
    with contextlib.suppress(OSError):
        os.rename(old / target.name, target)
        old.rmdir()


@contextlib.contextmanager
def _exclusive(marker: Path) -> Iterator[None]:
    """Plans into one output folder replace their stack folders one at a time: an exclusive
    ``flock`` on the output folder's marker (which the plan owns), across processes and
    threads. Without it, one plan's checks of the folder race another's renames."""
    try:
        fd = os.open(marker, os.O_RDONLY)
    except OSError:
        yield  # no marker to lock (a folder prepared elsewhere): the renames alone
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _replace(stage: Path, target: Path) -> None:
    """Move the complete folder ``stage`` to ``target``, setting aside a previous plan's folder.

    Concurrent plans into one folder each land complete; the last one wins.
    """
    for _ in range(50):
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise OutputError(f"{target}: not written by gpu-fleet plan; move it away, nothing was written")
        try:
            os.rename(stage, target)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise OutputError(f"{target}: cannot write: {e.strerror or e}") from None
        if not _written_by_us(target):
            if not target.exists():
                continue  # another plan moved it away meanwhile
            raise OutputError(f"{target}: holds files gpu-fleet plan did not write (or its {MARKER} is missing); move "
                              "them away, nothing was written")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        try:
            os.rename(target, old / target.name)
        except FileNotFoundError:
            old.rmdir()
            continue  # another plan moved it first
        except OSError as e:
            old.rmdir()
            raise OutputError(f"{target}: cannot replace: {e.strerror or e}") from None
        try:
            os.rename(stage, target)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                _restore(old, target)
                raise
            # Another plan landed in between: retire the folder set aside and try again.
            _remove_written(old / target.name)
            with contextlib.suppress(OSError):
                old.rmdir()
            continue
        except BaseException:
            _restore(old, target)  # Ctrl-C: put the previous plan back rather than leave nothing
            raise
        _remove_written(old / target.name)
        with contextlib.suppress(OSError):
            old.rmdir()
        return
    raise OutputError(f"{target}: other plans kept replacing it; try again")


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


class ObjectTooLarge(Exception):
    """A planned object the API server would refuse whatever its schema says."""


def check_annotations(manifests: list[dict]) -> None:
    """ObjectTooLarge for the first object whose annotations exceed Kubernetes' limit
    (:data:`gpu_fleet.components.config.KUBERNETES_ANNOTATIONS_MAX_BYTES`). The config check
    catches the known cause (an AWS Ingress's ``allowedCidrs``) before planning; this one
    is the backstop for any object."""
    for manifest in sorted(manifests, key=_sort_key):
        metadata = manifest.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > KUBERNETES_ANNOTATIONS_MAX_BYTES:
            name = "/".join(str(metadata[k]) for k in ("namespace", "name") if metadata.get(k))
            raise ObjectTooLarge(f"{manifest.get('kind')} {name}: metadata.annotations: {size:,} bytes; Kubernetes "
                                 f"accepts at most {KUBERNETES_ANNOTATIONS_MAX_BYTES:,} in all")


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


#: libyaml's emitter, when PyYAML was built with it, is about 10x faster than the Python one.
_C_SAFE_DUMPER = getattr(yaml, "CSafeDumper", None)
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def _simple_key(key: object) -> bool:
    # PyYAML writes an empty key, or one of 128 characters or more, as ``? key``; libyaml does not.
    return isinstance(key, str) and 0 < len(key) < 100 and _plain_ascii(key)


def _plain_ascii(value: object) -> bool:
    """Whether every string in ``value`` is printable ASCII and every key a short string:
    such strings are written plain or single-quoted, which both emitters wrap alike;
    double-quoted ones (newlines, tabs, non-ASCII) they wrap differently (PyYAML 6 also
    breaks inside words)."""
    if isinstance(value, str):
        return _PRINTABLE_ASCII.fullmatch(value) is not None
    if isinstance(value, dict):
        return all(_simple_key(k) and _plain_ascii(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_ascii(v) for v in value)
    return True


def dump_yaml(manifest: dict) -> str:
    """``yaml.safe_dump(manifest, sort_keys=False)``, byte for byte, faster when it can be."""
    if _C_SAFE_DUMPER is not None and _plain_ascii(manifest):
        return yaml.dump(manifest, Dumper=_C_SAFE_DUMPER, sort_keys=False)
    return yaml.safe_dump(manifest, sort_keys=False)


def _sort_key(manifest: dict) -> tuple[str, str, str, str]:
    meta = manifest.get("metadata") or {}
    return (str(manifest.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")),
            str(manifest.get("apiVersion", "")))


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
    """Write each manifest to ``out_dir`` and check it.

    ``out_dir`` is ``<output folder>/<stack>``, the output folder prepared by
    :func:`prepare_output`. The files go to a new folder beside it, which then replaces
    the previous plan's ``out_dir`` (OutputError if ``out_dir`` holds anything else;
    ObjectTooLarge, with nothing written, for an object Kubernetes would refuse). Files are numbered in (kind, namespace, name) order, so the same plan writes the same
    bytes.
    """
    if out_dir.name in ("", ".", "..") or out_dir.name.startswith("."):
        raise OutputError(f"{out_dir}: not a stack folder")
    check_annotations(manifests)  # before anything is written
    report = ManifestReport()
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    except OSError as e:
        raise OutputError(f"{out_dir.parent}: cannot write: {e.strerror or e}") from None
    try:
        names = []
        for i, manifest in enumerate(sorted(manifests, key=_sort_key), 1):
            name = _filename(i, manifest)
            (stage / name).write_text(dump_yaml(manifest), encoding="utf-8")
            names.append(name)
            path = out_dir / name
            report.written.append(path)
            checked, errors = validate(manifest)
            if not checked:
                report.unchecked.append(path)
            report.errors.extend((path, e) for e in errors)
        _mark(stage, names)
        stage.chmod(0o755)  # mkdtemp makes it private; the plan's folders are ordinary ones
        with _exclusive(out_dir.parent / MARKER):
            _replace(stage, out_dir)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot write: {e.strerror or e}") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage)  # the unfinished folder this call created
    return report
