"""Import the provider SDKs' resource modules on first use, not whole subpackages at once.

A generated subpackage such as ``pulumi_aws.ec2`` or ``pulumi_kubernetes.core.v1`` has an
``__init__.py`` that only star-imports every one of its resource modules (pulumi-aws 7.51.1
``ec2/__init__.py``: about 180 of them); a plan uses a few of each, yet paid for all of them,
about a quarter of its CPU. :func:`install` makes such subpackages resolve a name by
importing the one module that defines it, and run the real ``__init__.py`` for any name it
cannot place, so every attribute is the object the eager import would give.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

#: Top-level packages whose subpackages are loaded lazily.
PACKAGES = ("pulumi_aws", "pulumi_gcp", "pulumi_kubernetes")

#: The only statements a subpackage ``__init__.py`` may hold to be loaded lazily.
_ALLOWED_LINE = re.compile(
    r"(#.*|from \.[A-Za-z0-9_]* import \*|from \. import outputs|import builtins as _builtins|import typing"
    r"|from \.\.+ import _utilities)?"
)
#: Modules of a subpackage that hold its shared types, tried after the name's own module.
_SHARED = ("_inputs", "outputs", "_enums")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _candidates(name: str) -> list[str]:
    """Module names that may define ``name`` (``VpcArgs``, ``get_vpc_output``,
    ``AwaitableGetVpcResult`` -> ``vpc``/``Vpc``, ``get_vpc``)."""
    base = re.sub(r"^Awaitable", "", name)
    base = re.sub(r"(ArgsDict|Args|Result|_output)$", "", base)
    return list(dict.fromkeys([name, base, _snake(base)]))


class _LazyPackageLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return None

    def exec_module(self, module: ModuleType) -> None:
        loader = self.loader
        folder = Path(module.__spec__.submodule_search_locations[0])
        state = {"complete": False}

        def complete() -> None:
            if not state["complete"]:
                state["complete"] = True
                loader.exec_module(module)  # the real __init__.py: the eager result, exactly

        def __getattr__(attr: str) -> Any:
            if not attr.startswith("__"):
                for candidate in (*_candidates(attr), *_SHARED):
                    if not (folder / f"{candidate}.py").is_file():
                        continue
                    sub = importlib.import_module(f"{module.__name__}.{candidate}")
                    # ``get_vpc`` names a function and its module: the eager star import binds the
                    # function; ``outputs`` names only a module (``from . import outputs``).
                    found = sub.__dict__.get(attr, sub if candidate == attr else None)
                    if found is not None:
                        setattr(module, attr, found)
                        return found
            complete()
            try:
                return module.__dict__[attr]
            except KeyError:
                raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}") from None

        def __dir__() -> list[str]:
            complete()  # dir() lists everything, as after the eager import
            return sorted(module.__dict__)

        # ``from pkg import *`` asks for ``__all__`` first, which completes the module too.
        module.__getattr__ = __getattr__
        module.__dir__ = __dir__


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        top, _, rest = fullname.partition(".")
        if top not in PACKAGES or not rest:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.submodule_search_locations or spec.origin is None:
            return spec
        try:
            lines = Path(spec.origin).read_text(encoding="utf-8").splitlines()
        except OSError:
            return spec
        if all(_ALLOWED_LINE.fullmatch(line.strip()) for line in lines):
            spec.loader = _LazyPackageLoader(spec.loader)
        return spec


_FINDER = _Finder()


def install() -> None:
    """Load provider subpackages lazily from now on (packages imported before stay as they are)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
