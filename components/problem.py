"""What a config check reports. Its own module so the pure checks that
:mod:`gpu_fleet.components.config` runs (``cloud_limits``) sit below config, not beside it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: the field path (``gpuPools[0].gpu``) and why."""

    path: str
    message: str
