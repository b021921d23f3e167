"""``pip install .`` from another directory makes ``components`` importable by another program."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROGRAM = '''
import pulumi
import components
from components.config import load_stack_file
from components.region import Region

cfg = load_stack_file("Pulumi.edge.yaml")
region = Region("edge", {"config": cfg, "hugging_face_token": pulumi.Output.secret("hf"),
                         "api_key": pulumi.Output.secret("key")})
pulumi.export("components_file", components.__file__)
pulumi.export("cluster", region.cluster.cluster_name)
'''

RUNNER = '''
import json, runpy
from gpu_fleet import engine
rec = engine.Recording(stack="edge")
engine.install(rec, {})
engine.run(lambda: runpy.run_path("program.py"), rec)
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
    (work / "program.py").write_text(textwrap.dedent(PROGRAM))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); exec({RUNNER!r})"],
        cwd=work, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outputs"]["components_file"].startswith(str(site))
    assert result["outputs"]["cluster"]
    assert {"gpufleet:index:Region", "aws:eks/cluster:Cluster", "kubernetes:apps/v1:Deployment"} <= set(result["types"])
