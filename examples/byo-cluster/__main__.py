"""One gpu-fleet model on a Kubernetes cluster you already run, with the Prometheus it already has.

Creates the model (Deployment, Service, PDB, HPA, weight cache) on the cluster's GPU nodes
and, on top of the existing Prometheus, the fleet's PodMonitor, recording and alert rules and
prometheus-adapter. Needs on the cluster: the NVIDIA device plugin and dcgm-exporter,
kube-state-metrics allowing the pod labels the rules join on (both exported below), the
namespace and its Secret ``vllm-secrets``. Plan it offline:
``gpu-fleet plan --program examples/byo-cluster --stack dev``.
"""

import pulumi
import pulumi_kubernetes as k8s

from gpu_fleet import MetricsPipeline, ModelConfig, ModelDeployment, ModelRef

config = pulumi.Config()
namespace = config.require("namespace")

# Every Kubernetes object goes through this provider: the cluster named by the context.
cluster = k8s.Provider("cluster", context=config.get("kubeContext"))

model = ModelConfig.model_validate({
    "name": "llama-3-1-8b",
    "modelId": "meta-llama/Llama-3.1-8B-Instruct",
    "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
    "pool": "existing",  # only a label here: node_selector below places the pods
    "maxModelLen": 32768,
    "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
})

metrics = MetricsPipeline("metrics", {
    "models": [ModelRef(name=model.name, namespace=namespace)],
    "namespace": config.require("monitoringNamespace"),
    "prometheus_url": config.require("prometheusUrl"),
    "selector_labels": config.require_object("prometheusSelectorLabels"),
}, opts=pulumi.ResourceOptions(provider=cluster))

served = ModelDeployment(model.name, {
    "model": model,
    "namespace": namespace,
    "secret_name": config.require("servingSecret"),
    "cache_secret_name": None,
    "weight_cache_storage_class": config.require("weightCacheStorageClass"),
    "gpu": config.require("gpu"),
    "cloud": config.require("cloud"),
    "node_selector": config.require_object("nodeSelector"),
    "tolerations": config.require_object("tolerations"),
    "priority_class_name": config.require("priorityClassName"),
    "image_pull_secrets": config.require_object("imagePullSecrets"),
}, opts=pulumi.ResourceOptions(provider=cluster, depends_on=[metrics.autoscaler]))

pulumi.export("model", served.summary)
pulumi.export("service", served.service_name)
pulumi.export("kubeStateMetricsAllowlist", metrics.kube_state_metrics_allowlist)
pulumi.export("gpuOperatorValues", metrics.gpu_operator_values)
