"""``gpu-fleet plan`` never deletes what it did not write, and bad paths are one-line errors.

The data-loss cases of issue 14 (``--out ~``, ``--out .``, stack files named ``Pulumi...yaml``
and ``Pulumi....yaml``), the output folder's marker, atomic replacement under concurrency
and interrupts, Ctrl-C, ``--config`` from outside the project, byte-identical output, and
the policy pack over the region stacks a global plan plans.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gpu_fleet import cli, manifests, policy_check

REPO = Path(__file__).resolve().parents[2]
MARKER = manifests.MARKER


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (symlinks as their target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
        else:
            out[rel + "/"] = b""
    return out


def _project(tmp_path: Path, program: str = "pass\n") -> Path:
    """A throwaway project with the reference stacks and a trivial program."""
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    (project / "__main__.py").write_text(program)
    for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, project / "stacks" / path.name)
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "notes.md").write_text("mine\n")
    return project


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# --------------------------------------------------------------------------- folders the plan did not write

def test_out_home_with_the_users_stack_folder_is_refused(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    (home / "us-east").mkdir(parents=True)
    (home / "us-east" / "notes.txt").write_text("my notes\n")
    (home / ".bashrc").write_text("export A=1\n")
    before = _tree(home)
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "us-east", "--out", str(home)]) == 2
    assert _one_line(capsys) == (f"{home}: --out: the folder is not empty and was not written by gpu-fleet plan (it "
                                 f"has no {MARKER} file); name a new or empty folder, nothing was written")
    assert _tree(home) == before


def test_out_dot_in_the_project_is_refused(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    before = _tree(project)
    monkeypatch.chdir(project)
    assert cli.main(["plan", "us-east", "--out", "."]) == 2
    assert "--out: the folder is not empty and was not written by gpu-fleet plan" in _one_line(capsys)
    assert _tree(project) == before


def test_default_folder_with_other_content_is_refused(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    (project / "build" / "plan" / "lib").mkdir(parents=True)
    (project / "build" / "plan" / "lib" / "wheel.py").write_text("x = 1\n")
    before = _tree(project)
    monkeypatch.chdir(project)
    assert cli.main(["plan"]) == 2
    assert _one_line(capsys).startswith(f"{project / 'build' / 'plan'}: --out: the folder is not empty")
    assert _tree(project) == before


def test_default_folder_is_its_own_beside_setuptools_build(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    (project / "build" / "lib").mkdir(parents=True)  # what pip install . leaves in the project
    (project / "build" / "lib" / "wheel.py").write_text("x = 1\n")
    monkeypatch.chdir(project)
    assert cli.main(["plan", "us-east"]) == 0
    assert (project / "build" / "lib" / "wheel.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in (project / "build" / "plan").iterdir()) == [MARKER, "us-east"]


@pytest.mark.parametrize("name", ["Pulumi...yaml", "Pulumi....yaml"])
def test_dot_stack_files_touch_nothing(tmp_path, monkeypatch, capsys, name):
    project = _project(tmp_path)
    shutil.copy(project / "stacks" / "Pulumi.us-east.yaml", project / "stacks" / name)
    before = _tree(project)
    monkeypatch.chdir(project)
    assert cli.main(["plan", "--config", f"stacks/{name}"]) == 2
    assert f"stack: {name[7:-5]!r} is not a Pulumi stack name" in _one_line(capsys)
    assert _tree(project) == before  # .git and all


def test_a_file_as_out_is_refused(tmp_path, monkeypatch, capsys):
    target = tmp_path / "plan.txt"
    target.write_text("keep\n")
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "us-east", "--out", str(target)]) == 2
    assert _one_line(capsys) == f"{target}: --out: is a file, not a folder"
    assert target.read_text() == "keep\n"


# --------------------------------------------------------------------------- the marker and atomic replacement

def _manifests(n: int, tag: str) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}, "data": {"run": tag}}
            for i in range(n)]


def _stack_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    manifests.prepare_output(out)
    return out / "demo"


def test_output_folder_is_created_marked_and_replaced(tmp_path):
    folder = _stack_folder(tmp_path)
    assert (folder.parent / MARKER).is_file()
    manifests.write_and_validate(_manifests(3, "one"), folder)
    manifests.write_and_validate(_manifests(2, "two"), folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [MARKER, "001-ConfigMap-cm-0.yaml", "002-ConfigMap-cm-1.yaml"]
    assert all("two" in (folder / n).read_text() for n in names[1:])
    assert sorted(p.name for p in folder.parent.iterdir()) == [MARKER, "demo"]  # no staging left behind


def test_a_file_added_to_a_stack_folder_is_kept_and_the_plan_refused(tmp_path):
    folder = _stack_folder(tmp_path)
    manifests.write_and_validate(_manifests(2, "one"), folder)
    (folder / "my-notes.txt").write_text("mine\n")
    with pytest.raises(manifests.OutputError, match="holds files gpu-fleet plan did not write"):
        manifests.write_and_validate(_manifests(2, "two"), folder)
    assert (folder / "my-notes.txt").read_text() == "mine\n"
    assert "one" in (folder / "001-ConfigMap-cm-0.yaml").read_text()
    assert sorted(p.name for p in folder.parent.iterdir()) == [MARKER, "demo"]


def test_a_symlinked_stack_folder_is_not_followed(tmp_path):
    folder = _stack_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("x")
    folder.symlink_to(elsewhere)
    with pytest.raises(manifests.OutputError, match="not written by gpu-fleet plan"):
        manifests.write_and_validate(_manifests(1, "one"), folder)
    assert (elsewhere / "data").read_text() == "x" and folder.is_symlink()


def test_concurrent_plans_never_leave_a_mix(tmp_path):
    folder = _stack_folder(tmp_path)
    sets = {tag: _manifests(n, tag) for tag, n in (("a", 3), ("b", 5), ("c", 4))}
    errors: list[BaseException] = []

    def plan(tag: str) -> None:
        try:
            for _ in range(8):
                manifests.write_and_validate(sets[tag], folder)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=plan, args=(tag,)) for tag in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = sorted(p for p in folder.iterdir() if p.name != MARKER)
    tags = {yaml.safe_load(p.read_text())["data"]["run"] for p in files}
    assert len(tags) == 1 and len(files) == len(sets[tags.pop()])
    assert sorted(p.name for p in folder.parent.iterdir()) == [MARKER, "demo"]


def test_an_interrupt_while_writing_keeps_the_previous_plan(tmp_path, monkeypatch):
    folder = _stack_folder(tmp_path)
    manifests.write_and_validate(_manifests(3, "old"), folder)
    before = _tree(folder)
    calls = []

    def interrupted(manifest):
        calls.append(manifest)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return True, []

    monkeypatch.setattr(manifests, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        manifests.write_and_validate(_manifests(3, "new"), folder)
    assert _tree(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [MARKER, "demo"]


def test_an_unwritable_output_folder_deletes_nothing(tmp_path, monkeypatch):
    folder = _stack_folder(tmp_path)
    manifests.write_and_validate(_manifests(2, "old"), folder)
    before = _tree(folder)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manifests.tempfile, "mkdtemp", read_only)
    with pytest.raises(manifests.OutputError, match="cannot write: Permission denied"):
        manifests.write_and_validate(_manifests(2, "new"), folder)
    assert _tree(folder) == before


# --------------------------------------------------------------------------- paths and Ctrl-C

def test_stack_file_not_named_like_a_stack(tmp_path, monkeypatch, capsys):
    config = tmp_path / "us-east.yaml"
    shutil.copy(REPO / "stacks" / "Pulumi.us-east.yaml", config)
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert _one_line(capsys) == (f"{config}: stack: a stack file is named Pulumi.<stack>.yaml (Pulumi finds a stack's "
                                 "config by that name); got 'us-east.yaml'")


def test_outside_any_project_without_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan"]) == 2
    assert "project: no Pulumi.yaml at or above" in _one_line(capsys)


def test_config_from_outside_the_project_gives_the_same_bytes(fleet, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "us-east", "--format", "json", "--out", str(out)]) == 0
    first, files = capsys.readouterr().out, _tree(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["plan", "--config", str(REPO / "stacks" / "Pulumi.us-east.yaml"), "--format", "json",
                     "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert second == first  # byte-identical JSON (no timings, resources in a fixed order)
    assert _tree(out) == files  # byte-identical manifests
    assert json.loads(first)["stacks"][0]["manifests"]["written"]


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "gpu_fleet.cli", "plan", "--out", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / MARKER).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside the plan by now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["gpu-fleet: interrupted"]
    # Whatever was written is complete stack folders, nothing half-written.
    assert all(p.name == MARKER or not p.name.startswith(".") for p in out.iterdir())


# --------------------------------------------------------------------------- policies over the fleet

def test_global_plan_runs_the_policy_pack_on_its_region_stacks(fleet, tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    shutil.copytree(REPO / "policies", project / "policies", ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    checked: list[str] = []

    def evaluate(recording, policies):
        checked.append(recording.stack)
        if recording.stack == "eu-west":
            return [policy_check.Violation("cache-high-availability", policy_check.EnforcementLevel.MANDATORY,
                                           "gcp:redis/instance:Instance", "eu-west-cache", "tier is BASIC")]
        return []

    monkeypatch.setattr(policy_check, "evaluate", evaluate)
    monkeypatch.chdir(project)
    assert cli.main(["plan", "global", "--out", str(tmp_path / "out")]) == 1
    assert sorted(checked) == ["eu-west", "global", "us-east"]
    err = capsys.readouterr().err
    assert "Pulumi.eu-west.yaml: policy pack (planned for the global stack): 1 violation(s)" in err
    assert "cache-high-availability" in err and "Traceback" not in err


# --------------------------------------------------------------------------- what the schemas do not say

def test_annotations_over_256_kib_are_refused_before_writing(tmp_path):
    folder = _stack_folder(tmp_path)
    cidrs = ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(20000))
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "models", "annotations": {"alb.ingress.kubernetes.io/inbound-cidrs": cidrs}},
               "spec": {"ingressClassName": "alb"}}
    size = len("alb.ingress.kubernetes.io/inbound-cidrs") + len(cidrs)
    with pytest.raises(manifests.ObjectTooLarge) as raised:
        manifests.write_and_validate([ingress], folder)
    assert str(raised.value) == f"Ingress models: metadata.annotations: {size:,} bytes; Kubernetes accepts at most 262,144 in all"
    assert not folder.exists()
    small = {**ingress, "metadata": {"name": "models", "annotations": {"a": "x" * 1000}}}
    assert manifests.write_and_validate([small], folder).errors == []
