"""A region: GPU cluster, GPU software, monitoring, models, cache and entry point.

The region component only composes; each part is its own component with its own
module. Every cloud resource goes through this region's explicit provider (passed down
with ``providers``), and every Kubernetes object through the provider built from the
new cluster, so nothing falls back to a default provider in the wrong region.
"""

from __future__ import annotations

from typing import Optional, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from . import cache_sizing
from .cache import AwsCache, CacheConnection, GcpCache, sizing_plan
from .cache_sizing import ModelKv
from .capacity import region_capacity, shortfalls
from .cloud_limits import kubernetes_support_notice
from .config import RegionConfig, check_region, pool_offering
from .entrypoint import Entrypoint, service_annotations
from .gpu_software import GpuSoftware
from .keda import uses_keda
from .contract import API_KEY_KEY, ENVIRONMENT_LABEL, FLEET_LABELS, HF_TOKEN_KEY, SERVING_SECRET
from .model_deployment import ModelDeployment
from .warm_capacity import WarmCapacity
from .monitoring import AlertSettings, ModelRef, Monitoring



class RegionArgs(TypedDict):
    """Arguments of :class:`Region`.

    config: the validated region config (``gpu_fleet.components.config.RegionConfig``).
    hugging_face_token: Hugging Face token for gated models (a Pulumi secret).
    api_key: the key clients present to the models (a Pulumi secret).
    """

    config: RegionConfig
    hugging_face_token: pulumi.Input[str]
    api_key: pulumi.Input[str]


class Region(pulumi.ComponentResource):
    """Everything one region stack deploys (``gpufleet:index:Region``)."""

    def __init__(self, name: str, args: RegionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        # A config built in code gets the checks a stack file gets (once per object).
        cfg = check_region(args["config"], f"Region {name!r}")
        super().__init__("gpufleet:index:Region", name, None, opts)
        self.config = cfg
        here = pulumi.ResourceOptions(parent=self)

        if cfg.cloud == "aws":
            from .aws_cluster import AwsCluster

            self.cloud_provider = aws.Provider(f"{name}-aws", region=cfg.location, opts=here)
            cloud = pulumi.ResourceOptions(parent=self, providers={"aws": self.cloud_provider})
            self.cluster = AwsCluster(f"{name}-cluster", {"config": cfg}, opts=cloud)
        else:
            from .gke_cluster import GkeCluster

            self.cloud_provider = gcp.Provider(f"{name}-gcp", project=cfg.project, region=cfg.location, opts=here)
            cloud = pulumi.ResourceOptions(parent=self, providers={"gcp": self.cloud_provider})
            self.cluster = GkeCluster(f"{name}-cluster", {"config": cfg}, opts=cloud)
            # The cache and the entry point need the project services too (cluster.enableApis).
            cloud = pulumi.ResourceOptions.merge(cloud, pulumi.ResourceOptions(depends_on=self.cluster.apis))

        if not cfg.cluster.public_access_cidrs:
            pulumi.log.warn(
                "the cluster's API endpoint is private (cluster.publicAccessCidrs is empty): run pulumi from inside "
                "the VPC (or over VPN/peering), or list the deployer's egress CIDRs in cluster.publicAccessCidrs",
                resource=self)
        for warning in [*shortfalls(region_capacity(cfg)), *filter(None, [kubernetes_support_notice(cfg)])]:
            pulumi.log.warn(warning, resource=self)
        kube = pulumi.ResourceOptions(parent=self, providers={"kubernetes": self.cluster.k8s_provider})
        # Monitoring first: the GPU operator's dcgm-exporter ServiceMonitor needs its CRDs.
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            {
                "models": [ModelRef(name=m.name, namespace=cfg.namespace) for m in cfg.models],
                "alerts": AlertSettings.from_config(cfg.alerts),
                # One engine per stack (gpu_fleet.components.config checks it; gpu_fleet.components.keda says why).
                "autoscaling_engine": "keda" if uses_keda([m.autoscaling.engine for m in cfg.models]) else "hpa",
                "lmcache_models": [m.name for m in cfg.models if m.lmcache.enabled],
            },
            opts=kube,
        )
        self.gpu_software = GpuSoftware(
            f"{name}-gpu-software",
            {"cloud": cfg.cloud},
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[self.monitoring])),
        )

        labels = {**FLEET_LABELS, ENVIRONMENT_LABEL: cfg.environment}
        if cfg.cloud == "aws":
            # Pod readiness gates: a new vLLM pod counts as Ready only once the ALB sees it as a
            # healthy target, so rollouts and scale-ins do not answer 502/503 in between.
            labels["elbv2.k8s.aws/pod-readiness-gate-inject"] = "enabled"
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-serving",
            metadata={"name": cfg.namespace, "labels": labels},
            opts=pulumi.ResourceOptions(parent=self, provider=self.cluster.k8s_provider),
        )
        self.serving_secret = k8s.core.v1.Secret(
            f"{name}-vllm-secrets",
            metadata={"name": SERVING_SECRET, "namespace": self.namespace.metadata["name"]},
            type="Opaque",
            string_data={
                HF_TOKEN_KEY: pulumi.Output.secret(args["hugging_face_token"]),
                API_KEY_KEY: pulumi.Output.secret(args["api_key"]),
            },
            opts=pulumi.ResourceOptions(parent=self, provider=self.cluster.k8s_provider),
        )

        self.cache = None
        self.cache_connection = None
        if cfg.cache.enabled:
            cache_cls = AwsCache if cfg.cloud == "aws" else GcpCache
            self.cache = cache_cls(f"{name}-cache", {"config": cfg, "network": self.cluster.network}, opts=cloud)
            self.cache_connection = CacheConnection(
                f"{name}-cache-connection",
                {"cache": self.cache, "namespace": self.namespace.metadata["name"]},
                opts=kube,
            )

        # Spare GPU nodes (minNodes per pool), on the pools' provisioning objects.
        self.warm_capacity = WarmCapacity(
            f"{name}-warm-capacity", {"cloud": cfg.cloud, "pools": cfg.gpu_pools},
            opts=pulumi.ResourceOptions.merge(
                kube, pulumi.ResourceOptions(depends_on=[self.gpu_software, *self.cluster.gpu_pools.values()])),
        )
        pools = {p.name: p for p in cfg.gpu_pools}
        self.models = [
            ModelDeployment(
                f"{name}-{m.name}",
                {
                    "model": m,
                    "pool": pools[m.pool],
                    "shape": pool_offering(cfg, pools[m.pool]).shape,
                    "namespace": self.namespace.metadata["name"],
                    "secret_name": self.serving_secret.metadata["name"],
                    "cache_secret_name": self.cache_connection.secret_name if self.cache_connection else None,
                    "weight_cache_storage_class": self.cluster.weight_cache_storage_class,
                    "service_annotations": service_annotations(cfg),
                    "environment": cfg.environment,
                    "pool_scales_to_zero": pools[m.pool].min_nodes == 0,
                    "gateway": cfg.gateway if cfg.gateway.enabled else None,
                },
                # Only the models wait for GPU capacity: each on its own pool (the EKS
                # NodePool, the GKE node pool), nothing else on any pool.
                opts=pulumi.ResourceOptions.merge(
                    kube, pulumi.ResourceOptions(depends_on=[self.gpu_software, self.monitoring.autoscaler,
                                                             self.cluster.gpu_pools[m.pool]])
                ),
            )
            for m in cfg.models
        ]
        self.cache_plan = None
        if self.cache is not None:
            self.cache_plan = sizing_plan(cfg.cloud, cfg.cache, [
                ModelKv(m.model.name, m.sizing.kv_bytes_per_token, m.model.max_model_len)
                for m in self.models if m.model.lmcache.enabled
            ], gateway=cfg.gateway if cfg.gateway.enabled and self.models else None)
            for warning in cache_sizing.warnings(self.cache_plan):
                pulumi.log.warn(warning, resource=self.cache)
        self.entrypoint = Entrypoint(
            f"{name}-entrypoint",
            {"config": cfg, "models": self.models, "network": self.cluster.network},
            # On EKS the Ingress needs the load balancer controller (its webhook and its ALB).
            opts=pulumi.ResourceOptions(
                parent=self,
                providers={"kubernetes": self.cluster.k8s_provider, cfg.cloud: self.cloud_provider},
                depends_on=[self.cluster.load_balancer_controller] if cfg.cloud == "aws" else self.cluster.apis,
            ),
        )
        self.register_outputs({"clusterName": self.cluster.cluster_name})


def export_region(region: Region) -> None:
    """The region stack's outputs (the global stack reads the entry point ones)."""
    cfg = region.config
    pulumi.export("cloud", cfg.cloud)
    pulumi.export("location", cfg.location)
    pulumi.export("clusterName", region.cluster.cluster_name)
    pulumi.export("kubeconfig", pulumi.Output.secret(region.cluster.kubeconfig))
    pulumi.export("gpuPools", [
        {
            "name": p.name,
            "gpu": p.gpu,
            "gpusPerNode": p.gpus_per_node,
            "maxNodes": p.max_nodes,
            "machineType": pool_offering(cfg, p).shape.machine_type,
        }
        for p in cfg.gpu_pools
    ])
    pulumi.export("models", [m.summary for m in region.models])
    if region.cache is not None:
        pulumi.export("cacheEndpoint", region.cache.host)
        pulumi.export("cachePort", region.cache.port)
        pulumi.export("cacheAuthToken", pulumi.Output.secret(region.cache.auth_token))
        pulumi.export("cache", cache_sizing.summary(region.cache_plan))
    for key, value in region.entrypoint.exports().items():
        pulumi.export(key, value)
