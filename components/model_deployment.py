"""One served model: its vLLM Deployment, Service, PodDisruptionBudget, HPA and weight cache.

``ModelDeployment`` (``gpufleet:index:ModelDeployment``) creates, in the serving namespace:

- a PersistentVolumeClaim ``vllm-<model>-weights`` (ReadWriteMany) holding the Hugging
  Face cache, so a restarted or added replica reads the weights instead of downloading
  them again;
- the Deployment ``vllm-<model>`` serving the OpenAI API on port 8000 (``http``);
- a ClusterIP Service ``vllm-<model>``, a PodDisruptionBudget and the HPA
  (:func:`gpu_fleet.components.hpa.hpa_spec`, the seed's HPA by default), or with
  ``autoscaling.engine: keda`` a KEDA ScaledObject (:func:`gpu_fleet.components.keda.scaled_object`)
  on the same signals, which may scale a non-production model to zero.

The pure functions below build every spec, so most tests need no Pulumi; the class only
creates the objects. Decisions and why:

- Sizing first: the component refuses a model that :func:`gpu_fleet.components.sizing.problems`
  rejects (the config checks report the same before anything is created).
- Names and labels are the fleet's contract: Deployment ``vllm-<model>``
  (:class:`gpu_fleet.components.monitoring_rules.ModelRef`), pod labels
  ``app.kubernetes.io/name=vllm`` and ``gpu-fleet/model=<model>``, which the PodMonitor,
  the recording rules, the HPA's metrics and the cache NetworkPolicy select on. Only
  those two are the selector: they never change, while ``app.kubernetes.io/version``
  follows the image.
- Secrets: the Hugging Face token and the API key come from the serving Secret through
  ``secretKeyRef`` (vLLM reads ``VLLM_API_KEY``), the cache connection through
  ``envFrom`` and only with LMCache on (those pods carry
  :data:`gpu_fleet.components.cache.CACHE_CLIENT_LABELS` for the cache's egress NetworkPolicy); no
  secret value is ever in the pod spec. Because vLLM then rejects
  unauthenticated ``/v1/*`` calls and an ``httpGet`` probe's headers would hold the key in
  plaintext, the startup and readiness probes are ``exec`` probes reading the key from
  the container's environment; liveness uses the unauthenticated ``/health``.
- Start-up: the startup probe allows :func:`gpu_fleet.components.sizing.startup_budget_seconds`
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
from dataclasses import dataclass
from typing import Any, Optional, TypedDict
from urllib.parse import urlencode

import pulumi
import pulumi_kubernetes as k8s

from . import gateway as gw
from . import pins
from .capacity_tiers import compute_class_tolerations, pool_node_selector
from .config import GatewayConfig, GpuPoolConfig, ModelConfig
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
    VLLM_POD_LABELS,
)
from .gpu_catalog import Cloud, GpuKind, GpuShape, load_catalog
from .hpa import hpa_spec
from .keda import SCALED_OBJECT_API_VERSION, SCALED_OBJECT_KIND, scaled_object
from .monitoring_rules import PROMETHEUS_URL, VLLM_METRICS_PORT, ModelRef
from .sizing import (
    GB,
    GIB,
    IMAGE_PULL_SECONDS,
    STARTUP_MARGIN,
    ColdStart,
    HostShare,
    Sizing,
    cold_start,
    host_share,
    problems,
    size_model,
    startup_budget_seconds,
)

__all__ = ["ModelDeployment", "ModelDeploymentArgs", "Placement", "cluster_shape", "gpu_host_share",
           "startup_budget_seconds"]

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
#: The variable vLLM reads its API key from (the gateway sends the same key to vLLM).
API_KEY_ENV = "VLLM_API_KEY"
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

#: Writable volumes of the pinned vLLM image when its root filesystem is read-only: HOME takes
#: every cache that defaults under it (vLLM's VLLM_CACHE_ROOT ~/.cache/vllm with its compile cache,
#: VLLM_CONFIG_ROOT ~/.config/vllm: vllm@v0.33.0 vllm/envs.py; "HF, Triton, Inductor, vLLM, Numba,
#: Outlines": docker/entrypoints/vllm-nonroot-entrypoint.sh), /tmp takes tempfile's files (vLLM's
#: own Prometheus multiprocess directory: vllm/v1/metrics/prometheus.py). Both are on the node's
#: disk, like the writable layer they replace.
SCRATCH_MOUNTS = {"home": pins.VLLM_HOME, "tmp": "/tmp"}

TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"


class _ModelDeploymentArgsRequired(TypedDict):
    model: ModelConfig
    namespace: pulumi.Input[str]
    secret_name: pulumi.Input[str]
    cache_secret_name: Optional[pulumi.Input[str]]
    weight_cache_storage_class: str


class ModelDeploymentArgs(_ModelDeploymentArgsRequired, total=False):
    """Arguments of :class:`ModelDeployment`.

    model: the model's validated config (``gpu_fleet.components.config.ModelConfig``).
    pool: the fleet's GPU pool it runs on (``GpuPoolConfig``); its name is the node
        selector. Without it (a cluster of your own), the pods select ``node_selector``.
    shape: the pool's machine shape (``GpuShape``): GPU memory for sizing, vCPUs and
        memory for the container's share. Without it, give ``gpu`` (and ``cloud``).
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
    gateway: the region's ``gateway`` section when it is enabled (a LiteLLM container
        beside vLLM, :mod:`gpu_fleet.components.gateway`, with the cache as its response cache when
        ``cache_secret_name`` is given), or None (default): clients reach vLLM directly.

    Bring your own cluster (every one optional; the defaults are the fleet's own pools):

    gpu: the nodes' GPU kind (``h100``, ``a100-80gb``, ``a100-40gb``) when there is no
        ``shape``: its memory sizes the model (:func:`cluster_shape`).
    gpus_per_node: GPUs of such a node; default the model's tensor parallel size.
    cloud: ``aws`` or ``gcp`` when there is no ``shape``: ``aws`` adds Karpenter's
        do-not-disrupt annotation (inert without Karpenter), ``gcp`` mounts Memorystore's
        CA for LMCache.
    node_selector: the pods' ``nodeSelector``; default ``{gpu-fleet/pool: <pool>}``, or
        none without a pool (the GPU request alone then places the pods).
    tolerations: the pods' tolerations; default the ``nvidia.com/gpu`` NoSchedule taint.
    priority_class_name: the pods' PriorityClass; default none.
    image_pull_secrets: names of Secrets in the namespace to pull the image with.
    cpu_per_gpu_millis / memory_gib_per_gpu: the container's CPU and memory per GPU when
        there is no ``shape``; default the smallest share of any catalog machine with
        that GPU (:func:`gpu_host_share`), so the pods fit those machines.
    provisioning_seconds: how long a new GPU node may take to arrive, when there is no
        pool (rollout timeouts and cold starts); default the pools' default, 900.
    """

    pool: GpuPoolConfig
    shape: GpuShape
    service_annotations: Optional[dict[str, str]]
    environment: str
    pool_scales_to_zero: bool
    gateway: Optional[GatewayConfig]
    gpu: GpuKind
    gpus_per_node: int
    cloud: Cloud
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    priority_class_name: str
    image_pull_secrets: list[str]
    cpu_per_gpu_millis: int
    memory_gib_per_gpu: int
    provisioning_seconds: int


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


def uses_cache(model: ModelConfig, gateway: Optional[GatewayConfig], cache_secret_name: Any) -> bool:
    """Whether the model's pods read and write the regional cache (LMCache or the gateway)."""
    return model.lmcache.enabled or (gateway is not None and cache_secret_name is not None)


def pod_labels(model: ModelConfig, cache_client: bool) -> dict[str, str]:
    """The pods' labels: the cache's egress NetworkPolicy admits only cache clients."""
    return {**labels(model), **(CACHE_CLIENT_LABELS if cache_client else {})}


def labels(model: ModelConfig) -> dict[str, str]:
    """Labels of every object and pod of the model."""
    return {
        **selector_labels(model),
        "app.kubernetes.io/instance": model.name,
        "app.kubernetes.io/version": image_version(serving_image(model)),
        "app.kubernetes.io/component": "inference-server",
        **FLEET_LABELS,
        "app.kubernetes.io/managed-by": "pulumi",
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
        _secret_env(API_KEY_ENV, secret_name, API_KEY_KEY),
        {"name": "HF_HOME", "value": CACHE_MOUNT},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
    ]
    if hardened(model):
        # Given, not taken from /etc/passwd: root's HOME (/root) is on the read-only filesystem.
        env.append({"name": "HOME", "value": pins.VLLM_HOME})
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


def container_resources(shape: GpuShape, gpus: int, host: Optional[HostShare] = None,
                        with_gateway: bool = False) -> dict:
    """Requests equal to limits (Guaranteed QoS: last to be evicted or OOM-killed): the
    GPUs, and ``host`` or else the node's CPU and memory in proportion
    (:func:`gpu_fleet.components.sizing.host_share`), less the gateway container's when the pod has one."""
    share = host or host_share(shape, gpus)
    cpu, memory = share.cpu_millis, share.memory_gib
    if with_gateway:
        cpu, memory = cpu - gw.CPU_MILLIS, memory - gw.MEMORY_GIB
    amounts = {"cpu": f"{cpu}m", "memory": f"{memory}Gi", GPU_RESOURCE: str(gpus)}
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


# --------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    """Where the pods go and what they ask of a node, on the fleet's pools or any cluster.

    host: the container's CPU and memory; None: the shape's share of its node
    (:func:`container_resources`).
    provisioning_seconds: how long a new GPU node may take (rollout timeout, cold start).
    """

    node_selector: dict[str, str]
    tolerations: tuple[dict[str, Any], ...]
    provisioning_seconds: int
    priority_class_name: Optional[str] = None
    image_pull_secrets: tuple[str, ...] = ()
    host: Optional[HostShare] = None


#: A pool's default node provisioning allowance (``GpuPoolConfig.provisioningSeconds``).
DEFAULT_PROVISIONING_SECONDS: int = GpuPoolConfig.model_fields["provisioning_seconds"].default


def pool_placement(pool: GpuPoolConfig, cloud: str) -> Placement:
    """The fleet's own pools: the pool's label (and on a tiered GKE pool its ComputeClass,
    :mod:`gpu_fleet.components.capacity_tiers`), the GPU taint, the shape's host share."""
    return Placement(node_selector=pool_node_selector(cloud, pool),
                     tolerations=(dict(GPU_TOLERATION), *compute_class_tolerations(cloud, pool)),
                     provisioning_seconds=pool.provisioning_seconds)


def gpu_host_share(gpu: GpuKind, gpus: int) -> HostShare:
    """CPU and memory for ``gpus`` GPUs of kind ``gpu`` on an unknown machine: per GPU the
    smallest share (:func:`gpu_fleet.components.sizing.host_share`) of any catalog machine with that
    GPU, so the pods fit each of those machines."""
    shares = [host_share(shape, 1) for shapes in load_catalog().shapes.values()
              for shape in shapes.values() if shape.gpu == gpu]
    if not shares:
        raise ValueError(f"gpu {gpu!r}: no catalog machine has it")
    return HostShare(cpu_millis=min(s.cpu_millis for s in shares) * gpus,
                     memory_gib=min(s.memory_gib for s in shares) * gpus)


def cluster_shape(gpu: GpuKind, gpus_per_node: int, cloud: Cloud) -> GpuShape:
    """A node of an existing cluster known only by its GPUs, for sizing: the GPU memory of
    the catalog's machines with that GPU. Its host CPU and memory are not known (0): the
    container's come from :func:`gpu_host_share` or the caller."""
    memory = {shape.gpu_memory_gb for shapes in load_catalog().shapes.values()
              for shape in shapes.values() if shape.gpu == gpu}
    if len(memory) != 1:
        raise ValueError(f"gpu {gpu!r}: expected one GPU memory size in the catalog, found {sorted(memory)}")
    return GpuShape(cloud=cloud, machine_type=f"a node with {gpus_per_node} {gpu} GPUs", gpu=gpu,
                    gpus=gpus_per_node, gpu_memory_gb=memory.pop(), vcpus=0, memory_gb=0)


def placement_of(args: "ModelDeploymentArgs", gpus: int, cloud: str) -> Placement:
    """The placement ``args`` asks for: a pool's defaults overridden by the
    bring-your-own-cluster arguments (see :class:`ModelDeploymentArgs`)."""
    pool = args.get("pool")
    base = pool_placement(pool, cloud) if pool is not None else Placement(
        node_selector={}, tolerations=(dict(GPU_TOLERATION),), provisioning_seconds=DEFAULT_PROVISIONING_SECONDS)
    host = None
    if args.get("shape") is None:
        per_gpu = gpu_host_share(args["gpu"], 1)
        host = HostShare(cpu_millis=args.get("cpu_per_gpu_millis", per_gpu.cpu_millis) * gpus,
                         memory_gib=args.get("memory_gib_per_gpu", per_gpu.memory_gib) * gpus)
    return Placement(
        node_selector=dict(args.get("node_selector", base.node_selector)),
        tolerations=tuple(args.get("tolerations", base.tolerations)),
        provisioning_seconds=args.get("provisioning_seconds", base.provisioning_seconds),
        priority_class_name=args.get("priority_class_name"),
        image_pull_secrets=tuple(args.get("image_pull_secrets", ())),
        host=host,
    )


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


def hardened(model: ModelConfig) -> bool:
    """Whether the container runs with a read-only root filesystem: only the pinned vLLM
    image, whose cache paths were read at its tag (another image, or LMCache's, keeps a
    writable one)."""
    return serving_image(model) == pins.VLLM.image


def runs_as_non_root(model: ModelConfig, cloud: str) -> bool:
    """Whether the pod runs as the image's ``vllm`` user (UID 2000, GID 0): on EKS, where the
    weight cache is writable by any UID (EFS dynamic provisioning always enforces the access
    point's POSIX identity: kubernetes-sigs/aws-efs-csi-driver docs/parameters.md, v2.0.0 to
    v3.4.1). Not on GKE: a new Filestore share's owner and mode were not found in any source read,
    and whether GKE's managed Filestore CSIDriver declares ``fsGroupPolicy: File`` (so that
    fsGroup 0 would make the share group-writable; upstream's stable-master overlay does:
    kubernetes-sigs/gcp-filestore-csi-driver docs/kubernetes/fsgroup.md) is unverified, so a
    non-root vLLM could fail to write the Hugging Face cache there."""
    return hardened(model) and cloud == "aws"


def security_contexts(model: ModelConfig, cloud: str) -> tuple[dict, dict]:
    """``(pod, container)`` security contexts. Always: the runtime's default seccomp profile
    (GKE Autopilot enforces it on GPU pods too), no capabilities, no privilege escalation
    (vLLM and NCCL need neither)."""
    pod: dict = {"seccompProfile": {"type": "RuntimeDefault"}}
    container: dict = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if hardened(model):
        container["readOnlyRootFilesystem"] = True
    if runs_as_non_root(model, cloud):
        # fsGroup 0 makes the scratch emptyDirs group-0-writable, as vLLM's docs ask for mounted
        # cache paths (docs/deployment/docker.md at v0.33.0); the EFS CSIDriver declares no
        # fsGroupPolicy, so the RWX weight volume is not walked (aws-efs-csi-driver@v3.4.1
        # charts/aws-efs-csi-driver/templates/csidriver.yaml).
        # The user is the vLLM container's own, not the pod's: the gateway sidecar
        # (gpu_fleet.components.gateway) runs as its image's user, which was not read.
        pod["fsGroup"] = pins.VLLM_GID
        container.update({"runAsNonRoot": True, "runAsUser": pins.VLLM_UID, "runAsGroup": pins.VLLM_GID})
    return pod, container


def pod_spec(model: ModelConfig, pool: Optional[GpuPoolConfig], shape: GpuShape, sizing: Sizing, *,
             startup_budget: int, secret_name: Any, cache_secret_name: Any = None,
             gateway: Optional[GatewayConfig] = None, placement: Optional[Placement] = None) -> dict:
    """The pod template's spec. Secret names may be plain strings or Pulumi Inputs.
    ``placement`` defaults to the pool's (:func:`pool_placement`)."""
    placement = placement or pool_placement(pool, shape.cloud)
    ca_file = uses_cache(model, gateway, cache_secret_name) and shape.cloud == "gcp"
    pod_security, container_security = security_contexts(model, shape.cloud)
    mounts = [{"name": "weights", "mountPath": CACHE_MOUNT}, {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [
        {"name": "weights", "persistentVolumeClaim": {"claimName": claim_name(model)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
    ]
    if hardened(model):
        mounts += [{"name": name, "mountPath": path} for name, path in SCRATCH_MOUNTS.items()]
        volumes += [{"name": name, "emptyDir": {}} for name in SCRATCH_MOUNTS]
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
        "resources": container_resources(shape, sizing.gpus, placement.host, with_gateway=gateway is not None),
        "volumeMounts": mounts,
        **probes(startup_budget),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": container_security,
    }
    # Redis credentials only where LMCache uses them (container_env refuses LMCache
    # without the cache Secret).
    if model.lmcache.enabled:
        container["envFrom"] = [{"secretRef": {"name": cache_secret_name}}]
    containers = [container]
    if gateway is not None:
        cache_env = [] if cache_secret_name is None else gw.redis_env(
            cache_secret_name, shape.cloud, f"{REDIS_CA_MOUNT}/ca.crt" if ca_file else None)
        sidecar = gw.container(pins.LITELLM.image, {"secretKeyRef": {"name": secret_name, "key": API_KEY_KEY}},
                               API_KEY_ENV, cache_env)
        if ca_file:
            sidecar["volumeMounts"].append({"name": "redis-tls", "mountPath": REDIS_CA_MOUNT, "readOnly": True})
        containers.append(sidecar)
        volumes.append(gw.config_volume(model))
    spread = [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": selector_labels(model)}, "matchLabelKeys": ["pod-template-hash"]}
        for key in (ZONE_KEY, HOSTNAME_KEY)
    ]
    extra: dict[str, Any] = {}
    if placement.priority_class_name:
        extra["priorityClassName"] = placement.priority_class_name
    if placement.image_pull_secrets:
        extra["imagePullSecrets"] = [{"name": n} for n in placement.image_pull_secrets]
    return {
        "containers": containers,
        "volumes": volumes,
        **({"nodeSelector": dict(placement.node_selector)} if placement.node_selector else {}),
        "tolerations": [dict(t) for t in placement.tolerations],
        **extra,
        "topologySpreadConstraints": spread,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security,
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


def deployment_spec(model: ModelConfig, pool: Optional[GpuPoolConfig], shape: GpuShape, sizing: Sizing, *,
                    startup_budget: int, rollout_timeout: int, secret_name: Any, cache_secret_name: Any = None,
                    gateway: Optional[GatewayConfig] = None, placement: Optional[Placement] = None) -> dict:
    """The Deployment's spec (initial replicas: :func:`initial_replicas`); ``startup_budget``
    and ``rollout_timeout`` as :func:`startup_budget_seconds` and
    :func:`rollout_timeout_seconds` give them, computed once per model."""
    return {
        "replicas": initial_replicas(model),
        "selector": {"matchLabels": selector_labels(model)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "progressDeadlineSeconds": rollout_timeout,
        "template": {
            "metadata": {"labels": pod_labels(model, uses_cache(model, gateway, cache_secret_name)),
                         **pod_annotations(shape, startup_budget)},
            "spec": pod_spec(model, pool, shape, sizing, startup_budget=startup_budget, secret_name=secret_name,
                             cache_secret_name=cache_secret_name, gateway=gateway, placement=placement),
        },
    }


def service_spec(model: ModelConfig, with_gateway: bool = False) -> dict:
    """A ClusterIP Service on port 8000 (``http``) in front of the model's pods, and the
    gateway's port 4000 (``gateway``) when they have one."""
    ports = [{"name": PORT_NAME, "port": VLLM_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]
    if with_gateway:
        ports.append({"name": gw.GATEWAY_PORT_NAME, "port": gw.GATEWAY_PORT, "targetPort": gw.GATEWAY_PORT_NAME,
                      "protocol": "TCP"})
    return {"type": "ClusterIP", "selector": selector_labels(model), "ports": ports}


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
    ``service_port`` (8000), ``model``, ``sizing`` (:class:`gpu_fleet.components.sizing.Sizing`) and
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
    #: The Service port of the gateway, where the load balancer sends ``/v1`` (None: no gateway).
    gateway_port: Optional[int]
    model: ModelConfig
    sizing: Sizing
    summary: dict[str, Any]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        model, pool = args["model"], args.get("pool")
        shape = args.get("shape")
        if shape is None:
            if "gpu" not in args or "cloud" not in args:
                raise ValueError(f"model {model.name}: give shape, or gpu and cloud for a cluster of your own")
            shape = cluster_shape(args["gpu"], args.get("gpus_per_node", model.tensor_parallel_size), args["cloud"])
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
        gateway = args.get("gateway")
        self.gateway_port = gw.GATEWAY_PORT if gateway is not None else None
        namespace = args["namespace"]
        budget = startup_budget_seconds(self.sizing)
        placement = placement_of(args, self.sizing.gpus, shape.cloud)
        timeout = rollout_timeout_seconds(self.sizing, initial_replicas(model), placement.provisioning_seconds, budget)
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
        before = [claim]
        if gateway is not None:
            config = gw.litellm_config(model, VLLM_PORT, gateway, args.get("cache_secret_name") is not None,
                                       API_KEY_ENV)
            before.append(k8s.core.v1.ConfigMap(
                f"{name}-gateway",
                metadata={**meta, "name": gw.config_map_name(model)},
                data={gw.CONFIG_FILE: gw.config_text(config)},
                opts=pulumi.ResourceOptions(parent=self),
            ))
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={**meta, "name": self.deployment_name, "annotations": wait_annotation},
            spec=deployment_spec(model, pool, shape, self.sizing, startup_budget=budget, rollout_timeout=timeout,
                                 secret_name=args["secret_name"], cache_secret_name=args.get("cache_secret_name"),
                                 gateway=gateway, placement=placement),
            opts=pulumi.ResourceOptions(parent=self, depends_on=before, ignore_changes=["spec.replicas"],
                                        custom_timeouts=waits),
        )
        # Not awaited: Pulumi would wait for a ready endpoint, i.e. for GPUs, and the entry
        # point (which names the Service) with it; the Deployment's wait covers readiness,
        # so a GPU shortage holds back only this model.
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={**meta, "name": self.deployment_name,
                      "annotations": {**(args.get("service_annotations") or {}), SKIP_AWAIT_ANNOTATION: "true"}},
            spec=service_spec(model, with_gateway=gateway is not None),
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
            # KEDA creates and owns the HPA (gpu_fleet.components.keda); the CRD comes with the KEDA
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
            "pool": pool.name if pool is not None else None,
            "gpusPerReplica": self.sizing.gpus,
            "minReplicas": model.autoscaling.min_replicas,
            "maxReplicas": model.autoscaling.max_replicas,
            "kvCacheTokens": self.sizing.kv_cache_tokens,
            "maxConcurrentSequences": self.sizing.max_concurrent_sequences,
            "startupBudgetSeconds": budget,
            "service": self.deployment_name,
        }
        if autoscaling.min_replicas == 0:
            node = placement.provisioning_seconds if args.get("pool_scales_to_zero", True) else 0
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
