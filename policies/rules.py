"""gpu-fleet's CrossGuard policies: the seed's scaling best practices and the fleet's
security rules, checked on what ``pulumi preview`` / ``pulumi up`` would deploy.

This module lists the pack's policies (:data:`POLICIES`, in the order they report); the
rules live in one module per concern beside it (``hpa_rules``, ``workload_rules``,
``regional_cache_rules``, ``routing_rules``, ``alert_rules``, ``secret_rules``), on
``resource_access`` (type tokens, value access, units) and ``contract`` (a byte-for-byte
copy of ``components/contract.py``: the names the fleet and the pack share). A new concern
is a new module whose policies are added to :data:`POLICIES`.

Two runners:

- ``pulumi preview --policy-pack policies`` runs ``policies/__main__.py``, which wraps
  :data:`POLICIES` in a ``PolicyPack``. Pulumi starts the pack with ``python -m
  pulumi.policy <engine> .`` inside ``policies/`` (its own virtualenv, from
  ``requirements.txt``); ``runpy.run_path(".")`` puts that folder first on ``sys.path``, so
  ``from rules import POLICIES`` resolves to this file and the modules beside it import each
  other by bare name. Hence the pack imports only ``pulumi_policy``, the standard library
  and its own modules: the pack's virtualenv has nothing else.
- ``gpu-fleet plan`` evaluates the same policy objects offline
  (:mod:`gpu_fleet.policy_check`, which puts this folder on ``sys.path`` while loading it)
  against the recorded plan.

What each policy reads
----------------------
Resource policies get the resource's *inputs* (camelCase, as the engine sees them);
stack policies get every resource of the stack with its *outputs* (for the Kubernetes
objects read here, the same keys; a component's outputs are what it registers, so
``gpufleet:index:GlobalRouting`` registers its failover props as outputs too). Values may be
``Mapping``/``Sequence`` proxies rather than dicts and lists, and numbers may be floats:
every accessor in ``resource_access`` copes with both.

Thresholds come from ``args.get_config()`` and fall back to each policy's
``config_schema`` defaults, so an organisation tunes them with
``--policy-pack-config`` (or ``pulumi policy enable --config``) without code changes.

Secrets
-------
``pulumi preview``/``up`` hand policies secret values already decrypted and unmarked
(pulumi_policy's ``Analyze`` deserialises without secret markers; pulumi/pulumi-policy#241:
a policy cannot tell whether a value is a Pulumi secret). So:

- ``kubernetes-no-plaintext-secrets`` never depends on secretness: a credential written
  literally into a pod spec or ConfigMap is readable by anyone who may read that object,
  whether or not Pulumi encrypts it in its state. Same verdict in both runners.
- ``secret-inputs-encrypted`` asks that credential-like inputs of every other resource
  (Helm values, cache AUTH tokens, provider credentials...) be Pulumi secrets, so the
  state and the plan never hold them in plaintext. It needs secret markers: values that
  are Pulumi secrets arrive wrapped in ``pulumi_policy.Secret`` (the class pulumi_policy
  itself uses for secrets in remediations). gpu-fleet's offline evaluation keeps them and
  sets the policy's ``secretMarkers`` config; in a Pulumi run ``secretMarkers`` stays
  false and the policy reports itself not applicable instead of flagging every secret
  as plaintext.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from alert_rules import (
    QUEUE_ALERT_SCHEMA,
    validate_queue_alert,
)
from cache_rules import POLICIES as CACHE_CLIENT_POLICIES
from hpa_rules import (
    GPU_TARGET_SCHEMA,
    MIN_REPLICAS_SCHEMA,
    QUEUE_METRIC_SCHEMA,
    SCALE_DOWN_SCHEMA,
    SCALE_UP_SCHEMA,
    validate_gpu_hpa_metrics,
    validate_hpa_gpu_target,
    validate_hpa_min_replicas,
    validate_hpa_queue_metric,
    validate_hpa_scale_down,
    validate_hpa_scale_up,
    validate_scale_to_zero_non_production,
)
from regional_cache_rules import (
    CACHE_HA_SCHEMA,
    validate_cache_clients,
    validate_cache_high_availability,
    validate_cache_security,
)
from routing_rules import (
    BUDGET_SCHEMA,
    HEALTH_CHECK_SCHEMA,
    validate_failover_budget,
    validate_route53_health_check,
    validate_route53_record_health,
)
from secret_rules import (
    K8S_SECRETS_SCHEMA,
    SECRET_INPUTS_SCHEMA,
    validate_kubernetes_secrets,
    validate_secret_inputs,
)
from workload_rules import (
    GPU_TAINT_SCHEMA,
    PROBES_SCHEMA,
    WORKLOAD_GPU_SCHEMA,
    validate_gpu_node_pool_taint,
    validate_gpu_workloads,
    validate_model_probes,
)

PACK_NAME = "gpu-fleet"

# --------------------------------------------------------------------------- the pack

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY

POLICIES = [
    ResourceValidationPolicy(
        name="hpa-min-replicas",
        description="HPAs keep at least 2 replicas, so a model stays served through a restart or a node drain.",
        validate=validate_hpa_min_replicas, enforcement_level=MANDATORY, config_schema=MIN_REPLICAS_SCHEMA),
    ResourceValidationPolicy(
        name="scale-to-zero-non-production",
        description="KEDA ScaledObjects keep at least 2 replicas unless their stack is labelled non-production "
                    "(gpu-fleet/environment), the only place a model may scale to zero.",
        validate=validate_scale_to_zero_non_production, enforcement_level=MANDATORY,
        config_schema=MIN_REPLICAS_SCHEMA),
    ResourceValidationPolicy(
        name="hpa-scale-up-fast",
        description="HPAs (and the HPAs KEDA creates) scale up within 1-2 minutes: scale-up window <= 120 s and a "
                    "policy adding pods at least every 120 s.",
        validate=validate_hpa_scale_up, enforcement_level=MANDATORY, config_schema=SCALE_UP_SCHEMA),
    ResourceValidationPolicy(
        name="hpa-scale-down-slow",
        description="HPAs scale down slowly: a scale-down stabilisation window of 5-10 minutes avoids flapping.",
        validate=validate_hpa_scale_down, enforcement_level=MANDATORY, config_schema=SCALE_DOWN_SCHEMA),
    ResourceValidationPolicy(
        name="hpa-gpu-utilization-target",
        description="HPAs scale on GPU utilisation (dcgm_gpu_utilization) with an AverageValue target of 70-80 %.",
        validate=validate_hpa_gpu_target, enforcement_level=ADVISORY, config_schema=GPU_TARGET_SCHEMA),
    StackValidationPolicy(
        name="hpa-queue-metric",
        description="HPAs of model servers and GPU workloads scale on the queue of waiting requests "
                    "(llm_pending_requests), not on GPU utilisation alone.",
        validate=validate_hpa_queue_metric, enforcement_level=MANDATORY, config_schema=QUEUE_METRIC_SCHEMA),
    StackValidationPolicy(
        name="gpu-hpa-not-cpu-only",
        description="An HPA scaling a model server or GPU workload does not scale on CPU or memory alone.",
        validate=validate_gpu_hpa_metrics, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="model-prewarm-probes",
        description="vLLM model servers take traffic only once the model is loaded: startup and readiness probes "
                    "on /v1/models.",
        validate=validate_model_probes, enforcement_level=MANDATORY, config_schema=PROBES_SCHEMA),
    StackValidationPolicy(
        name="model-queue-depth-alert",
        description="Every served model has an alert on waiting requests (> 20 for 2 minutes or less).",
        validate=validate_queue_alert, enforcement_level=MANDATORY, config_schema=QUEUE_ALERT_SCHEMA),
    ResourceValidationPolicy(
        name="gpu-node-pool-taint",
        description="GPU node pools carry the nvidia.com/gpu NO_SCHEDULE taint, so only GPU workloads land on them.",
        validate=validate_gpu_node_pool_taint, enforcement_level=MANDATORY, config_schema=GPU_TAINT_SCHEMA),
    ResourceValidationPolicy(
        name="gpu-workload-scheduling",
        description="GPU pods request GPUs in limits and tolerate the GPU taint; pods on GPU nodes request a GPU.",
        validate=validate_gpu_workloads, enforcement_level=MANDATORY, config_schema=WORKLOAD_GPU_SCHEMA),
    ResourceValidationPolicy(
        name="cache-encryption-and-auth",
        description="Redis caches (ElastiCache, Memorystore) require TLS, encryption at rest and authentication.",
        validate=validate_cache_security, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="cache-high-availability",
        description="Redis caches have a replica in another zone with automatic failover.",
        validate=validate_cache_high_availability, enforcement_level=MANDATORY, config_schema=CACHE_HA_SCHEMA),
    ResourceValidationPolicy(
        name="cache-client-wiring",
        description="Pods given the regional cache's URL reach it over TLS and carry the label its egress "
                    "NetworkPolicy admits.",
        validate=validate_cache_clients, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="route53-routing-health-checked",
        description="Route 53 latency, weighted and failover records have a health check (or, as aliases, "
                    "evaluate their target's health), so a failed region stops receiving traffic.",
        validate=validate_route53_record_health, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="route53-health-check-https",
        description="Route 53 health checks use HTTPS on a resource path.",
        validate=validate_route53_health_check, enforcement_level=MANDATORY, config_schema=HEALTH_CHECK_SCHEMA),
    StackValidationPolicy(
        name="global-failover-budget",
        description="Regional failover is detected and switched in under 30 seconds (the global routing's "
                    "worst-case budget).",
        validate=validate_failover_budget, enforcement_level=ADVISORY, config_schema=BUDGET_SCHEMA),
    ResourceValidationPolicy(
        name="kubernetes-no-plaintext-secrets",
        description="No credential is written into a pod spec (env values, URLs with passwords, probe headers, "
                    "arguments) or a ConfigMap.",
        validate=validate_kubernetes_secrets, enforcement_level=MANDATORY, config_schema=K8S_SECRETS_SCHEMA),
    ResourceValidationPolicy(
        name="secret-inputs-encrypted",
        description="Credential-like resource inputs (Helm values, AUTH tokens, provider credentials) are Pulumi "
                    "secrets.",
        validate=validate_secret_inputs, enforcement_level=MANDATORY, config_schema=SECRET_INPUTS_SCHEMA),
    *CACHE_CLIENT_POLICIES,
]

