"""Sizing: the memory model, its properties, and the config errors it produces."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_fleet.components import sizing
from gpu_fleet.components.config import ConfigError, ModelConfig, load_stack_file, parse_fleet, pool_offering
from gpu_fleet.components.gpu_catalog import load_catalog
from gpu_fleet.components.model_catalog import CATALOG

REPO = Path(__file__).resolve().parents[2]
US_EAST = REPO / "stacks" / "Pulumi.us-east.yaml"
EU_WEST = REPO / "stacks" / "Pulumi.eu-west.yaml"
SHAPES = {s.machine_type: s for cloud in load_catalog().shapes.values() for s in cloud.values()}
H100, A100_80, A100_40 = SHAPES["p5.48xlarge"], SHAPES["p4de.24xlarge"], SHAPES["p4d.24xlarge"]
L8, L70 = "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"


def _model(model_id: str = L8, **kw) -> ModelConfig:
    return ModelConfig(name="m", model_id=model_id, revision="abc123", pool="p", **kw)


# --------------------------------------------------------------------------- the memory model


def test_kv_bytes_per_token_match_the_reference():
    # shared/reference/gpu-shapes.md: Llama-3.1-8B 128 KiB, Llama-3.1-70B 320 KiB (BF16).
    assert sizing.size_model(_model(L8), H100).kv_bytes_per_token == 128 * 1024
    assert sizing.size_model(_model(L70, tensor_parallel_size=4), H100).kv_bytes_per_token == 320 * 1024
    # FP8 KV cache halves it.
    fp8 = _model(L8, extra_args=["--kv-cache-dtype", "fp8"])
    assert sizing.size_model(fp8, H100).kv_bytes_per_token == 64 * 1024


def test_weights_follow_bytes_per_parameter():
    bf16 = sizing.size_model(_model(L70, tensor_parallel_size=4), H100)
    fp8 = sizing.size_model(_model(L70, tensor_parallel_size=4, quantization="fp8"), H100)
    assert bf16.weights_gb == pytest.approx(2 * 70.55, rel=1e-3)
    # Embedding and LM head (2.1 B parameters) stay 16-bit.
    assert fp8.weights_gb == pytest.approx(68.45 + 2 * 2.10, rel=1e-3)
    # FP8 is applied while loading: the download is the 16-bit checkpoint.
    assert fp8.checkpoint_gb == bf16.checkpoint_gb
    assert fp8.kv_cache_tokens > bf16.kv_cache_tokens


def test_llama_8b_on_one_h100_is_close_to_what_vllm_reports():
    # vLLM leaves about 54 GiB of KV cache (about 440k tokens) for Llama-3.1-8B on an
    # H100 at 0.9; the estimate is slightly conservative.
    s = sizing.size_model(_model(L8, max_model_len=32768), H100)
    assert 380_000 <= s.kv_cache_tokens <= 460_000
    assert s.kv_cache_tokens % sizing.KV_BLOCK_TOKENS == 0
    assert s.max_concurrent_sequences == s.kv_cache_tokens // 32768
    assert s.fits


@pytest.mark.parametrize("stack", [US_EAST, EU_WEST])
def test_reference_models_have_a_sane_kv_capacity(stack):
    cfg = load_stack_file(stack)
    pools = {p.name: p for p in cfg.gpu_pools}
    for m in cfg.models:
        s = sizing.size_model(m, pool_offering(cfg, pools[m.pool]).shape)
        # Hundreds of thousands of tokens per replica: at least ten full-length sequences,
        # yet no more than the GPUs' whole memory could hold.
        assert 10 <= s.max_concurrent_sequences, (m.name, s)
        assert s.kv_cache_tokens * s.kv_bytes_per_token < s.gpus * 80 * sizing.GIB, (m.name, s)
        assert 200_000 <= s.kv_cache_tokens <= 600_000, (m.name, s)


def test_more_gpus_than_kv_heads_replicate_the_heads():
    # 2 KV heads over 4 GPUs: each GPU holds one head, as with 2 GPUs.
    arch = {"parameters_billion": 8, "layers": 32, "attention_heads": 32, "kv_heads": 2, "head_dim": 128}
    tp2, tp4 = (sizing.size_model(_model("acme/gqa", architecture=arch, tensor_parallel_size=tp), H100) for tp in (2, 4))
    one_head = 2 * 32 * 1 * 128 * 2
    for s in (tp2, tp4):
        assert s.kv_bytes_per_token == 2 * one_head
        assert s.kv_cache_tokens == int(s.kv_cache_gib_per_gpu * sizing.GIB // (one_head * 16)) * 16


def test_size_model_refuses_impossible_tensor_parallel_sizes():
    with pytest.raises(ValueError, match="does not divide the 64 attention heads"):
        sizing.size_model(_model(L70, tensor_parallel_size=3), H100)
    with pytest.raises(ValueError, match="exceeds the 8 GPUs"):
        sizing.size_model(_model(L70, tensor_parallel_size=16), H100)


def test_kv_cache_dtype_is_read_from_extra_args_in_every_spelling():
    assert sizing.kv_cache_dtype(_model()) == "auto"
    assert sizing.kv_cache_dtype(_model(extra_args=["--kv-cache-dtype", "fp8"])) == "fp8"
    assert sizing.kv_cache_dtype(_model(extra_args=["--kv_cache_dtype=fp8_e5m2"])) == "fp8_e5m2"
    assert sizing.flag_name("--max_model_len=4") == "--max-model-len"
    assert sizing.flag_name("-1") is None and sizing.flag_name("value") is None


# --------------------------------------------------------------------------- properties

_VALID = [(mid, shape, tp) for mid in CATALOG for shape in SHAPES.values()
          for tp in sizing.valid_tensor_parallel_sizes(CATALOG[mid].architecture, shape.gpus)]
_MODEL_SHAPES = sorted({(mid, name) for mid in CATALOG for name in SHAPES})


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_MODEL_SHAPES), st.data())
def test_more_gpus_never_reduce_kv_capacity(model_shape, data):
    mid, name = model_shape
    shape = SHAPES[name]
    valid = sizing.valid_tensor_parallel_sizes(CATALOG[mid].architecture, shape.gpus)
    t1 = data.draw(st.sampled_from(valid))
    t2 = data.draw(st.sampled_from([t for t in valid if t >= t1]))
    small = sizing.size_model(_model(mid, tensor_parallel_size=t1), shape)
    large = sizing.size_model(_model(mid, tensor_parallel_size=t2), shape)
    assert large.kv_cache_tokens >= small.kv_cache_tokens
    assert large.weights_gib_per_gpu <= small.weights_gib_per_gpu


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_VALID), st.floats(0.31, 0.98), st.floats(0.31, 0.98),
       st.integers(256, 131072), st.integers(256, 131072))
def test_capacity_is_monotonic_in_memory_and_length(case, u1, u2, len1, len2):
    mid, shape, tp = case
    (u1, u2), (len1, len2) = sorted((u1, u2)), sorted((len1, len2))
    low = sizing.size_model(_model(mid, tensor_parallel_size=tp, gpu_memory_utilization=u1, max_model_len=len1), shape)
    high = sizing.size_model(_model(mid, tensor_parallel_size=tp, gpu_memory_utilization=u2, max_model_len=len1), shape)
    longer = sizing.size_model(_model(mid, tensor_parallel_size=tp, gpu_memory_utilization=u2, max_model_len=len2), shape)
    assert high.kv_cache_tokens >= low.kv_cache_tokens
    assert longer.max_concurrent_sequences <= high.max_concurrent_sequences
    assert high.fits or not low.fits
    fp8 = sizing.size_model(_model(mid, tensor_parallel_size=tp, gpu_memory_utilization=u2,
                                   extra_args=["--kv-cache-dtype=fp8"]), shape)
    assert fp8.kv_cache_tokens >= 2 * high.kv_cache_tokens


@settings(max_examples=100, deadline=None)
@given(st.floats(0.5, 400), st.floats(0.5, 400))
def test_startup_budget_grows_with_the_model(p1, p2):
    p1, p2 = sorted((p1, p2))
    arch = {"layers": 32, "attention_heads": 32, "kv_heads": 8, "head_dim": 128}
    s1 = sizing.size_model(_model("acme/x", architecture={**arch, "parameters_billion": p1}), H100)
    s2 = sizing.size_model(_model("acme/x", architecture={**arch, "parameters_billion": p2}), H100)
    assert sizing.startup_budget_seconds(s2) >= sizing.startup_budget_seconds(s1)
    assert sizing.startup_budget_seconds(s1) >= s1.download_seconds_estimate + s1.load_seconds_estimate
    assert s1.load_seconds_estimate >= sizing.WARMUP_SECONDS


def test_startup_budget_of_70b_exceeds_8b():
    b8 = sizing.startup_budget_seconds(sizing.size_model(_model(L8), H100))
    b70 = sizing.startup_budget_seconds(sizing.size_model(_model(L70, tensor_parallel_size=4), H100))
    assert b70 > 4 * b8
    # 141 GB at 100 MB/s is already 23.5 minutes.
    assert b70 > 1411


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(SHAPES)), st.data())
def test_host_shares_of_a_full_node_fit_the_node(name, data):
    shape = SHAPES[name]
    gpus = data.draw(st.integers(1, shape.gpus))
    share = sizing.host_share(shape, gpus)
    replicas = shape.gpus // gpus
    assert replicas * share.cpu_millis <= (shape.vcpus - sizing.SYSTEM_RESERVED_VCPUS) * 1000
    assert replicas * share.memory_gib <= shape.memory_gb - sizing.SYSTEM_RESERVED_MEMORY_GIB
    assert share.cpu_millis > 0 and share.memory_gib > 0


def test_host_share_is_proportional_to_gpus():
    one, four = sizing.host_share(H100, 1), sizing.host_share(H100, 4)
    assert (one.cpu_millis, one.memory_gib) == (23500, 242)  # (192 - 4) / 8; (2048 * 0.95 - 8) / 8
    assert four.cpu_millis == 4 * one.cpu_millis
    with pytest.raises(ValueError):
        sizing.host_share(H100, 9)


def _gke_allocatable_gib(memory_gib: float) -> float:
    """GKE's node memory after its kubelet reserve (25 % of the first 4 GiB, 20 % of the next
    4, 10 % of the next 8, 6 % of the next 112, 2 % above 128; 100 MiB eviction threshold)
    and the kernel's memory map (about 1.56 %)."""
    tiers = [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02)]
    left, reserved = memory_gib, 0.0
    for size, rate in tiers:
        take = min(left, size)
        reserved += take * rate
        left -= take
    return memory_gib * (1 - 0.0156) - reserved - 100 / 1024


@pytest.mark.parametrize("machine_type", ["a3-highgpu-8g", "a3-megagpu-8g", "a2-ultragpu-8g", "a2-highgpu-8g"])
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_replicas_filling_a_gke_node_fit_its_allocatable_memory(machine_type, gpus):
    shape = load_catalog().shapes["gcp"][machine_type]
    replicas = shape.gpus // gpus
    daemonsets_gib = 10  # dcgm-exporter, toolkit, node exporter, network and CSI node plugins
    assert replicas * sizing.host_share(shape, gpus).memory_gib <= _gke_allocatable_gib(shape.memory_gb) - daemonsets_gib


# --------------------------------------------------------------------------- config errors


def _raw(path: Path = US_EAST) -> dict:
    return copy.deepcopy(yaml.safe_load(path.read_text())["config"]["gpu-fleet:fleet"])


def _errors(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_fleet(raw, "stacks/Pulumi.us-east.yaml", REPO / "stacks")
    return [line.removeprefix("stacks/Pulumi.us-east.yaml: ") for line in str(exc.value).splitlines()]


def test_tensor_parallel_size_must_divide_the_attention_heads():
    raw = _raw()
    raw["models"][0]["tensorParallelSize"] = 3
    assert _errors(raw) == ["models[0].tensorParallelSize: 3 does not divide the 64 attention heads of "
                            "meta-llama/Llama-3.1-70B-Instruct; valid sizes on p5.48xlarge: 1, 2, 4, 8"]


def test_tensor_parallel_size_must_fit_one_node():
    raw = _raw()
    raw["models"][0]["tensorParallelSize"] = 16
    assert _errors(raw) == ["models[0].tensorParallelSize: 16 is more than the 8 GPUs per node of p5.48xlarge: "
                            "a replica runs on one node; valid sizes: 1, 2, 4, 8"]


def test_kv_heads_must_divide_or_be_divided_by_tensor_parallel_size():
    raw = _raw(EU_WEST)
    raw["models"][1].update(modelId="Qwen/Qwen2.5-7B-Instruct", tensorParallelSize=7)  # 28 heads, 4 KV heads
    [line] = _errors(raw)
    assert line.startswith("models[1].tensorParallelSize: 7 and the 4 KV heads do not divide one another")
    assert line.endswith("valid sizes on a3-highgpu-8g: 1, 2, 4")


def test_70b_in_bf16_does_not_fit_one_a100_40gb():
    raw = _raw()
    raw["gpuPools"][1]["gpu"] = "a100-40gb"  # p4d.24xlarge
    raw["models"][1].update(modelId=L70, tensorParallelSize=1)
    [line] = _errors(raw)
    assert line.startswith("models[1].tensorParallelSize: each of the replica's 1 a100-40gb GPUs gives vLLM 35.6 GiB")
    assert "needs 131.4 GiB of weights plus 3.0 GiB of activations per GPU" in line
    assert line.endswith("smallest tensorParallelSize that fits: 8")


def test_unknown_model_needs_its_architecture():
    raw = _raw()
    raw["models"][1]["modelId"] = "acme/private-13b"
    [line] = _errors(raw)
    assert line.startswith("models[1].architecture: required: acme/private-13b is not in the built-in model catalog")
    raw["models"][1]["architecture"] = {"parametersBillion": 13, "layers": 40, "attentionHeads": 40, "kvHeads": 40,
                                        "headDim": 128}
    assert parse_fleet(raw, "stacks/Pulumi.us-east.yaml", REPO / "stacks").models[1].architecture.layers == 40


def test_max_model_len_beyond_the_context_window():
    raw = _raw(EU_WEST)
    raw["models"][1].update(modelId="Qwen/Qwen2.5-7B-Instruct", maxModelLen=65536)
    assert _errors(raw) == ["models[1].maxModelLen: 65536 is longer than the 32768-token context of "
                            "Qwen/Qwen2.5-7B-Instruct (max_position_embeddings)"]


def test_max_model_len_beyond_the_kv_cache():
    raw = _raw()
    raw["gpuPools"][1]["gpu"] = "a100-40gb"
    raw["models"][1].update(gpuMemoryUtilization=0.5, maxModelLen=32768)  # 8B: 1.8 GiB left for KV cache
    [line] = _errors(raw)
    assert line.startswith("models[1].maxModelLen: 32768 tokens do not fit: each of the replica's 1 a100-40gb GPUs")
    assert "the KV cache holds 15088 tokens (128 KiB per token); lower maxModelLen to at most 15088" in line
    assert line.endswith("(smallest tensorParallelSize that fits: 2)")
    raw["models"][1]["maxModelLen"] = 15088
    parse_fleet(raw, "stacks/Pulumi.us-east.yaml", REPO / "stacks")


def test_extra_args_may_not_override_sized_or_managed_flags():
    raw = _raw()
    raw["models"][1]["extraArgs"] = ["--enable-prefix-caching", "--max_model_len=4096", "--port", "9000",
                                     "--api-key", "sk-plain"]
    assert _errors(raw) == [
        "models[1].extraArgs[1]: '--max_model_len=4096' is set from maxModelLen; set it there instead",
        "models[1].extraArgs[2]: '--port' is set from the fixed port 8000 (probes, Service and PodMonitor use it); "
        "set it there instead",
        "models[1].extraArgs[4]: '--api-key' is set from the apiKey secret (VLLM_API_KEY from the serving Secret); "
        "set it there instead",
    ]


def test_awq_needs_a_quantized_checkpoint_and_lmcache_needs_the_cache():
    raw = _raw()
    raw["models"][1]["quantization"] = "awq"
    raw["models"][0]["lmcache"] = {"enabled": True}
    raw["cache"]["enabled"] = False
    assert _errors(raw) == [
        "models[0].lmcache.enabled: LMCache offloads KV cache to the regional cache; enable it (cache.enabled: true)",
        "models[1].quantization: awq needs a checkpoint published in that format and meta-llama/Llama-3.1-8B-Instruct "
        "is 16-bit; use fp8 (applied while loading) or a quantized model id with its architecture",
    ]
