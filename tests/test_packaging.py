"""``pip install .`` from another directory makes ``gpu_fleet`` importable by another program,
beside that program's own ``components`` package, and a plain install (no extras) gives a
working ``gpu-fleet`` in a fresh virtualenv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]

PROGRAM = '''
import pulumi
import components  # the program's own package: the most common Pulumi layout
import gpu_fleet.components
from gpu_fleet import Region, load_stack_file

cfg = load_stack_file("Pulumi.edge.yaml")
region = Region("edge", {"config": cfg, "hugging_face_token": pulumi.Output.secret("hf"),
                         "api_key": pulumi.Output.secret("key")})
pulumi.export("components_file", gpu_fleet.components.__file__)
pulumi.export("own_components", components.OWN)
pulumi.export("cluster", region.cluster.cluster_name)
'''

RUNNER = '''
import json, runpy
from gpu_fleet import engine
rec = engine.Recording(stack="edge")
engine.install(rec, {})
engine.run(lambda: runpy.run_path("."), rec)  # as Pulumi runs a program folder
print(json.dumps({"outputs": rec.stack_outputs,
                  "types": sorted({r.type for r in rec.resources})}))
'''


def test_installed_components_run_in_a_program_outside_the_repo(tmp_path):
    site = tmp_path / "site"
    # Build and install from outside the repo, as a user would: pip install /path/to/gpu-fleet.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(REPO)],
        cwd=tmp_path, check=True, capture_output=True,
    )
    work = tmp_path / "other-program"
    work.mkdir()
    shutil.copy(REPO / "stacks" / "Pulumi.us-east.yaml", work / "Pulumi.edge.yaml")
    (work / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    (work / "components").mkdir()
    (work / "components" / "__init__.py").write_text('OWN = "mine"\n')
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); exec({RUNNER!r})"],
        cwd=work, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outputs"]["components_file"].startswith(str(site))
    assert result["outputs"]["own_components"] == "mine"
    assert result["outputs"]["cluster"]
    assert {"gpufleet:index:Region", "aws:eks/cluster:Cluster", "kubernetes:apps/v1:Deployment"} <= set(result["types"])


def _runtime_closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` need without any extra, resolved against what is
    installed here (offline: no index)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    env = {**default_environment(), "extra": ""}
    while todo:
        req = todo.pop()
        if (req.marker and not req.marker.evaluate(env)) or req.name.lower() in seen:
            continue
        seen.add(req.name.lower())
        todo += [Requirement(r) for r in metadata.distribution(req.name).requires or []]
    return seen


def _link(dist_name: str, site: Path) -> None:
    """Make an installed distribution importable in ``site`` (its top-level files, linked)."""
    dist = metadata.distribution(dist_name)
    for top in {Path(str(f)).parts[0] for f in dist.files or []}:
        source = Path(dist.locate_file(top))
        if source.exists() and not (site / top).exists() and not top.startswith(".."):
            (site / top).symlink_to(source)


def test_plain_install_gives_a_working_cli(tmp_path):
    """A wheel installed without extras into a fresh venv that holds only its declared runtime
    dependencies: --help, --version and a plan of a reference stack, from another directory."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(REPO)], cwd=tmp_path, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("gpu_fleet-*.whl")
    assert "gpu_fleet/py.typed" in zipfile.ZipFile(wheel).namelist()
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], cwd=tmp_path, check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    declared = metadata.Distribution.at(next(site.glob("gpu_fleet-*.dist-info"))).requires or []
    closure = _runtime_closure(declared)
    # The dev extra's own tools stay out: what works here works with a plain install.
    assert not closure & {"pytest", "hypothesis", "check-jsonschema", "matplotlib"}
    for name in closure:
        _link(name, site)
    cli = venv / "bin" / "gpu-fleet"
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(cli), *args], cwd=work, capture_output=True, text=True, timeout=600)

    helped = run("--help")
    assert helped.returncode == 0 and "plan" in helped.stdout and "simulate" in helped.stdout, helped.stderr
    version = run("--version")
    assert version.stdout.strip() == f"gpu-fleet {metadata.version('gpu-fleet')}", version.stderr
    outside = run("plan")
    assert outside.returncode == 2 and len(outside.stderr.strip().splitlines()) == 1, outside.stderr
    planned = run("plan", "--config", str(REPO / "stacks" / "Pulumi.eu-west.yaml"), "--format", "json",
                  "--out", str(tmp_path / "out"))
    assert planned.returncode == 0, planned.stderr[-3000:]
    (stack,) = json.loads(planned.stdout)["stacks"]
    assert stack["stack"] == "eu-west" and stack["manifests"]["errors"] == []
    # Validated strictly and checked by the policy pack: the checkers are runtime dependencies.
    assert stack["manifests"]["written"] and "policyViolations" in stack
    simulated = subprocess.run([str(cli), "simulate", "eu-west", "--format", "json"], cwd=REPO,
                               capture_output=True, text=True, timeout=600)
    assert simulated.returncode == 0 and json.loads(simulated.stdout)["stack"] == "eu-west", simulated.stderr[-3000:]
    # matplotlib is a dev extra: without it --plot says so in one line.
    plotted = subprocess.run([str(cli), "simulate", "eu-west", "--plot", str(tmp_path / "run.png")], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert plotted.returncode != 0 and len(plotted.stderr.strip().splitlines()) == 1, plotted.stderr[-3000:]
    assert "matplotlib" in plotted.stderr
    # ... and the code that ran is the installed copy.
    where = subprocess.run([str(python), "-c", "import gpu_fleet.manifests as m, gpu_fleet.components; print(m.__file__, "
                            "gpu_fleet.components.__file__)"], cwd=work, capture_output=True, text=True)
    assert where.stdout.split() and all(f.startswith(str(site)) for f in where.stdout.split()), where
