"""gpu-fleet: Pulumi components for vLLM on GPU clusters, and the ``gpu-fleet`` CLI.

The public components are re-exported here, loaded on first use (PEP 562), so that
``import gpu_fleet`` (which the CLI does) imports neither Pulumi nor the cloud SDKs::

    from gpu_fleet import ModelDeployment, Region, GlobalRouting
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module defining it.
_EXPORTS: dict[str, str] = {
    "Region": "gpu_fleet.components.region",
    "RegionArgs": "gpu_fleet.components.region",
    "ModelDeployment": "gpu_fleet.components.model_deployment",
    "ModelDeploymentArgs": "gpu_fleet.components.model_deployment",
    "Monitoring": "gpu_fleet.components.monitoring",
    "MonitoringArgs": "gpu_fleet.components.monitoring",
    "MetricsPipeline": "gpu_fleet.components.monitoring",
    "MetricsPipelineArgs": "gpu_fleet.components.monitoring",
    "AwsCluster": "gpu_fleet.components.aws_cluster",
    "AwsClusterArgs": "gpu_fleet.components.aws_cluster",
    "GkeCluster": "gpu_fleet.components.gke_cluster",
    "GkeClusterArgs": "gpu_fleet.components.gke_cluster",
    "AwsCache": "gpu_fleet.components.cache",
    "AwsCacheArgs": "gpu_fleet.components.cache",
    "GcpCache": "gpu_fleet.components.cache",
    "GcpCacheArgs": "gpu_fleet.components.cache",
    "Entrypoint": "gpu_fleet.components.entrypoint",
    "EntrypointArgs": "gpu_fleet.components.entrypoint",
    "GlobalRouting": "gpu_fleet.components.global_routing",
    "GlobalRoutingArgs": "gpu_fleet.components.global_routing",
    "load_stack_file": "gpu_fleet.components.config",
    "ModelConfig": "gpu_fleet.components.config",
    "GpuPoolConfig": "gpu_fleet.components.config",
    "RegionConfig": "gpu_fleet.components.config",
    "GlobalConfig": "gpu_fleet.components.config",
    "ModelRef": "gpu_fleet.components.monitoring_rules",
    "AlertSettings": "gpu_fleet.components.monitoring_rules",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads them
    from gpu_fleet.components.aws_cluster import AwsCluster, AwsClusterArgs
    from gpu_fleet.components.cache import AwsCache, AwsCacheArgs, GcpCache, GcpCacheArgs
    from gpu_fleet.components.config import GlobalConfig, GpuPoolConfig, ModelConfig, RegionConfig, load_stack_file
    from gpu_fleet.components.entrypoint import Entrypoint, EntrypointArgs
    from gpu_fleet.components.gke_cluster import GkeCluster, GkeClusterArgs
    from gpu_fleet.components.global_routing import GlobalRouting, GlobalRoutingArgs
    from gpu_fleet.components.model_deployment import ModelDeployment, ModelDeploymentArgs
    from gpu_fleet.components.monitoring import MetricsPipeline, MetricsPipelineArgs, Monitoring, MonitoringArgs
    from gpu_fleet.components.monitoring_rules import AlertSettings, ModelRef
    from gpu_fleet.components.region import Region, RegionArgs


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
