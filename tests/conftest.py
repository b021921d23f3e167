"""Shared test harness: recording Pulumi mocks installed per test, and stack planning.

``fleet.run(program, stack=..., config=...)`` runs ``program`` (any callable that creates
resources) under the same recording engine ``gpu-fleet plan`` uses and returns the
:class:`gpu_fleet.engine.Recording`. The mocks are process-global; the fixture resets
them after every test so no test sees another's resources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
import pytest

from gpu_fleet.components import cloud_limits
from gpu_fleet import engine
from gpu_fleet.plan import StackPlan, plan_stack
from gpu_fleet.project import stack_files

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _support_dates_as_read():
    """Kubernetes support dates are checked against the day the data was read, so the suite (and
    the plans it runs in subprocesses) does not start failing when a calendar date passes."""
    mp = pytest.MonkeyPatch()
    mp.setenv(cloud_limits.TODAY_ENV, cloud_limits.limits()["kubernetesVersions"]["aws"]["read"])
    yield
    mp.undo()
STACKS = REPO / "stacks"
PROGRAM = REPO / "__main__.py"


class Fleet:
    def run(self, program: Callable[[], Any], *, stack: str = "test", config: Optional[dict] = None,
            secret_keys: tuple[str, ...] = ()) -> engine.Recording:
        recording = engine.Recording(stack=stack)
        engine.install(recording, config or {}, secret_keys)
        return engine.run(program, recording)


@pytest.fixture
def fleet():
    yield Fleet()
    # set_mocks is process-global: leave nothing behind for the next test.
    pulumi.runtime.settings.set_root_resource(None)
    pulumi.runtime.set_all_config({}, [])


_PLANS: dict[str, StackPlan] = {}


def planned(stack: str) -> StackPlan:
    """The offline plan of a reference stack (planned once per session: it is read-only)."""
    if not _PLANS:
        for path in stack_files(STACKS):
            plan = plan_stack(path, PROGRAM, _PLANS)
            _PLANS[plan.stack] = plan
        pulumi.runtime.settings.set_root_resource(None)
    return _PLANS[stack]


@pytest.fixture(scope="session")
def reference_plan():
    """``reference_plan("us-east")``: the recorded plan of a reference stack."""
    return planned
