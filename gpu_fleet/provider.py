"""gpu-fleet's components for every Pulumi language: a component provider (package ``gpufleet``).

``PulumiPlugin.yaml`` at the repository root (``runtime: python``) makes
``pulumi package add <path or git URL of the repository>`` run this module, which serves
the classes below through ``pulumi.provider.experimental.component_provider_host``; the
package schema is inferred from their typed args (a string under a field is its
description) and their ``pulumi.Output`` attributes. Each class adapts the schema's plain
values to the Python component of the same name:

- ``ModelDeployment``: one model on any Kubernetes cluster (the Kubernetes provider comes
  from the caller's ``providers`` option), :class:`gpu_fleet.components.model_deployment.ModelDeployment`;
- ``MetricsPipeline``: the fleet's rules and prometheus-adapter on a Prometheus you run,
  :class:`gpu_fleet.components.monitoring.MetricsPipeline`;
- ``Region``: a whole region stack from the settings a stack file holds under
  ``gpu-fleet:fleet``, :class:`gpu_fleet.components.region.Region`;
- ``GlobalRouting``: the global entry point in front of deployed region stacks,
  :class:`gpu_fleet.components.global_routing.GlobalRouting`.

Settings are validated as a stack file's are; a bad one fails the construct with the
field named.
"""

# No ``from __future__ import annotations``: the schema analyzer reads the annotations as
# objects, not strings.
from pathlib import Path
from typing import Any, Optional, TypedDict

import pulumi

#: The package name: resource tokens are ``gpufleet:index:<Component>``, as the Python
#: components register themselves.
PACKAGE = "gpufleet"


class Toleration(TypedDict):
    """A pod toleration (Kubernetes ``core/v1`` Toleration)."""

    key: Optional[str]
    """The taint key; empty with operator Exists tolerates every taint."""
    operator: Optional[str]
    """``Exists`` or ``Equal`` (default Equal)."""
    value: Optional[str]
    """The taint value, with operator Equal."""
    effect: Optional[str]
    """``NoSchedule``, ``PreferNoSchedule`` or ``NoExecute``; empty: all."""


class ModelDeploymentArgs(TypedDict):
    name: str
    """The model's name: the Deployment is ``vllm-<name>`` and clients send it as ``model``."""
    model_id: str
    """Hugging Face model id, ``org/name``."""
    revision: str
    """Pinned Hugging Face revision (commit SHA or tag), never a branch."""
    namespace: pulumi.Input[str]
    """The existing namespace to serve in."""
    secret_name: pulumi.Input[str]
    """The Secret in that namespace with keys ``HF_TOKEN`` and ``VLLM_API_KEY``."""
    weight_cache_storage_class: str
    """A ReadWriteMany StorageClass for the weight cache volume."""
    gpu: str
    """The nodes' GPU: ``h100``, ``a100-80gb`` or ``a100-40gb`` (sizes the model)."""
    cloud: str
    """``aws`` (Karpenter's do-not-disrupt annotation) or ``gcp`` (Memorystore's CA for LMCache)."""
    tensor_parallel_size: Optional[int]
    """GPUs per replica; default 1."""
    max_model_len: Optional[int]
    """Longest sequence in tokens; default 8192."""
    min_replicas: Optional[int]
    """HPA minimum; default the fleet's (2)."""
    max_replicas: Optional[int]
    """HPA maximum; default the fleet's."""
    image: Optional[str]
    """The vLLM image; default the pinned one."""
    gpus_per_node: Optional[int]
    """GPUs per node; default the tensor parallel size."""
    node_selector: Optional[dict[str, str]]
    """The pods' nodeSelector; default none (the GPU request places them)."""
    tolerations: Optional[list[Toleration]]
    """The pods' tolerations; default the ``nvidia.com/gpu`` NoSchedule taint."""
    priority_class_name: Optional[str]
    """The pods' PriorityClass; default none."""
    image_pull_secrets: Optional[list[str]]
    """Secrets in the namespace to pull the image with."""
    cpu_per_gpu_millis: Optional[int]
    """Container CPU per GPU in millicores; default the smallest share of any catalog machine with that GPU."""
    memory_gib_per_gpu: Optional[int]
    """Container memory per GPU in GiB; default as for the CPU."""
    provisioning_seconds: Optional[int]
    """How long a new GPU node may take to arrive; default 900."""


class ModelDeployment(pulumi.ComponentResource):
    """One vLLM model (Deployment, Service, PDB, HPA, weight cache) on any Kubernetes cluster."""

    deployment_name: pulumi.Output[str]
    """The Deployment, Service, PDB and HPA name, ``vllm-<name>``."""
    service_name: pulumi.Output[str]
    """The ClusterIP Service in front of the model."""
    service_port: pulumi.Output[int]
    """The Service's port (the OpenAI API)."""
    gpus_per_replica: pulumi.Output[int]
    """GPUs each replica uses."""
    kv_cache_tokens: pulumi.Output[int]
    """Tokens of KV cache one replica holds."""
    startup_budget_seconds: pulumi.Output[int]
    """How long a replica may take to start on an empty weight cache."""

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        from gpu_fleet.components import model_deployment as md
        from gpu_fleet.components.config import ModelConfig

        super().__init__(f"{PACKAGE}:index:ModelDeployment", name, None, opts)
        model = _valid(ModelConfig, {
            "name": args["name"], "modelId": args["model_id"], "revision": args["revision"],
            # Only a label for the fleet's own pools; node_selector places the pods here.
            "pool": "cluster",
            **_given({"tensorParallelSize": args.get("tensor_parallel_size"), "maxModelLen": args.get("max_model_len"),
                      "image": args.get("image")}),
            "autoscaling": _given({"minReplicas": args.get("min_replicas"), "maxReplicas": args.get("max_replicas")}),
        }, f"ModelDeployment {name}")
        byo = _given({key: args.get(key) for key in (
            "gpus_per_node", "node_selector", "priority_class_name", "image_pull_secrets", "cpu_per_gpu_millis",
            "memory_gib_per_gpu", "provisioning_seconds")})
        if args.get("tolerations") is not None:
            byo["tolerations"] = [_given(dict(t)) for t in args["tolerations"]]
        served = md.ModelDeployment(name, {
            "model": model, "namespace": args["namespace"], "secret_name": args["secret_name"],
            "cache_secret_name": None, "weight_cache_storage_class": args["weight_cache_storage_class"],
            "gpu": args["gpu"], "cloud": args["cloud"], **byo,  # type: ignore[typeddict-item]
        }, pulumi.ResourceOptions(parent=self))
        self.deployment_name = pulumi.Output.from_input(served.deployment_name)
        self.service_name = served.service_name
        self.service_port = pulumi.Output.from_input(served.service_port)
        self.gpus_per_replica = pulumi.Output.from_input(served.sizing.gpus)
        self.kv_cache_tokens = pulumi.Output.from_input(served.sizing.kv_cache_tokens)
        self.startup_budget_seconds = pulumi.Output.from_input(served.summary["startupBudgetSeconds"])
        self.register_outputs({"deploymentName": self.deployment_name, "serviceName": self.service_name})


class RegionArgs(TypedDict):
    config: dict[str, Any]
    """The region's settings: what a region stack file holds under ``gpu-fleet:fleet`` (kind: region)."""
    hugging_face_token: pulumi.Input[str]
    """Hugging Face token for gated models (keep it secret)."""
    api_key: pulumi.Input[str]
    """The key clients present to the models (keep it secret)."""


class Region(pulumi.ComponentResource):
    """A whole region: GPU cluster, GPU software, monitoring, models, cache and entry point."""

    cluster_name: pulumi.Output[str]
    """The EKS or GKE cluster's name."""
    kubeconfig: pulumi.Output[str]
    """A kubeconfig for the cluster (secret)."""
    entrypoint_domain: pulumi.Output[str]
    """The region's domain: each model answers at ``<model>.<domain>``."""

    def __init__(self, name: str, args: RegionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        from gpu_fleet.components import region
        from gpu_fleet.components.config import RegionConfig

        super().__init__(f"{PACKAGE}:index:Region", name, None, opts)
        cfg = _fleet(args["config"], RegionConfig, f"Region {name}")
        built = region.Region(name, {"config": cfg, "hugging_face_token": args["hugging_face_token"],
                                     "api_key": args["api_key"]}, pulumi.ResourceOptions(parent=self))
        self.cluster_name = pulumi.Output.from_input(built.cluster.cluster_name)
        self.kubeconfig = pulumi.Output.secret(built.cluster.kubeconfig)
        self.entrypoint_domain = pulumi.Output.from_input(cfg.entrypoint.domain)
        self.register_outputs({"clusterName": self.cluster_name})


class GlobalRoutingArgs(TypedDict):
    config: dict[str, Any]
    """The global settings: what the global stack file holds under ``gpu-fleet:fleet`` (kind: global)."""
    stacks_dir: Optional[str]
    """The folder with the region stacks' files (``Pulumi.<stack>.yaml``); default ``stacks``."""


class GlobalRouting(pulumi.ComponentResource):
    """One latency-routed, health-checked name per model in front of the deployed region stacks."""

    endpoints: pulumi.Output[dict[str, str]]
    """Model name to its global hostname."""
    failover_budget_seconds: pulumi.Output[int]
    """The worst-case time from a region failing to clients reaching another."""
    routing_mode: pulumi.Output[str]
    """``dns`` (Route 53) or ``anycast`` (Global Accelerator)."""

    def __init__(self, name: str, args: GlobalRoutingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        from gpu_fleet.components import global_routing
        from gpu_fleet.components.config import GlobalConfig

        super().__init__(f"{PACKAGE}:index:GlobalRouting", name, None, opts)
        stacks_dir = Path(args.get("stacks_dir") or "stacks")
        cfg = _fleet(args["config"], GlobalConfig, f"GlobalRouting {name}", stacks_dir)
        built = global_routing.GlobalRouting(name, {
            "config": cfg, "regions": global_routing.region_endpoints(cfg, stacks_dir=stacks_dir),
        }, pulumi.ResourceOptions(parent=self))
        self.endpoints = pulumi.Output.from_input(built.endpoints)
        self.failover_budget_seconds = pulumi.Output.from_input(built.budget.total)
        self.routing_mode = pulumi.Output.from_input(cfg.routing.mode)
        self.register_outputs({"endpoints": self.endpoints})


class ServedModel(TypedDict):
    """A model the metrics pipeline watches."""

    name: str
    """The model's name (its Deployment is ``vllm-<name>``)."""
    namespace: str
    """The namespace it is served in."""


class MetricsPipelineArgs(TypedDict):
    models: list[ServedModel]
    """The served models: their recording and alert rules, one PodMonitor per namespace."""
    namespace: Optional[str]
    """An existing namespace for the PodMonitors, rules and adapter; default ``monitoring``."""
    selector_labels: Optional[dict[str, str]]
    """Labels your Prometheus selects PodMonitors and PrometheusRules by; default ``release: kube-prometheus-stack``."""
    prometheus_url: Optional[str]
    """Your Prometheus' URL, which prometheus-adapter queries."""
    install_adapter: Optional[bool]
    """Install prometheus-adapter serving the External metrics the HPAs read; default true."""
    adapter_node_selector: Optional[dict[str, str]]
    """nodeSelector of the adapter's pods; default none."""


class MetricsPipeline(pulumi.ComponentResource):
    """The fleet's PodMonitors, recording and alert rules and prometheus-adapter on a Prometheus you run."""

    prometheus_url: pulumi.Output[str]
    """The Prometheus the adapter queries."""
    kube_state_metrics_allowlist: pulumi.Output[list[str]]
    """Entries kube-state-metrics' ``--metric-labels-allowlist`` needs for the rules' joins."""

    def __init__(self, name: str, args: MetricsPipelineArgs, opts: Optional[pulumi.ResourceOptions] = None):
        from gpu_fleet.components import monitoring
        from gpu_fleet.components.monitoring_rules import ModelRef

        super().__init__(f"{PACKAGE}:index:MetricsPipeline", name, None, opts)
        built = monitoring.MetricsPipeline(name, {
            "models": [ModelRef(name=m["name"], namespace=m["namespace"]) for m in args["models"]],
            **_given({key: args.get(key) for key in (
                "namespace", "selector_labels", "prometheus_url", "install_adapter", "adapter_node_selector")}),
        }, pulumi.ResourceOptions(parent=self))  # type: ignore[misc]
        self.prometheus_url = pulumi.Output.from_input(built.prometheus_url)
        self.kube_state_metrics_allowlist = pulumi.Output.from_input(built.kube_state_metrics_allowlist)
        self.register_outputs({"prometheusUrl": self.prometheus_url})


COMPONENTS: list[type[pulumi.ComponentResource]] = [ModelDeployment, MetricsPipeline, Region, GlobalRouting]


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the inputs the caller left out (None)."""
    return {k: v for k, v in values.items() if v is not None}


def _valid(model: Any, raw: dict[str, Any], source: str) -> Any:
    """``raw`` validated as the pydantic ``model``; ValueError naming the fields otherwise."""
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"{source}: " + "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None


def _fleet(raw: dict[str, Any], kind: type, source: str, stacks_dir: Optional[Path] = None) -> Any:
    """A stack's settings validated as a stack file's are (``gpu_fleet.components.config.parse_fleet``)."""
    from gpu_fleet.components.config import ConfigError, parse_fleet

    try:
        cfg = parse_fleet(raw, source, stacks_dir or Path("."))
    except ConfigError as e:
        raise ValueError(str(e)) from None
    if not isinstance(cfg, kind):
        raise ValueError(f"{source}: config: kind must be {'region' if kind.__name__ == 'RegionConfig' else 'global'}")
    return cfg


def main() -> None:
    """Serve the components to the Pulumi engine (``python -m gpu_fleet``)."""
    from importlib.metadata import version

    from pulumi.provider.experimental import component_provider_host

    component_provider_host(COMPONENTS, PACKAGE, version=version("gpu-fleet"))
