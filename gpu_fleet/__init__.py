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
    "Region": "components.region",
    "RegionArgs": "components.region",
    "ModelDeployment": "components.model_deployment",
    "ModelDeploymentArgs": "components.model_deployment",
    "Monitoring": "components.monitoring",
    "MonitoringArgs": "components.monitoring",
    "MetricsPipeline": "components.monitoring",
    "MetricsPipelineArgs": "components.monitoring",
    "AwsCluster": "components.aws_cluster",
    "AwsClusterArgs": "components.aws_cluster",
    "GkeCluster": "components.gke_cluster",
    "GkeClusterArgs": "components.gke_cluster",
    "AwsCache": "components.cache",
    "AwsCacheArgs": "components.cache",
    "GcpCache": "components.cache",
    "GcpCacheArgs": "components.cache",
    "Entrypoint": "components.entrypoint",
    "EntrypointArgs": "components.entrypoint",
    "GlobalRouting": "components.global_routing",
    "GlobalRoutingArgs": "components.global_routing",
    "load_stack_file": "components.config",
    "ModelConfig": "components.config",
    "GpuPoolConfig": "components.config",
    "RegionConfig": "components.config",
    "GlobalConfig": "components.config",
    "ModelRef": "components.monitoring_rules",
    "AlertSettings": "components.monitoring_rules",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads them
    from components.aws_cluster import AwsCluster, AwsClusterArgs
    from components.cache import AwsCache, AwsCacheArgs, GcpCache, GcpCacheArgs
    from components.config import GlobalConfig, GpuPoolConfig, ModelConfig, RegionConfig, load_stack_file
    from components.entrypoint import Entrypoint, EntrypointArgs
    from components.gke_cluster import GkeCluster, GkeClusterArgs
    from components.global_routing import GlobalRouting, GlobalRoutingArgs
    from components.model_deployment import ModelDeployment, ModelDeploymentArgs
    from components.monitoring import MetricsPipeline, MetricsPipelineArgs, Monitoring, MonitoringArgs
    from components.monitoring_rules import AlertSettings, ModelRef
    from components.region import Region, RegionArgs


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
