"""Architecture numbers of popular open models, so a model is sized before anything exists.

Pure Python (no Pulumi import): the config checks, the model deployment and the
autoscaling simulator all read it.

Source: each entry's ``config`` holds numbers copied verbatim from the model's
``config.json`` on the Hugging Face Hub (``https://huggingface.co/<model id>``, file
``config.json``); ``parameters`` is the safetensors parameter total the Hub shows on the
model page. The test suite recomputes every total from the config numbers (embeddings,
attention, MLP or experts, norms) and finds them equal, apart from the Qwen2 QKV bias,
which ``config.json`` does not describe.

``config.json`` of Llama 3.1, Qwen2.5 and Mixtral has no ``head_dim``; as transformers
does, it is ``hidden_size / num_attention_heads`` (128 for all five).

A model outside the catalog is sized from ``ModelConfig.architecture`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:  # a type only: config sizes models with this catalog
    from .config import ModelConfig

#: Quantization methods that need a checkpoint published in that format.
PREQUANTIZED = ("awq", "gptq")

class UnknownModelError(ValueError):
    """A model that is neither in the catalog nor described by ``architecture``."""


@dataclass(frozen=True)
class Architecture:
    """What sizing needs to know about a model.

    parameters: total parameter count; every expert of a mixture-of-experts model
        counts, because all of them are loaded.
    layers: ``num_hidden_layers``.
    attention_heads: ``num_attention_heads``.
    kv_heads: ``num_key_value_heads``.
    head_dim: ``head_dim`` (or ``hidden_size / num_attention_heads``).
    embedding_parameters: parameters of the input embedding and the LM head, which
        vLLM's quantization methods leave in 16 bit; 0 when unknown (default).
    max_context: ``max_position_embeddings``; None when unknown (default).
    checkpoint_quantization: the published checkpoint's own quantization (``awq`` or
        ``gptq``: 4-bit weights, downloaded at that size); None (default) for a 16-bit
        checkpoint, which vLLM can still quantize to FP8 while loading.
    """

    parameters: int
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    embedding_parameters: int = 0
    max_context: Optional[int] = None
    checkpoint_quantization: Optional[str] = None


@dataclass(frozen=True)
class CatalogModel:
    """One catalog entry: the ``config.json`` numbers and the Hub's parameter total."""

    model_id: str
    config: Mapping[str, Any]
    parameters: int

    @property
    def architecture(self) -> Architecture:
        c = self.config
        hidden, heads = c["hidden_size"], c["num_attention_heads"]
        embeddings = c["vocab_size"] * hidden * (1 if c["tie_word_embeddings"] else 2)
        return Architecture(
            parameters=self.parameters,
            layers=c["num_hidden_layers"],
            attention_heads=heads,
            kv_heads=c["num_key_value_heads"],
            head_dim=c.get("head_dim") or hidden // heads,
            embedding_parameters=embeddings,
            max_context=c["max_position_embeddings"],
        )


def _entry(model_id: str, parameters: int, **config: Any) -> CatalogModel:
    return CatalogModel(model_id, MappingProxyType(config), parameters)


_ENTRIES = (
    _entry(
        "meta-llama/Llama-3.1-8B-Instruct", 8_030_261_248,
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
        tie_word_embeddings=False, torch_dtype="bfloat16",
    ),
    _entry(
        "meta-llama/Llama-3.1-70B-Instruct", 70_553_706_496,
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
        tie_word_embeddings=False, torch_dtype="bfloat16",
    ),
    _entry(
        "Qwen/Qwen2.5-7B-Instruct", 7_615_616_512,
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
        tie_word_embeddings=False, torch_dtype="bfloat16",
    ),
    _entry(
        "Qwen/Qwen2.5-72B-Instruct", 72_706_203_648,
        hidden_size=8192, intermediate_size=29568, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, vocab_size=152064, max_position_embeddings=32768,
        tie_word_embeddings=False, torch_dtype="bfloat16",
    ),
    _entry(
        "mistralai/Mixtral-8x7B-Instruct-v0.1", 46_702_792_704,
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768,
        num_local_experts=8, num_experts_per_tok=2, tie_word_embeddings=False, torch_dtype="bfloat16",
    ),
)

#: The catalog, by model id as the Hub spells it.
CATALOG: Mapping[str, CatalogModel] = MappingProxyType({e.model_id: e for e in _ENTRIES})
# The Hub resolves model ids case-insensitively, so the catalog does too.
_BY_LOWER = {k.lower(): v for k, v in CATALOG.items()}


def lookup(model_id: str) -> Optional[CatalogModel]:
    """The catalog entry of ``model_id`` (case-insensitive), or None."""
    return _BY_LOWER.get(model_id.lower())


def architecture_of(model: ModelConfig) -> Architecture:
    """The architecture to size ``model`` with: its ``architecture`` when given (it wins
    over the catalog, e.g. for a fine-tune published under the same id), else the
    catalog's. Raises UnknownModelError when there is neither."""
    a = model.architecture
    if a is not None:
        return Architecture(
            parameters=round(a.parameters_billion * 1e9),
            layers=a.layers,
            attention_heads=a.attention_heads,
            kv_heads=a.kv_heads,
            head_dim=a.head_dim,
            # vLLM cannot produce AWQ/GPTQ weights while loading: such a model's checkpoint
            # is itself quantized.
            checkpoint_quantization=model.quantization if model.quantization in PREQUANTIZED else None,
        )
    entry = lookup(model.model_id)
    if entry is None:
        raise UnknownModelError(
            f"{model.model_id} is not in the built-in model catalog ({', '.join(CATALOG)}); give its "
            "parametersBillion, layers, attentionHeads, kvHeads and headDim from its config.json"
        )
    return entry.architecture
