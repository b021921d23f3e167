"""Layers that only import downward, read from the source (ast: nothing is imported).

components/, gpu_fleet/ and the root ``__main__.py`` stack up as :data:`LAYERS` says: the
contract, pure data and the checks config runs, config, pure planning, Pulumi components,
the program, the CLI. A module may import its own layer or lower ones, never higher, and
the import graph (imports inside functions count; ``if TYPE_CHECKING:`` blocks, which never
run, do not) has no cycle. The modules below the gpu_fleet.components import no Pulumi package, the
contract only the standard library. The policy pack (policies/) is a separate program: it
imports only its own modules, ``pulumi_policy`` and the standard library, and carries a
byte-for-byte copy of the contract.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Layer of every module, lowest first. A new module gets a row here.
LAYERS: list[tuple[str, list[str]]] = [
    ("contract", ["gpu_fleet.components", "gpu_fleet.components.contract", "gpu_fleet.components.pins", "gpu_fleet.components.problem"]),
    # What config validates with.
    ("data", ["gpu_fleet.components.yaml_reader", "gpu_fleet.components.gpu_catalog", "gpu_fleet.components.subnets", "gpu_fleet.components.model_catalog",
              "gpu_fleet.components.latency_regions", "gpu_fleet.components.cache_sizing", "gpu_fleet.components.cache_settings",
              "gpu_fleet.components.sizing", "gpu_fleet.components.cloud_limits", "gpu_fleet.components.capacity_tiers"]),
    ("config", ["gpu_fleet.components.config"]),
    ("planning", ["gpu_fleet.components.capacity", "gpu_fleet.components.gateway", "gpu_fleet.components.hpa", "gpu_fleet.components.keda", "gpu_fleet.components.failover",
                  "gpu_fleet.components.monitoring_rules", "gpu_fleet.components.dashboards", "gpu_fleet.components.kubeconfig"]),
    ("components", ["gpu_fleet.components.network", "gpu_fleet.components.aws_cluster", "gpu_fleet.components.gke_cluster",
                    "gpu_fleet.components.karpenter", "gpu_fleet.components.cache", "gpu_fleet.components.entrypoint",
                    "gpu_fleet.components.gpu_software", "gpu_fleet.components.model_deployment", "gpu_fleet.components.monitoring",
                    "gpu_fleet.components.warm_capacity", "gpu_fleet.components.region", "gpu_fleet.components.global_routing"]),
    ("program", ["gpu_fleet.components.program", "__main__"]),
    ("cli", ["gpu_fleet", "gpu_fleet.*"]),
]
#: Layers whose modules import no Pulumi package.
PURE = {"contract", "data", "config", "planning"}
PACK = REPO / "policies"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] == "components":  # installed as gpu_fleet.components (pyproject.toml package-dir)
        parts.insert(0, "gpu_fleet")
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [*(REPO / "components").glob("*.py"), *(REPO / "gpu_fleet").rglob("*.py"), REPO / "__main__.py"]
    return {_module_name(p): p for p in files}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(name: str, path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """The absolute module names ``name`` imports (``from package import module`` names the
    module when it is one of ``modules``, else the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{a.name}" for a in node.names} & modules
            found |= submodules if len(submodules) == len(node.names) else {base, *submodules}
    return found


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    names = frozenset(modules)
    return {name: {i for i in _imports(name, path, names) if i in modules and i != name}
            for name, path in modules.items()}


def _layer_of(name: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if name == member or (member.endswith(".*") and name.startswith(member[:-1])):
                return index
    raise LookupError(name)


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph``, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


MODULES = _sources()
GRAPH = _graph(MODULES)


def test_the_graph_is_read():
    # Guards the checks below against an empty graph passing them.
    assert "gpu_fleet.components.model_deployment" in GRAPH["gpu_fleet.components.region"]
    assert "gpu_fleet.components.config" in GRAPH["gpu_fleet.components.hpa"]
    assert "gpu_fleet.components.sizing" in GRAPH["gpu_fleet.components.config"]
    # A TYPE_CHECKING import is not an edge.
    assert "gpu_fleet.components.config" not in GRAPH["gpu_fleet.components.sizing"]


def test_every_module_has_a_layer():
    missing = []
    for name in MODULES:
        try:
            _layer_of(name)
        except LookupError:
            missing.append(name)
    assert missing == [], f"add these modules to LAYERS: {missing}"


def test_imports_only_go_downward():
    upward = [f"{a} ({LAYERS[_layer_of(a)][0]}) imports {b} ({LAYERS[_layer_of(b)][0]})"
              for a, targets in GRAPH.items() for b in sorted(targets) if _layer_of(b) > _layer_of(a)]
    assert upward == []


def test_no_import_cycle():
    assert _cycle(GRAPH) == []


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_pure_layers_import_no_pulumi():
    pure = [n for n in MODULES if LAYERS[_layer_of(n)][0] in PURE]
    assert "gpu_fleet.components.config" in pure
    found = {n: sorted(i for i in _imports(n, MODULES[n]) if i.split(".")[0].startswith("pulumi")) for n in pure}
    assert {n: i for n, i in found.items() if i} == {}


def test_validating_a_stack_file_loads_no_pulumi_module():
    # The layer checks above read direct imports; this one runs them, transitively.
    code = ("import sys; from gpu_fleet.components.config import load_stack_file; "
            "load_stack_file('stacks/Pulumi.us-east.yaml'); load_stack_file('stacks/Pulumi.global.yaml'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (run.returncode, run.stdout) == (0, "[]\n"), run.stderr


def test_the_contract_uses_the_standard_library_only():
    imported = {i.split(".")[0] for i in _imports("gpu_fleet.components.contract", MODULES["gpu_fleet.components.contract"])}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_policy_pack_vendors_the_contract_byte_for_byte():
    source, copy = REPO / "components" / "contract.py", PACK / "contract.py"
    assert copy.read_bytes() == source.read_bytes(), f"copy {source} over {copy}"


@pytest.mark.parametrize("path", sorted(PACK.glob("*.py")), ids=lambda p: p.name)
def test_the_policy_pack_imports_only_itself_pulumi_policy_and_the_standard_library(path):
    own = {p.stem for p in PACK.glob("*.py")}
    allowed = own | set(sys.stdlib_module_names) | {"pulumi_policy"}
    imported = {i.split(".")[0] for i in _imports(path.stem, path)} - {""}
    assert imported <= allowed, f"{path.name} imports {sorted(imported - allowed)}"
