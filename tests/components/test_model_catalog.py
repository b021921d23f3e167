"""The model catalog: config.json numbers that add up, and look-ups by model id."""

from __future__ import annotations

import pytest

from gpu_fleet.components.config import ModelConfig
from gpu_fleet.components.model_catalog import CATALOG, PREQUANTIZED, UnknownModelError, architecture_of, lookup

REQUIRED = {
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
}


def _model(model_id: str, **kw) -> ModelConfig:
    return ModelConfig(name="m", model_id=model_id, revision="abc123", pool="p", **kw)


def _parameters_from_config(c) -> int:
    """Parameters of a Llama/Qwen2/Mixtral decoder from its config.json numbers."""
    h, heads, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    head_dim = h // heads
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim  # q, o; k, v
    experts = c.get("num_local_experts", 1)
    mlp = 3 * h * c["intermediate_size"] * experts + (h * experts if experts > 1 else 0)  # + router
    embeddings = c["vocab_size"] * h * (1 if c["tie_word_embeddings"] else 2)
    return embeddings + c["num_hidden_layers"] * (attention + mlp + 2 * h) + h  # norms


def test_catalog_has_the_required_models():
    assert REQUIRED <= set(CATALOG)


@pytest.mark.parametrize("model_id", sorted(CATALOG))
def test_parameter_totals_follow_from_the_config_numbers(model_id):
    entry = CATALOG[model_id]
    # Qwen2 adds a QKV bias config.json does not describe: 129,024 and 819,200 parameters.
    assert entry.parameters == pytest.approx(_parameters_from_config(entry.config), rel=2e-5)


@pytest.mark.parametrize("model_id", sorted(CATALOG))
def test_architecture_is_derived_from_config(model_id):
    entry = CATALOG[model_id]
    a = entry.architecture
    assert a.parameters == entry.parameters
    assert a.layers == entry.config["num_hidden_layers"]
    assert a.attention_heads == entry.config["num_attention_heads"]
    assert a.kv_heads == entry.config["num_key_value_heads"]
    assert a.head_dim == 128
    assert a.max_context == entry.config["max_position_embeddings"]
    assert 0 < a.embedding_parameters < a.parameters
    assert a.checkpoint_quantization is None


def test_known_numbers():
    l8 = CATALOG["meta-llama/Llama-3.1-8B-Instruct"].architecture
    l70 = CATALOG["meta-llama/Llama-3.1-70B-Instruct"].architecture
    q7 = CATALOG["Qwen/Qwen2.5-7B-Instruct"].architecture
    mix = CATALOG["mistralai/Mixtral-8x7B-Instruct-v0.1"].architecture
    assert (l8.layers, l8.attention_heads, l8.kv_heads) == (32, 32, 8)
    assert (l70.layers, l70.attention_heads, l70.kv_heads) == (80, 64, 8)
    assert (q7.layers, q7.attention_heads, q7.kv_heads, q7.max_context) == (28, 28, 4, 32768)
    assert round(mix.parameters / 1e9, 1) == 46.7  # every expert is loaded


def test_lookup_is_case_insensitive_like_the_hub():
    assert lookup("META-LLAMA/llama-3.1-8b-instruct") is CATALOG["meta-llama/Llama-3.1-8B-Instruct"]
    assert lookup("acme/unknown") is None


def test_unknown_model_without_architecture_is_an_error():
    with pytest.raises(UnknownModelError, match="acme/private-13b is not in the built-in model catalog"):
        architecture_of(_model("acme/private-13b"))


def test_given_architecture_wins_and_a_prequantized_checkpoint_is_recognised():
    arch = {"parameters_billion": 13.0, "layers": 40, "attention_heads": 40, "kv_heads": 40, "head_dim": 128}
    a = architecture_of(_model("acme/private-13b", architecture=arch))
    assert (a.parameters, a.layers, a.kv_heads, a.max_context, a.embedding_parameters) == (13 * 10**9, 40, 40, None, 0)
    assert a.checkpoint_quantization is None
    for method in PREQUANTIZED:
        assert architecture_of(_model("acme/private-13b-int4", architecture=arch, quantization=method)).checkpoint_quantization == method
    # FP8 can be applied to a 16-bit checkpoint while loading.
    assert architecture_of(_model("acme/private-13b", architecture=arch, quantization="fp8")).checkpoint_quantization is None
    # The given numbers win over the catalog's.
    assert architecture_of(_model("meta-llama/Llama-3.1-8B-Instruct", architecture=arch)).layers == 40
