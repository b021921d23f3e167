"""One served model: its vLLM Deployment, Service, PodDisruptionBudget, HPA and weight cache.

``ModelDeployment`` (``gpufleet:index:ModelDeployment``) creates, in the serving namespace:

- a PersistentVolumeClaim ``vllm-<model>-weights`` (ReadWriteMany) holding the Hugging
  Face cache, so a restarted or added replica reads the weights instead of downloading
  them again;
- the Deployment ``vllm-<model>`` serving the OpenAI API on port 8000 (``http``);
- a ClusterIP Service ``vllm-<model>``, a PodDisruptionBudget and the HPA
  (:func:`components.hpa.hpa_spec`, the seed's HPA by default), or with
  ``autoscaling.engine: keda`` a KEDA ScaledObject (:func:`components.keda.scaled_object`)
  on the same signals, which may scale a non-production model to zero.

The pure functions below build every spec, so most tests need no Pulumi; the class only
creates the objects. Decisions and why:

- Sizing first: the component refuses a model that :func:`components.sizing.problems`
  rejects (the config checks report the same before anything is created).
- Names and labels are the fleet's contract: Deployment ``vllm-<model>``
  (:class:`components.monitoring_rules.ModelRef`), pod labels
  ``app.kubernetes.io/name=vllm`` and ``gpu-fleet/model=<model>``, which the PodMonitor,
  the recording rules, the HPA's metrics and the cache NetworkPolicy select on. Only
  those two are the selector: they never change, while ``app.kubernetes.io/version``
  follows the image.
- Secrets: the Hugging Face token and the API key come from the serving Secret through
  ``secretKeyRef`` (vLLM reads ``VLLM_API_KEY``), the cache connection through
  ``envFrom`` and only with LMCache on (those pods carry
  :data:`components.cache.CACHE_CLIENT_LABELS` for the cache's egress NetworkPolicy); no
  secret value is ever in the pod spec. Because vLLM then rejects
  unauthenticated ``/v1/*`` calls and an ``httpGet`` probe's headers would hold the key in
  plaintext, the startup and readiness probes are ``exec`` probes reading the key from
  the container's environment; liveness uses the unauthenticated ``/health``.
- Start-up: the startup probe allows :func:`components.sizing.startup_budget_seconds`
  (download, load, warm-up, with margin). Pulumi's wait for the Deployment (default 10
  minutes) and the Deployment's ``progressDeadlineSeconds`` (default 10 minutes, after
  which Pulumi reports the rollout failed) are both raised to
  :func:`rollout_timeout_seconds`, which adds node provisioning and image pulls.
- Rollouts: ``maxSurge 1`` / ``maxUnavailable 0``. GPUs are scarce: a surge of one
  replica needs one replica's GPUs spare (or one new node), never a second full set,
  and serving capacity never drops during a rollout.
- Replicas: created at ``minReplicas``; afterwards the HPA owns ``spec.replicas``
  (``ignore_changes``), so ``pulumi up`` never resets a scaled-out model.
- Shutdown: a preStop pause lets the endpoints and load balancers stop sending new
  requests, then SIGTERM makes vLLM's server stop accepting and finish running
  requests for ``--shutdown-timeout`` seconds, within ``terminationGracePeriodSeconds``.
- Disruptions: the PDB allows one replica down at a time (``maxUnavailable: 1``), which
  keeps node drains possible at every scale, where ``minAvailable: minReplicas - 1``
  would say nothing above minReplicas; crash-looping pods may always be evicted.
- Spread: replicas spread over zones and nodes with ``ScheduleAnyway``. GPU capacity
  (reservations, stock-outs) is often in one zone only; ``DoNotSchedule`` would leave
  replicas Pending rather than serve from fewer zones.
- Weight cache: sized from the checkpoint (twice, so a revision change fits beside the
  old one) but at least the storage class's minimum; elastic file systems get a fixed
  nominal request. Neither protected nor retained on delete: it holds only what can be
  downloaded again, and a retained GKE Filestore volume (2.5 TiB minimum) would keep
  billing with nothing using it. Pulumi does not wait for it to bind
  (``pulumi.com/skipAwait``): Filestore classes bind on first consumer, and the
  Deployment's wait covers it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional, TypedDict
from urllib.parse import urlencode

import pulumi
import pulumi_kubernetes as k8s

from .config import GpuPoolConfig, ModelConfig
from .gpu_catalog import GpuShape
from .hpa import hpa_spec
from .keda import SCALED_OBJECT_API_VERSION, SCALED_OBJECT_KIND, scaled_object
from .contract import (
    API_KEY_KEY,
    CACHE_CLIENT_LABELS,
    ENVIRONMENT_LABEL,
    FLEET_LABELS,
    GPU_RESOURCE,
    GPU_TOLERATION,
    HF_TOKEN_KEY,
    LMCACHE_URL_ENV,
    MODEL_LABEL,
    POOL_LABEL,
    VLLM_POD_LABELS,
)
from .monitoring_rules import PROMETHEUS_URL, VLLM_METRICS_PORT, ModelRef
from .sizing import (
    GB,
    GIB,
    IMAGE_PULL_SECONDS,
    STARTUP_MARGIN,
    ColdStart,
    Sizing,
    cold_start,
    host_share,
    problems,
    size_model,
    startup_budget_seconds,
)

__all__ = ["ModelDeployment", "ModelDeploymentArgs", "startup_budget_seconds"]

VLLM_PORT = 8000
#: The container port's name: the Service targets it and the PodMonitor scrapes it.
PORT_NAME = VLLM_METRICS_PORT
CONTAINER_NAME = "vllm"
#: The weight cache volume; ``HF_HOME`` points here and ``--download-dir`` at its ``hub``
#: folder, which is also where transformers looks for config and tokenizer files, so
#: weights and tokenizer share one Hub cache.
CACHE_MOUNT = "/models-cache"
HUB_CACHE = f"{CACHE_MOUNT}/hub"
#: Shared memory for NCCL and vLLM's inter-process queues; vLLM's docs run the container
#: with ``--ipc=host`` or a shared memory of this order.
SHM_SIZE = "16Gi"
#: The Memorystore server CA (Google's private CA, unlike ElastiCache's public one).
REDIS_CA_MOUNT = "/etc/redis-tls"
REDIS_CA_KEY = "REDIS_CA_CERT"
ZONE_KEY = "topology.kubernetes.io/zone"
HOSTNAME_KEY = "kubernetes.io/hostname"

PROBE_PERIOD_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 5
#: Authenticated GET of ``/v1/models``; exits non-zero on refusal or any non-2xx answer.
PROBE_SCRIPT = (
    "import os,urllib.request as u;"
    f"u.urlopen(u.Request('http://127.0.0.1:{VLLM_PORT}/v1/models',"
    f"headers={{'Authorization':'Bearer '+os.environ['{API_KEY_KEY}']}}),timeout={PROBE_TIMEOUT_SECONDS - 1})"
)
#: Time for endpoint removal to reach kube-proxy and the load balancers before SIGTERM.
PRE_STOP_SECONDS = 15
#: ``--shutdown-timeout``: after SIGTERM vLLM lets running requests finish for this long
#: (a 4k-token generation at ~35 tokens/s), then aborts the rest. Its default, 0, aborts
#: them at once (vllm@v0.33.0 vllm/config/vllm.py ``shutdown_timeout``,
#: vllm/v1/engine/core.py ``_handle_shutdown``).
DRAIN_SECONDS = 110
#: The engine and API processes exiting after the drain.
EXIT_SECONDS = 10
TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + DRAIN_SECONDS + EXIT_SECONDS

#: Karpenter's annotation (aws/karpenter-provider-aws v1.14 docs, concepts/disruption.md,
#: pod-level controls): a Go duration keeps Karpenter from voluntarily disrupting the pod's
#: node for that long after the pod starts, i.e. while the model loads.
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"

#: Smallest volume (GiB) of known ReadWriteMany classes: GKE Filestore (Basic SSD 2.5 TiB,
#: Basic HDD, zonal and Enterprise 1 TiB).
WEIGHT_CACHE_MIN_GI: dict[str, int] = {"premium-rwx": 2560, "standard-rwx": 1024, "zonal-rwx": 1024,
                                       "enterprise-rwx": 1024}
#: Classes whose file system grows by itself (EFS): the size is required by Kubernetes,
#: ignored by the driver, and kept fixed because the EFS CSI driver cannot resize volumes.
ELASTIC_CLASSES = frozenset({"efs-weights"})
ELASTIC_REQUEST_GI = 1024
#: Room for a second revision of the weights beside the current one.
WEIGHT_CACHE_HEADROOM = 2.0

#: LMCache's connector in vLLM: store and retrieve KV cache in the same server.
LMCACHE_TRANSFER_CONFIG = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
#: Serving goes on when the cache is down. LMCache 0.3.5 (lmcache@0.3.5 wheel,
#: lmcache/v1/storage_backend/remote_backend.py) catches every remote error and treats it
#: as a miss (``contains`` False, ``get_blocking`` None, a failed put dropped); its Redis
#: connector (connector/redis_connector.py) is ``redis.from_url(url)``, whose sockets
#: have no timeout by default, so an unreachable cache would stall each lookup until TCP
#: gives up. redis-py parses these query parameters as floats
#: (redis==5.2.1 redis/connection.py URL_QUERY_ARGUMENT_PARSERS); other parameters
#: (``ssl_ca_certs``) go to the SSL connection as they are. ``rediss://`` verifies the server
#: against the system CAs (ElastiCache) or ``ssl_ca_certs`` (Memorystore); redis 5.2.1 does not
#: check the host name by default (Memorystore answers on an IP). The redis-py version inside
#: the LMCache image is unverified (LMCache pins ``redis`` without a version).
REDIS_TIMEOUTS = {"socket_connect_timeout": "1", "socket_timeout": "2"}

#: prometheus_client's multiprocess directory: it must exist before vLLM starts (neither
#: vLLM nor LMCache creates one it did not choose) and be empty at each start, as vLLM
#: asks; the container's own /tmp is both (a restarted container gets a fresh filesystem).
PROMETHEUS_MULTIPROC_DIR = "/tmp"

TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"


class _ModelDeploymentArgsRequired(TypedDict):
    model: ModelConfig
    pool: GpuPoolConfig
    shape: GpuShape
    namespace: pulumi.Input[str]
    secret_name: pulumi.Input[str]
    cache_secret_name: Optional[pulumi.Input[str]]
    weight_cache_storage_class: str


class ModelDeploymentArgs(_ModelDeploymentArgsRequired, total=False):
    """Arguments of :class:`ModelDeployment`.

    model: the model's validated config (``components.config.ModelConfig``).
    pool: the GPU pool it runs on (``GpuPoolConfig``); its name is the node selector.
    shape: the pool's machine shape (``GpuShape``): GPU memory for sizing, vCPUs and
        memory for the container's share.
    namespace: the serving namespace.
    secret_name: the Secret with ``HF_TOKEN`` and ``VLLM_API_KEY``.
    cache_secret_name: the cache connection Secret (``REDIS_URL`` ...), or None when the
        region has no cache; LMCache needs it.
    weight_cache_storage_class: ReadWriteMany StorageClass of the weight cache
        (``premium-rwx`` on GKE, ``efs-weights`` on EKS).
    service_annotations: annotations of the Service (e.g. GKE NEG); default none.
    environment: the stack's ``environment`` (``production`` by default), labelled on the
        autoscaling object for the policy pack.
    pool_scales_to_zero: whether the model's GPU pool may have no node (its
        ``minNodes`` is 0), so a cold start from zero replicas includes a new node;
        default True.
    """

    service_annotations: Optional[dict[str, str]]
    environment: str
    pool_scales_to_zero: bool


# --------------------------------------------------------------------------- names and labels


def deployment_name(model: ModelConfig) -> str:
    """``vllm-<model>``: the Deployment, Service, PDB and HPA name the metrics pipeline expects."""
    return ModelRef(name=model.name).deployment


def claim_name(model: ModelConfig) -> str:
    """The weight cache claim: ``vllm-<model>-weights``."""
    return f"{deployment_name(model)}-weights"


def serving_image(model: ModelConfig) -> str:
    """LMCache's vLLM image when LMCache is on, else ``model.image``."""
    return model.lmcache.image if model.lmcache.enabled else model.image


def image_version(image: str) -> str:
    """The image's tag as a label value (``vllm/vllm-openai:v0.33.0`` -> ``v0.33.0``); a
    digest-only reference gives ``sha256-<first 12 hex>``, no tag ``latest``."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag:
        tag = digest.replace(":", "-")[:19] if digest else "latest"
    return re.sub(r"[^A-Za-z0-9._-]", "-", tag)[:63].strip("-._") or "latest"


def selector_labels(model: ModelConfig) -> dict[str, str]:
    """The immutable pod labels the selectors use."""
    return {**VLLM_POD_LABELS, MODEL_LABEL: model.name}


def labels(model: ModelConfig) -> dict[str, str]:
    """Labels of every object and pod of the model."""
    return {
        **selector_labels(model),
        "app.kubernetes.io/instance": model.name,
        "app.kubernetes.io/version": image_version(serving_image(model)),
        "app.kubernetes.io/component": "inference-server",
        **FLEET_LABELS,
        "app.kubernetes.io/managed-by": "pulumi",
        # The cache's egress NetworkPolicy selects the pods that use it.
        **(CACHE_CLIENT_LABELS if model.lmcache.enabled else {}),
    }


# --------------------------------------------------------------------------- container


def vllm_args(model: ModelConfig) -> list[str]:
    """Arguments of the image's OpenAI API server (both images' entrypoint is ``vllm serve``)."""
    args = [
        "--model", model.model_id,
        "--revision", model.revision,
        "--served-model-name", model.name,
        "--tensor-parallel-size", str(model.tensor_parallel_size),
        "--max-model-len", str(model.max_model_len),
        "--dtype", model.dtype,
    ]
    if model.quantization:
        args += ["--quantization", model.quantization]
    args += [
        "--gpu-memory-utilization", str(model.gpu_memory_utilization),
        "--port", str(VLLM_PORT),
        "--download-dir", HUB_CACHE,
        "--shutdown-timeout", str(DRAIN_SECONDS),
    ]
    if model.lmcache.enabled:
        args += ["--kv-transfer-config", json.dumps(LMCACHE_TRANSFER_CONFIG, separators=(",", ":"))]
    return args + list(model.extra_args)


def _secret_env(name: str, secret: Any, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def container_env(model: ModelConfig, secret_name: Any, cache_secret_name: Any, cloud: str) -> list[dict]:
    """The container's ``env``: secrets by reference only, plain settings by value.

    With LMCache on, ``LMCACHE_REMOTE_URL`` is ``$(REDIS_URL)`` (``rediss://``: TLS, the
    AUTH token as the URL's password), which Kubernetes expands from the cache Secret
    (``envFrom``) inside the pod, with socket timeouts (:data:`REDIS_TIMEOUTS`); on GCP it
    adds Memorystore's CA file for the TLS connection.
    """
    env = [
        _secret_env("HF_TOKEN", secret_name, HF_TOKEN_KEY),
        _secret_env("VLLM_API_KEY", secret_name, API_KEY_KEY),
        {"name": "HF_HOME", "value": CACHE_MOUNT},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
    ]
    if model.lmcache.enabled:
        if cache_secret_name is None:
            raise ValueError(f"model {model.name}: LMCache needs the regional cache (cache_secret_name)")
        remote = "$(REDIS_URL)?" + urlencode(
            {**REDIS_TIMEOUTS, **({"ssl_ca_certs": f"{REDIS_CA_MOUNT}/ca.crt"} if cloud == "gcp" else {})}, safe="/")
        lm = model.lmcache
        env += [
            {"name": "LMCACHE_CHUNK_SIZE", "value": str(lm.chunk_size)},
            {"name": "LMCACHE_LOCAL_CPU", "value": "True"},
            {"name": "LMCACHE_MAX_LOCAL_CPU_SIZE", "value": str(lm.local_cpu_gb)},
            {"name": LMCACHE_URL_ENV, "value": remote},
            {"name": "LMCACHE_REMOTE_SERDE", "value": "naive"},
            # LMCache counts hits in the engine's worker process; with a multiprocess
            # directory set before vLLM starts, vLLM's /metrics serves those counters too
            # (vllm/v1/metrics/prometheus.py get_prometheus_registry at v0.11.0).
            {"name": "PROMETHEUS_MULTIPROC_DIR", "value": PROMETHEUS_MULTIPROC_DIR},
        ]
    return env


def container_resources(shape: GpuShape, gpus: int) -> dict:
    """Requests equal to limits (Guaranteed QoS: last to be evicted or OOM-killed): the
    GPUs, and the node's CPU and memory in proportion (:func:`components.sizing.host_share`)."""
    share = host_share(shape, gpus)
    amounts = {"cpu": f"{share.cpu_millis}m", "memory": f"{share.memory_gib}Gi", GPU_RESOURCE: str(gpus)}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def probes(startup_budget: int) -> dict:
    """Startup and readiness: authenticated ``/v1/models`` (exec); liveness: ``/health``.

    The startup probe allows ``startup_budget`` seconds before the container is
    restarted; liveness only starts once it has passed.
    """
    models = {"exec": {"command": ["python3", "-c", PROBE_SCRIPT]},
              "periodSeconds": PROBE_PERIOD_SECONDS, "timeoutSeconds": PROBE_TIMEOUT_SECONDS}
    return {
        "startupProbe": {**models, "failureThreshold": math.ceil(startup_budget / PROBE_PERIOD_SECONDS)},
        "readinessProbe": {**models, "failureThreshold": 3, "successThreshold": 1},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": PORT_NAME},
            "periodSeconds": 15,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": 4,
        },
    }


def rollout_timeout_seconds(sizing: Sizing, replicas: int, provisioning_seconds: int, startup_budget: int) -> int:
    """How long Pulumi waits for the Deployment (and its ``progressDeadlineSeconds``).

    The pool's provisioning allowance (a new GPU node, or a new Filestore volume, in
    parallel), an image pull and the startup budget for the first replica;
    then, one at a time (maxSurge 1), each further replica's termination grace, image pull
    and start from the cached weights. Sized for ``replicas`` = minReplicas: a rollout at
    a larger HPA scale takes longer than Pulumi waits, carries on in the cluster anyway,
    and the next ``pulumi up`` picks it up; waiting for maxReplicas would make a broken
    image block a deployment for hours.
    """
    later = TERMINATION_GRACE_SECONDS + IMAGE_PULL_SECONDS + math.ceil(sizing.load_seconds_estimate * STARTUP_MARGIN)
    return provisioning_seconds + IMAGE_PULL_SECONDS + startup_budget + (replicas - 1) * later


def weight_cache_size_gi(sizing: Sizing, storage_class: str) -> int:
    """The weight cache volume's request in GiB (see the module docstring)."""
    if storage_class in ELASTIC_CLASSES:
        return ELASTIC_REQUEST_GI
    needed = math.ceil(sizing.checkpoint_gb * GB * WEIGHT_CACHE_HEADROOM / GIB)
    return max(needed, WEIGHT_CACHE_MIN_GI.get(storage_class, 0))


def pod_spec(model: ModelConfig, pool: GpuPoolConfig, shape: GpuShape, sizing: Sizing, *, startup_budget: int,
             secret_name: Any, cache_secret_name: Any = None) -> dict:
    """The pod template's spec. Secret names may be plain strings or Pulumi Inputs."""
    ca_file = model.lmcache.enabled and shape.cloud == "gcp"
    mounts = [{"name": "weights", "mountPath": CACHE_MOUNT}, {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [
        {"name": "weights", "persistentVolumeClaim": {"claimName": claim_name(model)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
    ]
    if ca_file:
        mounts.append({"name": "redis-tls", "mountPath": REDIS_CA_MOUNT, "readOnly": True})
        volumes.append({"name": "redis-tls", "secret": {"secretName": cache_secret_name,
                                                        "items": [{"key": REDIS_CA_KEY, "path": "ca.crt"}]}})
    container = {
        "name": CONTAINER_NAME,
        "image": serving_image(model),
        "args": vllm_args(model),
        "ports": [{"name": PORT_NAME, "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "env": container_env(model, secret_name, cache_secret_name, shape.cloud),
        "resources": container_resources(shape, sizing.gpus),
        "volumeMounts": mounts,
        **probes(startup_budget),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        # No Linux capabilities or privilege escalation: vLLM and NCCL need neither. It still runs
        # as root with a writable root filesystem: the image writes compile caches under /root.
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    # Redis credentials only where LMCache uses them (container_env refuses LMCache
    # without the cache Secret).
    if model.lmcache.enabled:
        container["envFrom"] = [{"secretRef": {"name": cache_secret_name}}]
    spread = [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": selector_labels(model)}, "matchLabelKeys": ["pod-template-hash"]}
        for key in (ZONE_KEY, HOSTNAME_KEY)
    ]
    return {
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": {POOL_LABEL: pool.name},
        "tolerations": [dict(GPU_TOLERATION)],
        "topologySpreadConstraints": spread,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # The container runtime's default seccomp profile (GKE Autopilot enforces it on GPU pods too).
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        # vLLM needs no Kubernetes API access.
        "automountServiceAccountToken": False,
        # Service links would add VLLM_*_PORT variables, a prefix vLLM reads settings from.
        "enableServiceLinks": False,
    }


def initial_replicas(model: ModelConfig) -> int:
    """Replicas the Deployment is created with: minReplicas, but at least one, so the first
    ``pulumi up`` proves the model starts and fills the weight cache even when it may
    scale to zero (KEDA leaves it alone for ``initialCooldownPeriod`` first)."""
    return max(model.autoscaling.min_replicas, 1)


def pod_annotations(shape: GpuShape, startup_budget: int) -> dict:
    """On EKS, Karpenter leaves a loading replica's node alone for its start-up budget."""
    if shape.cloud != "aws":
        return {}
    return {"annotations": {DO_NOT_DISRUPT_ANNOTATION: f"{startup_budget}s"}}


def deployment_spec(model: ModelConfig, pool: GpuPoolConfig, shape: GpuShape, sizing: Sizing, *,
                    startup_budget: int, rollout_timeout: int, secret_name: Any, cache_secret_name: Any = None) -> dict:
    """The Deployment's spec (initial replicas: :func:`initial_replicas`); ``startup_budget``
    and ``rollout_timeout`` as :func:`startup_budget_seconds` and
    :func:`rollout_timeout_seconds` give them, computed once per model."""
    return {
        "replicas": initial_replicas(model),
        "selector": {"matchLabels": selector_labels(model)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "progressDeadlineSeconds": rollout_timeout,
        "template": {
            "metadata": {"labels": labels(model), **pod_annotations(shape, startup_budget)},
            "spec": pod_spec(model, pool, shape, sizing, startup_budget=startup_budget, secret_name=secret_name,
                             cache_secret_name=cache_secret_name),
        },
    }


def service_spec(model: ModelConfig) -> dict:
    """A ClusterIP Service on port 8000 (``http``) in front of the model's pods."""
    return {
        "type": "ClusterIP",
        "selector": selector_labels(model),
        "ports": [{"name": PORT_NAME, "port": VLLM_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
    }


def pdb_spec(model: ModelConfig) -> dict:
    """One replica down at a time; crash-looping pods never block a node drain."""
    return {
        "maxUnavailable": 1,
        "selector": {"matchLabels": selector_labels(model)},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def pvc_spec(sizing: Sizing, storage_class: str) -> dict:
    """The ReadWriteMany weight cache claim of ``storage_class``."""
    return {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": storage_class,
        "resources": {"requests": {"storage": f"{weight_cache_size_gi(sizing, storage_class)}Gi"}},
    }


def scale_to_zero_notice(model: str, idle_seconds: int, wait: ColdStart) -> str:
    """What the plan and ``pulumi up`` say about a model that may scale to zero."""
    node = f"a new GPU node {wait.node_seconds} s + " if wait.node_seconds else ""
    return (f"model {model} scales to zero after {idle_seconds} s idle. At zero replicas the load balancer answers "
            f"503 at once (requests are not held, and no signal wakes the model by itself); wake it with "
            f"'kubectl annotate scaledobject vllm-{model} autoscaling.keda.sh/paused-replicas=1' (remove the "
            f"annotation once traffic flows). A woken replica serves after up to {wait.total_seconds} s "
            f"({node}image pull {wait.image_pull_seconds} s + start-up budget {wait.startup_seconds} s).")


# --------------------------------------------------------------------------- component


class ModelDeployment(pulumi.ComponentResource):
    """A served model (``gpufleet:index:ModelDeployment``); see the module docstring.

    Uses the ``kubernetes`` provider passed in ``opts``.

    Attributes: ``deployment_name`` (``vllm-<model>``), ``service_name`` (Output),
    ``service_port`` (8000), ``model``, ``sizing`` (:class:`components.sizing.Sizing`) and
    ``summary``, a plain dict for the stack output ``models``: name, modelId, revision,
    pool, gpusPerReplica, minReplicas, maxReplicas, kvCacheTokens and
    maxConcurrentSequences (per replica), startupBudgetSeconds, service (its name) and,
    for a model that may scale to zero, scaleToZero (idleSeconds and the cold start:
    coldStartSeconds and its parts).

    Raises ValueError, before creating anything, for a model that does not fit ``shape``
    or that enables LMCache without ``cache_secret_name``.
    """

    deployment_name: str
    service_name: pulumi.Output[str]
    service_port: int
    model: ModelConfig
    sizing: Sizing
    summary: dict[str, Any]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        model, pool, shape = args["model"], args["pool"], args["shape"]
        found = problems(model, shape)
        if model.lmcache.enabled and args.get("cache_secret_name") is None:
            found.append(("lmcache.enabled", "LMCache needs the regional cache (cache_secret_name)"))
        if found:
            raise ValueError(f"model {model.name} cannot run on {shape.machine_type}: "
                             + "; ".join(f"{field}: {msg}" for field, msg in found))
        super().__init__("gpufleet:index:ModelDeployment", name, None, opts)

        self.model = model
        self.sizing = size_model(model, shape)
        self.deployment_name = deployment_name(model)
        self.service_port = VLLM_PORT
        namespace = args["namespace"]
        budget = startup_budget_seconds(self.sizing)
        timeout = rollout_timeout_seconds(self.sizing, initial_replicas(model), pool.provisioning_seconds, budget)
        # Both: custom timeouts are what the provider honours first; the annotation keeps
        # the wait with the object for tools that read it.
        waits = pulumi.CustomTimeouts(create=f"{timeout}s", update=f"{timeout}s")
        wait_annotation = {TIMEOUT_ANNOTATION: str(timeout)}
        meta = {"namespace": namespace, "labels": labels(model)}

        storage_class = args["weight_cache_storage_class"]
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-weights",
            metadata={**meta, "name": claim_name(model), "annotations": {SKIP_AWAIT_ANNOTATION: "true"}},
            spec=pvc_spec(self.sizing, storage_class),
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={**meta, "name": self.deployment_name, "annotations": wait_annotation},
            spec=deployment_spec(model, pool, shape, self.sizing, startup_budget=budget, rollout_timeout=timeout,
                                 secret_name=args["secret_name"], cache_secret_name=args.get("cache_secret_name")),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[claim], ignore_changes=["spec.replicas"],
                                        custom_timeouts=waits),
        )
        # Not awaited: Pulumi would wait for a ready endpoint, i.e. for GPUs, and the entry
        # point (which names the Service) with it; the Deployment's wait covers readiness,
        # so a GPU shortage holds back only this model.
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={**meta, "name": self.deployment_name,
                      "annotations": {**(args.get("service_annotations") or {}), SKIP_AWAIT_ANNOTATION: "true"}},
            spec=service_spec(model),
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={**meta, "name": self.deployment_name},
            spec=pdb_spec(model),
            opts=pulumi.ResourceOptions(parent=self),
        )
        autoscaling = model.autoscaling
        if autoscaling.engine == "keda":
            # KEDA creates and owns the HPA (components.keda); the CRD comes with the KEDA
            # release, which the region installs before the models.
            # The triggers' queries name the namespace, so the spec waits for it.
            so = pulumi.Output.from_input(namespace).apply(lambda ns: scaled_object(
                autoscaling, self.deployment_name, ns,
                labels={**labels(model), ENVIRONMENT_LABEL: args.get("environment") or "production"},
                prometheus_url=PROMETHEUS_URL, initial_cooldown_seconds=timeout))
            k8s.apiextensions.CustomResource(
                f"{name}-scaledobject",
                api_version=SCALED_OBJECT_API_VERSION,
                kind=SCALED_OBJECT_KIND,
                metadata=so["metadata"],
                spec=so["spec"],
                opts=pulumi.ResourceOptions(parent=self),
            )
        else:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata={**meta, "name": self.deployment_name},
                spec=hpa_spec(autoscaling, self.deployment_name),
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.service_name = service.metadata["name"]
        self.summary = {
            "name": model.name,
            "modelId": model.model_id,
            "revision": model.revision,
            "pool": pool.name,
            "gpusPerReplica": self.sizing.gpus,
            "minReplicas": model.autoscaling.min_replicas,
            "maxReplicas": model.autoscaling.max_replicas,
            "kvCacheTokens": self.sizing.kv_cache_tokens,
            "maxConcurrentSequences": self.sizing.max_concurrent_sequences,
            "startupBudgetSeconds": budget,
            "service": self.deployment_name,
        }
        if autoscaling.min_replicas == 0:
            node = pool.provisioning_seconds if args.get("pool_scales_to_zero", True) else 0
            wait = cold_start(self.sizing, node_seconds=node)
            self.summary["scaleToZero"] = {
                "idleSeconds": autoscaling.scale_to_zero.idle_seconds,
                "coldStartSeconds": wait.total_seconds,
                "coldStart": {"nodeSeconds": wait.node_seconds, "imagePullSeconds": wait.image_pull_seconds,
                              "startupSeconds": wait.startup_seconds},
            }
            pulumi.log.warn(scale_to_zero_notice(model.name, autoscaling.scale_to_zero.idle_seconds, wait),
                            resource=self)
        self.register_outputs({"deploymentName": self.deployment_name, "serviceName": self.service_name})
