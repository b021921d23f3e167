"""The package root: lazy re-exports of the public components, and a CLI that imports a
command's modules only when it runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import gpu_fleet

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_kubernetes", "pydantic", "numba", "kubernetes_validate")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("name", gpu_fleet.__all__)
def test_every_export_is_the_defining_modules_object(name):
    module = importlib.import_module(gpu_fleet._EXPORTS[name])
    assert getattr(gpu_fleet, name) is getattr(module, name)
    assert name in dir(gpu_fleet)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchThing"):
        gpu_fleet.NoSuchThing  # noqa: B018


def test_importing_the_package_and_the_cli_help_load_no_sdk():
    assert not _loaded_after("import gpu_fleet") & set(HEAVY)
    loaded = _loaded_after("import contextlib, io\nfrom gpu_fleet import cli\n"
                           "with contextlib.redirect_stdout(io.StringIO()):\n"
                           "    try:\n        cli.main(['--help'])\n    except SystemExit:\n        pass")
    assert not loaded & set(HEAVY)
    # Importing a component loads what it needs.
    assert "pulumi" in _loaded_after("from gpu_fleet import ModelDeployment")
