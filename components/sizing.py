"""Does a model fit its GPUs, how much KV cache is left, and how long does a replica take
to start? Pure functions (no Pulumi import), shared by the config checks, the model
deployment and the autoscaling simulator.

Memory model (``shared/reference/gpu-shapes.md``, vLLM's own accounting)
-----------------------------------------------------------------------
vLLM gives each GPU ``gpuMemoryUtilization`` x its memory for weights, activations and
KV cache; whatever the weights and the activation peak leave is KV cache.

- Weights: parameters x bytes per parameter (BF16/FP16 2, FP8 1, 4-bit AWQ/GPTQ about
  0.5 plus a 16-bit scale and a 4-bit zero point per group of 128 weights). The embedding
  and the LM head stay 16-bit under every quantization. Tensor parallelism splits the
  weights evenly over the GPUs.
- KV cache per token: ``2 x layers x kv_heads x head_dim x bytes`` (K and V; bytes of the
  KV cache dtype: the model's 16 bit, or 1 with ``--kv-cache-dtype fp8`` in
  ``extraArgs``). Tensor parallelism splits the KV heads; with more GPUs than KV heads
  each GPU holds one head (replicated), as vLLM's QKV layer does.
- Activations and overhead: :data:`OVERHEAD_GIB_PER_GPU` per GPU. vLLM measures its
  peak with a profiling run at the default batch (8,192 tokens on H100, 2,048 on A100)
  plus non-PyTorch memory (CUDA context, cuBLAS workspaces, NCCL buffers); its logs show
  about 1.5 GiB and 0.6 GiB for Llama-3.1-8B on an H100. 3 GiB covers larger models and
  tensor-parallel NCCL buffers.
- CUDA reports slightly less than the marketed size (79.2 GiB of an "80 GB" H100):
  :data:`VISIBLE_MEMORY_FRACTION`.
- KV cache is allocated in blocks of :data:`KV_BLOCK_TOKENS` tokens.

A model fits when the KV cache left over holds at least one sequence of ``maxModelLen``
tokens, which is vLLM's own start-up check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .gpu_catalog import GpuShape
from .model_catalog import PREQUANTIZED, Architecture, UnknownModelError, architecture_of, lookup

if TYPE_CHECKING:  # a type only: config runs these checks
    from .config import ModelConfig

GIB = 1024**3
GB = 10**9

#: Bytes per parameter on the GPU, by ``quantization`` (None: the model's 16-bit dtype).
INT4_BYTES = 0.5 + (2 + 0.5) / 128
WEIGHT_BYTES: dict[Optional[str], float] = {None: 2.0, "fp8": 1.0, "awq": INT4_BYTES, "gptq": INT4_BYTES}
#: Embedding and LM head stay in the model's 16-bit dtype.
EMBEDDING_BYTES = 2.0
#: KV cache bytes per element: the model's dtype (auto) or FP8 via ``--kv-cache-dtype``.
KV_CACHE_BYTES_16BIT = 2
KV_CACHE_BYTES_FP8 = 1
KV_BLOCK_TOKENS = 16
OVERHEAD_GIB_PER_GPU = 3.0
VISIBLE_MEMORY_FRACTION = 0.99

#: Hub download rate assumed for a replica starting on an empty weight cache: 100 MB/s,
#: deliberately conservative (through a NAT gateway, without hf_transfer; often faster).
DOWNLOAD_GB_PER_SECOND = 0.1
#: Reading weights from the shared weight-cache volume: about 1 GB/s (Filestore Basic
#: SSD reads up to 1,200 MiB/s per instance; EFS elastic throughput is similar per client).
LOAD_GB_PER_SECOND = 1.0
#: vLLM's start after loading: the profiling run, torch.compile and CUDA graph capture.
WARMUP_SECONDS = 120
#: Headroom of the start-up budget over the estimate (slow mirrors, cold page cache).
STARTUP_MARGIN = 1.5

#: Pulling a vLLM image (about 10 GB compressed) onto a node that does not have it.
IMAGE_PULL_SECONDS = 600

#: Node capacity kept for the kubelet, the OS and the DaemonSets (network plugin,
#: node exporter, the GPU operator's dcgm-exporter and toolkit): 4 vCPUs, and 8 GiB plus
#: 5 % of memory. On a 1,872 GiB a3-highgpu-8g GKE's kubelet reserve (about 2.4 %) and the
#: kernel's memory map (about 1.6 %) leave about 1,799 GiB allocatable: two 4-GPU replicas
#: must fit in that with the DaemonSets beside them.
SYSTEM_RESERVED_VCPUS = 4
SYSTEM_RESERVED_MEMORY_GIB = 8
SYSTEM_RESERVED_MEMORY_FRACTION = 0.05

#: vLLM flags ``extraArgs`` may not hold, with what sets them instead: the ones the model
#: Deployment sets (vLLM takes the last occurrence, so the pod would run something other
#: than what was sized, probed and autoscaled), the ones that change how many GPUs a
#: replica needs, and ``--api-key``, which would put the key in the pod spec in plaintext.
SERVER_FLAGS: dict[str, str] = {
    "--model": "modelId",
    "--revision": "revision",
    "--served-model-name": "name",
    "--tensor-parallel-size": "tensorParallelSize",
    "-tp": "tensorParallelSize",
    "--pipeline-parallel-size": "tensorParallelSize (a replica is one node)",
    "-pp": "tensorParallelSize (a replica is one node)",
    "--data-parallel-size": "autoscaling (replicas)",
    "-dp": "autoscaling (replicas)",
    "--max-model-len": "maxModelLen",
    "--dtype": "dtype",
    "--quantization": "quantization",
    "-q": "quantization",
    "--gpu-memory-utilization": "gpuMemoryUtilization",
    "--port": "the fixed port 8000 (probes, Service and PodMonitor use it)",
    "--host": "the listen address (all interfaces, for the Service)",
    "--download-dir": "the weight cache volume",
    "--shutdown-timeout": "the pod's termination grace period",
    "--api-key": "the apiKey secret (VLLM_API_KEY from the serving Secret)",
    "--kv-transfer-config": "lmcache",
}


@dataclass(frozen=True)
class Sizing:
    """One replica of a model on its GPUs.

    Sizes in ``*_gb`` are decimal gigabytes (as the Hub shows repository sizes); GPU
    memory is in GiB (an "80 GB" GPU has 80 GiB).

    gpus: GPUs per replica (the tensor parallel size).
    checkpoint_gb: what is downloaded and kept in the weight cache.
    weights_gb: weights resident on the replica's GPUs, all of them together.
    kv_bytes_per_token: ``2 x layers x kv_heads x head_dim x bytes`` for the whole model.
    usable_gib_per_gpu: ``gpuMemoryUtilization`` x visible GPU memory.
    kv_cache_gib_per_gpu: what weights and overhead leave for KV cache (negative when
        the weights alone do not fit).
    kv_cache_tokens: tokens of KV cache the replica holds (0 when nothing is left).
    max_concurrent_sequences: sequences of full ``maxModelLen`` that fit at once.
    download_seconds_estimate: fetching the checkpoint from the Hub into an empty cache.
    load_seconds_estimate: container start to serving with the weights already cached
        (read from the cache volume, then warm-up).
    """

    model_id: str
    gpu: str
    gpus: int
    max_model_len: int
    parameters: int
    checkpoint_gb: float
    weights_gb: float
    kv_bytes_per_token: int
    usable_gib_per_gpu: float
    weights_gib_per_gpu: float
    overhead_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    kv_cache_tokens: int
    max_concurrent_sequences: int
    download_seconds_estimate: float
    load_seconds_estimate: float

    @property
    def fits(self) -> bool:
        """Weights, overhead and one full-length sequence fit (vLLM's start-up check)."""
        return self.kv_cache_tokens >= self.max_model_len


@dataclass(frozen=True)
class HostShare:
    """The CPU and memory of a node that go with ``gpus`` of its GPUs."""

    cpu_millis: int
    memory_gib: int


# --------------------------------------------------------------------------- helpers


def flag_name(arg: str) -> Optional[str]:
    """``--max_model_len=4096`` -> ``--max-model-len``; None for a value (not a flag).
    vLLM's parser accepts underscores for dashes, so both spell the same flag."""
    if not arg.startswith("-") or _is_number(arg):
        return None
    name = arg.split("=", 1)[0]
    return name[:2] + name[2:].replace("_", "-") if name.startswith("--") else name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def kv_cache_dtype(model: ModelConfig) -> str:
    """The ``--kv-cache-dtype`` given in ``extraArgs``, else ``auto`` (the model's dtype)."""
    args = model.extra_args
    for i, arg in enumerate(args):
        if flag_name(arg) == "--kv-cache-dtype":
            if "=" in arg:
                return arg.split("=", 1)[1]
            return args[i + 1] if i + 1 < len(args) else "auto"
    return "auto"


def _kv_bytes(model: ModelConfig) -> int:
    return KV_CACHE_BYTES_FP8 if kv_cache_dtype(model).startswith("fp8") else KV_CACHE_BYTES_16BIT


def tp_problem(arch: Architecture, tp: int) -> Optional[str]:
    """Why vLLM cannot split ``arch`` over ``tp`` GPUs, or None if it can."""
    if arch.attention_heads % tp:
        return f"does not divide the {arch.attention_heads} attention heads"
    if arch.kv_heads % tp and tp % arch.kv_heads:
        return f"and the {arch.kv_heads} KV heads do not divide one another (vLLM splits or replicates KV heads)"
    return None


def valid_tensor_parallel_sizes(arch: Architecture, gpus_per_node: int) -> list[int]:
    """Tensor parallel sizes vLLM accepts for ``arch`` on one node."""
    return [tp for tp in range(1, gpus_per_node + 1) if tp_problem(arch, tp) is None]


# --------------------------------------------------------------------------- sizing


def size_model(model: ModelConfig, shape: GpuShape) -> Sizing:
    """Size one replica of ``model`` on ``model.tensor_parallel_size`` GPUs of ``shape``.

    Raises UnknownModelError for a model with no architecture, ValueError for a tensor
    parallel size vLLM rejects or the node does not have. A model that does not fit is
    not an error here: its Sizing has ``fits`` False (see :func:`problems`).
    """
    arch = architecture_of(model)
    tp = model.tensor_parallel_size
    if tp > shape.gpus:
        raise ValueError(f"tensor parallel size {tp} exceeds the {shape.gpus} GPUs of {shape.machine_type}")
    reason = tp_problem(arch, tp)
    if reason:
        raise ValueError(f"tensor parallel size {tp} {reason} of {model.model_id}")

    embeddings = min(arch.embedding_parameters, arch.parameters)
    weight_bytes = (arch.parameters - embeddings) * WEIGHT_BYTES[model.quantization] + embeddings * EMBEDDING_BYTES
    checkpoint_bytes = weight_bytes if arch.checkpoint_quantization else arch.parameters * EMBEDDING_BYTES

    kv_bytes = _kv_bytes(model)
    kv_per_token = 2 * arch.layers * arch.kv_heads * arch.head_dim * kv_bytes
    kv_per_token_per_gpu = 2 * arch.layers * max(1, arch.kv_heads // tp) * arch.head_dim * kv_bytes

    usable = model.gpu_memory_utilization * shape.gpu_memory_gb * VISIBLE_MEMORY_FRACTION * GIB
    weights_per_gpu = weight_bytes / tp
    overhead = OVERHEAD_GIB_PER_GPU * GIB
    kv_per_gpu = usable - weights_per_gpu - overhead
    block = kv_per_token_per_gpu * KV_BLOCK_TOKENS
    tokens = int(kv_per_gpu // block) * KV_BLOCK_TOKENS if kv_per_gpu > 0 else 0

    checkpoint_gb = checkpoint_bytes / GB
    return Sizing(
        model_id=model.model_id,
        gpu=shape.gpu,
        gpus=tp,
        max_model_len=model.max_model_len,
        parameters=arch.parameters,
        checkpoint_gb=checkpoint_gb,
        weights_gb=weight_bytes / GB,
        kv_bytes_per_token=kv_per_token,
        usable_gib_per_gpu=usable / GIB,
        weights_gib_per_gpu=weights_per_gpu / GIB,
        overhead_gib_per_gpu=OVERHEAD_GIB_PER_GPU,
        kv_cache_gib_per_gpu=kv_per_gpu / GIB,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=tokens // model.max_model_len,
        download_seconds_estimate=checkpoint_gb / DOWNLOAD_GB_PER_SECOND,
        load_seconds_estimate=checkpoint_gb / LOAD_GB_PER_SECOND + WARMUP_SECONDS,
    )


def startup_budget_seconds(sizing: Sizing) -> int:
    """Seconds a new replica may take from container start to serving, on an empty weight
    cache: download at :data:`DOWNLOAD_GB_PER_SECOND`, read at :data:`LOAD_GB_PER_SECOND`,
    warm up for :data:`WARMUP_SECONDS`, all times :data:`STARTUP_MARGIN`.

    A replica that overruns it is restarted by its startup probe; the Hub client resumes
    partial downloads, so the next attempt continues rather than starts over.
    """
    return math.ceil((sizing.download_seconds_estimate + sizing.load_seconds_estimate) * STARTUP_MARGIN)


@dataclass(frozen=True)
class ColdStart:
    """The longest wait from "a model at zero replicas needs one" to that replica serving.

    node_seconds: a GPU node to be provisioned (0 when the pool keeps nodes up).
    image_pull_seconds: the vLLM image pulled onto that node.
    startup_seconds: the replica's start-up budget (:func:`startup_budget_seconds`).
    """

    node_seconds: int
    image_pull_seconds: int
    startup_seconds: int

    @property
    def total_seconds(self) -> int:
        return self.node_seconds + self.image_pull_seconds + self.startup_seconds


def cold_start(sizing: Sizing, *, node_seconds: int) -> ColdStart:
    """The cold start of one replica of a model scaled to zero: node provisioning
    (``node_seconds``: the pool's ``provisioningSeconds`` when it may have no node left, else
    0), image pull and the start-up budget, each at its upper bound, so the total is what a
    waiting client may see."""
    return ColdStart(
        node_seconds=node_seconds,
        image_pull_seconds=IMAGE_PULL_SECONDS,
        startup_seconds=startup_budget_seconds(sizing),
    )


def host_share(shape: GpuShape, gpus: int) -> HostShare:
    """The CPU and memory that go with ``gpus`` of the node's GPUs: the node's capacity
    after the system reserve, in proportion to the GPUs, so that replicas filling every
    GPU of a node also fit its CPU and memory."""
    if not 1 <= gpus <= shape.gpus:
        raise ValueError(f"{gpus} GPUs: {shape.machine_type} has {shape.gpus}")
    share = gpus / shape.gpus
    cpus = (shape.vcpus - SYSTEM_RESERVED_VCPUS) * share
    memory = (shape.memory_gb * (1 - SYSTEM_RESERVED_MEMORY_FRACTION) - SYSTEM_RESERVED_MEMORY_GIB) * share
    return HostShare(cpu_millis=math.floor(cpus * 1000), memory_gib=math.floor(memory))


# --------------------------------------------------------------------------- checks


def problems(model: ModelConfig, shape: GpuShape) -> list[tuple[str, str]]:
    """What keeps ``model`` from running on ``shape``, as (model field, message) pairs;
    empty when it fits. Field names are the config's camelCase keys."""
    try:
        arch = architecture_of(model)
    except UnknownModelError as e:
        return [("architecture", f"required: {e}")]

    found: list[tuple[str, str]] = []
    for j, arg in enumerate(model.extra_args):
        flag = flag_name(arg)
        if flag in SERVER_FLAGS:
            found.append((f"extraArgs[{j}]", f"{arg!r} is set from {SERVER_FLAGS[flag]}; set it there instead"))

    if model.quantization in PREQUANTIZED and model.architecture is None and lookup(model.model_id):
        found.append(("quantization", f"{model.quantization} needs a checkpoint published in that format and "
                      f"{model.model_id} is 16-bit; use fp8 (applied while loading) or a quantized model id "
                      "with its architecture"))
    if arch.max_context is not None and model.max_model_len > arch.max_context:
        found.append(("maxModelLen", f"{model.max_model_len} is longer than the {arch.max_context}-token context "
                      f"of {model.model_id} (max_position_embeddings)"))

    tp = model.tensor_parallel_size
    valid = valid_tensor_parallel_sizes(arch, shape.gpus)
    if tp > shape.gpus:
        return found + [("tensorParallelSize", f"{tp} is more than the {shape.gpus} GPUs per node of "
                         f"{shape.machine_type}: a replica runs on one node; valid sizes: {_list(valid)}")]
    reason = tp_problem(arch, tp)
    if reason:
        return found + [("tensorParallelSize", f"{tp} {reason} of {model.model_id}; valid sizes on "
                         f"{shape.machine_type}: {_list(valid)}")]

    s = size_model(model, shape)
    if s.fits:
        return found
    smallest = next((t for t in valid if t > tp and size_model(_with_tp(model, t), shape).fits), None)
    hint = (f"smallest tensorParallelSize that fits: {smallest}" if smallest
            else f"no tensorParallelSize up to {shape.gpus} fits: quantize (fp8 halves the weights), "
                 "raise gpuMemoryUtilization or use GPUs with more memory")
    room = (f"each of the replica's {tp} {shape.gpu} GPUs gives vLLM {s.usable_gib_per_gpu:.1f} GiB "
            f"(gpuMemoryUtilization {model.gpu_memory_utilization} of {shape.gpu_memory_gb * VISIBLE_MEMORY_FRACTION:.1f} GiB)")
    if s.kv_cache_gib_per_gpu <= 0:
        return found + [("tensorParallelSize", f"{room}; {model.model_id} needs {s.weights_gib_per_gpu:.1f} GiB "
                         f"of weights plus {s.overhead_gib_per_gpu:.1f} GiB of activations per GPU, leaving "
                         f"nothing for KV cache; {hint}")]
    return found + [("maxModelLen", f"{model.max_model_len} tokens do not fit: {room}; after weights and activations "
                     f"the KV cache holds {s.kv_cache_tokens} tokens ({s.kv_bytes_per_token // 1024} KiB per token); "
                     f"lower maxModelLen to at most {s.kv_cache_tokens} or raise tensorParallelSize"
                     + (f" ({hint})" if smallest else ""))]


def _with_tp(model: ModelConfig, tp: int) -> ModelConfig:
    return model.model_copy(update={"tensor_parallel_size": tp})


def _list(values: list[int]) -> str:
    return ", ".join(map(str, values)) or "none"
