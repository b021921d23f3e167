"""Property: whatever the stack file holds, ``gpu-fleet plan --config`` exits 0 or 2, in one
line per problem, never with a traceback, and touches nothing outside its output folder.

Inputs: random YAML documents, random bytes, and random edits of the reference region
stacks (a value replaced, a line deleted, duplicated or cut, bytes inserted). A bounded
number of examples keeps the suite fast; edits that stay valid run the real program.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gpu_fleet import cli, manifests

REPO = Path(__file__).resolve().parents[2]
REGIONS = {name: (REPO / "stacks" / f"Pulumi.{name}.yaml").read_text() for name in ("us-east", "eu-west")}

# Integers past what a double holds exactly, and past its range, too (Pulumi passes numbers as doubles).
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([2**53 + 1, -(10**400)]),
                    st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["h100", "aws", "gcp", "region", "10.0.0.0/8", "1.33"]))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                         max_size=4), max_leaves=12)


@st.composite
def random_documents(draw) -> bytes:
    body = draw(values)
    if draw(st.booleans()):
        body = {"config": {"gpu-fleet:fleet": body}}
    return yaml.safe_dump(body, allow_unicode=True).encode()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def edited_references(draw) -> bytes:
    text = REGIONS[draw(st.sampled_from(sorted(REGIONS)))]
    how = draw(st.sampled_from(["value", "delete", "duplicate", "cut", "insert"]))
    lines = text.splitlines(keepends=True)
    if how == "value":
        doc = yaml.safe_load(text)
        path = draw(st.sampled_from(_paths(doc["config"]["gpu-fleet:fleet"])[1:]))
        node = doc["config"]["gpu-fleet:fleet"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = draw(values)
        return yaml.safe_dump(doc, allow_unicode=True).encode()
    i = draw(st.integers(0, len(lines) - 1))
    if how == "delete":
        return "".join(lines[:i] + lines[i + 1:]).encode()
    if how == "duplicate":
        return "".join(lines[:i + 1] + lines[i:]).encode()
    data = text.encode()
    at = draw(st.integers(0, len(data)))
    if how == "cut":
        return data[:at]
    return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]


stack_files = st.one_of(random_documents(), edited_references(), st.binary(max_size=64))


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in filenames + dirnames:
            if here / name == skip:
                continue  # the output folder itself changes (its stack folders are replaced)
            st_ = (here / name).lstat()
            out[str((here / name).relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def project():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        (root / "stacks").mkdir(parents=True)
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(REPO / name, root / name)
        for path in (REPO / "stacks").glob("Pulumi.*.yaml"):
            shutil.copy(path, root / "stacks" / path.name)
        yield root


# No shrinking: an example that plans runs the whole program, and shrinking would replay it
# hundreds of times; the failing input is printed as generated.
@settings(max_examples=25, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(content=stack_files)
def test_any_stack_file_is_planned_or_refused_in_one_line(project, monkeypatch, content):
    monkeypatch.chdir(project)
    stack = project / "stacks" / "Pulumi.fuzz.yaml"
    stack.write_bytes(content)
    out = project / "out"
    before = _snapshot(project, out)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["plan", "--config", str(stack), "--out", str(out)])
    finally:
        pulumi.runtime.settings.set_root_resource(None)  # the mocks are process-global
    lines = err.getvalue().splitlines()
    assert code in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert lines and all(line.startswith(str(stack)) for line in lines), lines
    assert _snapshot(project, out) == before  # nothing outside the output folder changed
    if out.exists():
        assert {p.name for p in out.iterdir()} <= {manifests.MARKER, "fuzz"}
