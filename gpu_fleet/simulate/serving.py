"""The serving model: how offered load turns into queue depth, GPU utilisation and the
two metrics the HPA reads.

Assumptions (each can be replaced with ``--set``):

- **A replica** is one vLLM pod with ``tensorParallelSize`` GPUs. It runs at most
  ``concurrency`` sequences at once. Unless given, that is the KV-cache capacity of the
  replica (``gpu_fleet.components.sizing.size_model(model, shape).kv_cache_tokens``) divided by an
  average of **1,500 tokens (prompt + output) per request**, and no more than
  ``--max-num-seqs`` when the model's ``extraArgs`` set it.
- **Throughput** of a full replica is ``concurrency / meanLatencySeconds`` requests per
  second, with a mean request latency of **15 s** (about 1,000 prompt and 500 output tokens
  at 30-40 tokens/s per sequence under continuous batching). Below full concurrency a
  request still takes the mean latency (Little's law: in-flight = rate x latency).
- **Queueing** is one fluid FIFO per deployment, the sum of the per-pod vLLM waiting
  queues: requests beyond ``ready x concurrency`` wait. Nothing is dropped or times out.
- **GPU utilisation** of a ready pod is a saturating function of its occupancy
  ``x = running / concurrency``: ``100 * (1 - exp(-k x)) / (1 - exp(-k))`` with
  ``k = gpuUtilizationCurve`` (default 1; 0 means linear). DCGM's ``GPU_UTIL`` counts the
  time any kernel runs, so it rises faster than occupancy and reaches 100 % at full
  batch. Pods that are still starting report 0 %.
- **Metrics**, as the recording rules build them: ``dcgm_gpu_utilization`` = the sum over
  pods of each pod's mean GPU utilisation; ``llm_pending_requests`` = the sum of waiting
  requests over the pods. No ready pod means no series (the metric is missing).
- **Start-up** of a new replica = GPU node provisioning (:data:`NODE_PROVISION_SECONDS`,
  per cloud and provisioner: **240 s** on both, unverified, see there) + image pull
  (**120 s**) + model load (``size_model(...).load_seconds_estimate``: reading the weights
  from the weight cache plus vLLM's warm-up, 262 s for Llama-3.1-70B on H100).
- **Warm spare nodes** (``warmNodes``): GPU nodes of the pool that run but hold no model
  replica. Replicas that fit on them (``warmNodes x`` replicas per node, above
  ``minReplicas``) skip node provisioning; every other new replica needs a new node. The
  default is what the stack keeps warm: the pool's ``minNodes`` minus the nodes its
  models fill at their ``minReplicas`` (:func:`default_warm_nodes`, at least 0).
- **Scale-down** removes replicas at once (their capacity is gone that second; in-flight
  work stays in the deployment's queue). Starting pods go first, newest first, as the
  ReplicaSet controller picks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from gpu_fleet.components.config import GpuPoolConfig, ModelConfig, RegionConfig
from gpu_fleet.components.gpu_catalog import GpuShape
from gpu_fleet.components.sizing import flag_name, size_model

from . import kernels

DEFAULT_AVG_TOKENS_PER_REQUEST = 1500
DEFAULT_MEAN_LATENCY_SECONDS = 15.0
DEFAULT_UTILIZATION_CURVE = 1.0
#: Seconds from a pending pod to a Ready GPU node, per (cloud, provisioner). No published
#: measurement for H100/A100 nodes was found, so both keep the seed's 240 s, unverified.
#: Read: a third-party EKS playbook gives 45-90 s of node provisioning for Karpenter with
#: general-purpose instances (devfloor9.github.io/engineering-playbook, "Karpenter-based
#: EKS scaling"), and an operator report ~5 min from pod to running on a new Karpenter node
#: (news.ycombinator.com item 44053826); GPU nodes add the NVIDIA driver and device plugin
#: start. GKE's cluster-autoscaler documentation (cloud.google.com/kubernetes-engine/docs/
#: how-to/cluster-autoscaler) gives no scale-up time.
NODE_PROVISION_SECONDS: dict[tuple[str, str], int] = {
    ("aws", "karpenter"): 240,
    ("gcp", "cluster-autoscaler"): 240,
}
#: The provisioner that adds GPU nodes on each cloud.
PROVISIONER = {"aws": "karpenter", "gcp": "cluster-autoscaler"}
DEFAULT_NODE_PROVISION_SECONDS = 240
DEFAULT_IMAGE_PULL_SECONDS = 120


@dataclass(frozen=True)
class ReplicaCapacity:
    """What one replica can serve.

    Args:
        concurrency: sequences it runs at once.
        throughput_rps: requests per second it completes when full.
        gpus: GPUs it holds (``tensorParallelSize``).
    """

    concurrency: float
    throughput_rps: float
    gpus: int

    def __post_init__(self) -> None:
        if self.concurrency <= 0 or self.throughput_rps <= 0 or self.gpus < 1:
            raise ValueError("concurrency and throughput must be positive and gpus at least 1")

    @property
    def mean_latency_seconds(self) -> float:
        return self.concurrency / self.throughput_rps


@dataclass(frozen=True)
class StartupDelay:
    """Seconds from a scale-up to a ready replica, by phase (see the module docstring)."""

    node_provision_seconds: int
    image_pull_seconds: int
    model_load_seconds: int

    @property
    def total_seconds(self) -> int:
        return self.node_provision_seconds + self.image_pull_seconds + self.model_load_seconds


@dataclass(frozen=True)
class ServingModel:
    """A deployment's replicas under load.

    Args:
        capacity: one replica's capacity.
        utilization_curve: ``k`` of the saturating utilisation curve (default 1; 0: linear).
    """

    capacity: ReplicaCapacity
    utilization_curve: float = DEFAULT_UTILIZATION_CURVE

    def __post_init__(self) -> None:
        if self.utilization_curve < 0:
            raise ValueError("gpuUtilizationCurve must be 0 (linear) or more")

    def utilization(self, occupancy: float) -> float:
        """GPU utilisation (percent) of a ready pod running ``occupancy`` of its concurrency."""
        return kernels.utilization_of(occupancy, self.utilization_curve)

    def occupancy_at(self, utilization_percent: float) -> float:
        """The occupancy at which a pod reads ``utilization_percent`` (inverse of :meth:`utilization`)."""
        u = min(max(utilization_percent, 0.0), 100.0) / 100.0
        k = self.utilization_curve
        if k == 0:
            return u
        return -math.log(1.0 - u * (1.0 - math.exp(-k))) / k

    def rps_at(self, utilization_target: float) -> float:
        """Requests/s one replica serves steadily at ``utilization_target`` percent."""
        return self.capacity.throughput_rps * self.occupancy_at(utilization_target)

    def replicas_for_load(self, rps: float, utilization_target: float) -> int:
        """Fewest ready replicas that serve ``rps`` steadily at or below the utilisation target.

        In steady state the replicas run ``rps x latency`` sequences and nothing waits, so
        this also keeps the queue empty.
        """
        # The epsilon keeps exact multiples (a load built as n x capacity) at n.
        return max(0, math.ceil(rps / self.rps_at(utilization_target) - 1e-9))


@dataclass
class Deployment:
    """The fluid FIFO of one deployment: requests in the system (running + waiting).

    :meth:`step` advances one time step and returns ``(running, waiting, utilisation of a
    ready pod)`` for that step: the sequences that held a slot, the requests that did not,
    and the GPU utilisation their occupancy gives. Then ``running x dt / latency`` of the
    running requests complete.
    """

    serving: ServingModel
    #: Requests in the system at the start of a step, before its arrivals.
    in_system: float = 0.0

    def settle(self, rps: float, ready: int, dt: float = 1.0) -> None:
        """Start in steady state for ``rps`` (no warm-up transient at t=0)."""
        cap = self.serving.capacity
        self.in_system = max(0.0, min(rps * cap.mean_latency_seconds, ready * cap.concurrency) - rps * dt)

    def step(self, arrivals: float, ready: int, dt: float = 1.0) -> tuple[float, float, float]:
        cap = self.serving.capacity
        slots = ready * cap.concurrency
        running, waiting, self.in_system = kernels.flow(self.in_system, arrivals, slots, cap.mean_latency_seconds, dt)
        utilization = self.serving.utilization(running / slots) if slots else 0.0
        return running, waiting, utilization


def max_num_seqs(model: ModelConfig) -> Optional[int]:
    """``--max-num-seqs`` from the model's ``extraArgs`` (``N`` or ``=N``), else None."""
    args = model.extra_args
    for i, arg in enumerate(args):
        if flag_name(arg) == "--max-num-seqs":
            value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            return int(value) if value.isdigit() else None
    return None


def replica_capacity(model: ModelConfig, shape: GpuShape, *, concurrency: Optional[float] = None,
                     throughput_rps: Optional[float] = None,
                     avg_tokens_per_request: int = DEFAULT_AVG_TOKENS_PER_REQUEST,
                     mean_latency_seconds: float = DEFAULT_MEAN_LATENCY_SECONDS,
                     gpus: Optional[int] = None) -> ReplicaCapacity:
    """One replica's capacity: given values win, the rest is derived (module docstring).

    Args:
        model: the served model (its ``tensorParallelSize`` and ``extraArgs``).
        shape: the GPU machine of its pool (``pool_offering(cfg, pool).shape``).
        concurrency: sequences per replica; default: KV-cache tokens / average tokens.
        throughput_rps: requests/s of a full replica; default: concurrency / mean latency.
        avg_tokens_per_request: prompt + output tokens of an average request (default 1,500).
        mean_latency_seconds: mean request latency (default 15 s).
        gpus: GPUs per replica; default ``tensorParallelSize``.
    """
    if concurrency is None:
        concurrency = float(size_model(model, shape).kv_cache_tokens // avg_tokens_per_request)
        cap = max_num_seqs(model)
        if cap is not None:
            concurrency = float(min(concurrency, cap))
        if concurrency < 1:
            raise ValueError(f"the KV cache of {model.name} holds less than one request of "
                             f"{avg_tokens_per_request} tokens; set concurrency=... or avgTokensPerRequest=...")
    if throughput_rps is None:
        throughput_rps = concurrency / mean_latency_seconds
    return ReplicaCapacity(concurrency, throughput_rps, gpus if gpus is not None else model.tensor_parallel_size)


def model_load_seconds(model: ModelConfig, shape: GpuShape) -> int:
    """Seconds from container start to serving: the sizing's estimate (weights read from
    the cache volume, then vLLM's warm-up), rounded up."""
    return math.ceil(size_model(model, shape).load_seconds_estimate)


def node_provision_seconds(cloud: str) -> int:
    """GPU node provisioning on ``cloud`` with its provisioner (:data:`NODE_PROVISION_SECONDS`)."""
    return NODE_PROVISION_SECONDS.get((cloud, PROVISIONER.get(cloud, "")), DEFAULT_NODE_PROVISION_SECONDS)


def replicas_per_node(shape: GpuShape, gpus_per_replica: int) -> int:
    """Replicas of ``gpus_per_replica`` GPUs one node of ``shape`` holds."""
    return shape.gpus // gpus_per_replica


def default_warm_nodes(cfg: RegionConfig, pool: GpuPoolConfig, shape: GpuShape) -> int:
    """GPU nodes of ``pool`` left empty at the models' ``minReplicas``: ``minNodes`` minus
    the nodes their GPUs fill (replicas pack onto nodes by GPU count), at least 0."""
    gpus = sum(m.autoscaling.min_replicas * m.tensor_parallel_size for m in cfg.models if m.pool == pool.name)
    return max(0, pool.min_nodes - math.ceil(gpus / shape.gpus))
