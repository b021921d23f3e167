"""What the regional Redis cache holds: the gateway's response cache, and KV cache that
LMCache shares between replicas when a model turns it on.

By default the cache's reader and writer is the gateway (:mod:`gpu_fleet.components.gateway`): a
LiteLLM proxy beside every vLLM server keeping an exact-match response cache there. Its
entries are answers of a few kilobytes, so the plan states what it stores and about how
many answers fit (:data:`RESPONSE_ENTRY_BYTES`, an assumption), never a size warning.

With LMCache on, every vLLM replica of a model writes the KV cache of the prompts it
prefills to the regional Redis in chunks (``lmcache.chunkSize`` tokens, LMCache's
``naive`` serde: raw tensors, no compression) and reads a chunk back instead of
recomputing it when another replica (or itself, after eviction from GPU and host memory)
sees the same prefix. The cache is shared by every LMCache model of the region and
evicts least recently used keys (``cache.evictionPolicy: allkeys-lru``), so the plan
assumes an even split between those models.

Arithmetic only (no Pulumi): the plan, the region component and the benchmark import it.

Capacity of a node
------------------
- ElastiCache: the node type's memory (:data:`ELASTICACHE_NODE_MEMORY_GIB`) less
  ``reserved-memory-percent``, 25 % in the default parameter groups and in ours, which
  does not set it (AWS knowledge center, "Why is the available memory in my ElastiCache
  Redis node always less than the value in ElastiCache pricing?",
  https://repost.aws/knowledge-center/available-memory-elasticache-redis-node).
- Memorystore for Redis: ``memorySizeGb`` (the API's ``memory_size_gb``), taken as GiB
  and as all usable for keys (``maxmemory-gb`` defaulting to the capacity): both
  unverified, so the figure is an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

GIB = 1024**3

#: ElastiCache node memory in GiB, for the memory-optimised and general-purpose Graviton
#: families this fleet suggests. UNVERIFIED: the values are the memory column of the
#: ElastiCache pricing page (https://aws.amazon.com/elasticache/pricing/) as commonly
#: quoted; the supported-node-types page read for this change lists bandwidths, not
#: memory. Node types not in this table are sized as "unknown" (no capacity figure).
ELASTICACHE_NODE_MEMORY_GIB: dict[str, float] = {
    "cache.m7g.large": 6.38, "cache.m7g.xlarge": 12.93, "cache.m7g.2xlarge": 26.04,
    "cache.m7g.4xlarge": 52.26, "cache.m7g.8xlarge": 103.68, "cache.m7g.12xlarge": 157.12,
    "cache.m7g.16xlarge": 209.55,
    "cache.r7g.large": 13.07, "cache.r7g.xlarge": 26.32, "cache.r7g.2xlarge": 52.82,
    "cache.r7g.4xlarge": 105.81, "cache.r7g.8xlarge": 209.55, "cache.r7g.12xlarge": 317.77,
    "cache.r7g.16xlarge": 419.09,
}
#: ElastiCache's default ``reserved-memory-percent`` (kept for snapshots and replication).
ELASTICACHE_RESERVED_PERCENT = 25
#: The family the plan suggests when the cache is too small (memory-optimised, the
#: default node type's family).
SUGGESTED_FAMILY = "cache.r7g."
#: Memorystore for Redis' largest instance, in GB.
MEMORYSTORE_MAX_GB = 300

#: Below this many full-length contexts per model the cache is "too small to matter":
#: one long conversation evicts the other, so a shared prefix rarely survives until the
#: next replica asks for it.
MIN_CONTEXTS = 2
#: What the plan sizes a suggestion for: full-length contexts of every LMCache model.
TARGET_CONTEXTS = 8
#: One cached answer in Redis, for the plan's count of answers the cache holds. An
#: assumption: a chat completion of a few hundred tokens as JSON (1 to 2 KB), its key
#: and Redis' per-key overhead, rounded up.
RESPONSE_ENTRY_BYTES = 4096


@dataclass(frozen=True)
class ModelKv:
    """One LMCache model as the cache sees it: KV bytes per token (whole model, all
    tensor-parallel ranks together) and its longest context."""

    name: str
    kv_bytes_per_token: int
    max_model_len: int

    @property
    def context_bytes(self) -> int:
        return self.kv_bytes_per_token * self.max_model_len


@dataclass(frozen=True)
class ModelShare:
    """What one model's share of the cache holds."""

    name: str
    kv_bytes_per_token: int
    tokens: int
    full_contexts: float


@dataclass(frozen=True)
class CachePlan:
    """The cache's role and sizing for the plan.

    usable_bytes: what Redis may fill (None: the node type's memory is not in the table).
    shares: one entry per LMCache model (even split of ``usable_bytes``).
    suggestion: the node type (AWS) or size (GCP) holding :data:`TARGET_CONTEXTS` full
        contexts of every LMCache model, or None when no LMCache model uses the cache.
    gateway: what the gateway stores in the cache, or None when no gateway uses it.
    """

    cloud: str
    size: str
    usable_bytes: Optional[int]
    shares: tuple[ModelShare, ...]
    suggestion: Optional[str]
    gateway: Optional[str] = None

    @property
    def used(self) -> bool:
        return bool(self.shares) or self.gateway is not None

    @property
    def roles(self) -> list[str]:
        return (["gateway-response-cache"] if self.gateway else []) + (["lmcache-kv-sharing"] if self.shares else [])


def usable_bytes(cloud: str, node_type: str, memory_size_gb: int) -> Optional[int]:
    """Bytes Redis may fill on ``node_type`` (AWS) or a ``memory_size_gb`` instance (GCP)."""
    if cloud == "gcp":
        return memory_size_gb * GIB
    gib = ELASTICACHE_NODE_MEMORY_GIB.get(node_type)
    if gib is None:
        return None
    return int(gib * GIB * (100 - ELASTICACHE_RESERVED_PERCENT) / 100)


def suggest(cloud: str, needed_bytes: int) -> Optional[str]:
    """The smallest node type (AWS, in :data:`SUGGESTED_FAMILY`) or size in GB (GCP)
    whose usable memory is at least ``needed_bytes``; None when none is large enough."""
    if cloud == "gcp":
        gb = max(1, math.ceil(needed_bytes / GIB))
        return f"memorySizeGb: {gb}" if gb <= MEMORYSTORE_MAX_GB else None
    fits = sorted((gib, node) for node, gib in ELASTICACHE_NODE_MEMORY_GIB.items()
                  if node.startswith(SUGGESTED_FAMILY) and usable_bytes("aws", node, 0) >= needed_bytes)
    return f"nodeType: {fits[0][1]}" if fits else None


def plan_cache(cloud: str, size: str, usable: Optional[int], models: list[ModelKv],
               gateway: Optional[str] = None) -> CachePlan:
    """Split ``usable`` bytes evenly between the LMCache ``models``; ``gateway``: what the
    gateway stores (None: no gateway)."""
    shares = []
    for m in models:
        share = usable // len(models) if usable is not None else 0
        tokens = share // m.kv_bytes_per_token
        shares.append(ModelShare(m.name, m.kv_bytes_per_token, tokens, tokens / m.max_model_len))
    target = sum(m.context_bytes for m in models) * TARGET_CONTEXTS
    suggestion = suggest(cloud, target) if models else None
    return CachePlan(cloud, size, usable, tuple(shares), suggestion, gateway)


def warnings(plan: CachePlan) -> list[str]:
    """Plan warnings: a cache nothing uses, a cache too small to matter, an unknown size."""
    where = f"cache ({plan.size})"
    if not plan.used:
        return [f"{where}: provisioned but nothing reads or writes it: turn the gateway on (gateway.enabled: "
                "true, the default) or LMCache for a model (models[].lmcache.enabled: true), or turn the cache off "
                "(cache.enabled: false)"]
    if not plan.shares:
        return []
    if plan.usable_bytes is None:
        return [f"{where}: node memory unknown to the plan, so the KV it holds is not sized"]
    fix = f"; {plan.suggestion} holds {TARGET_CONTEXTS}" if plan.suggestion else ""
    return [f"{where}: too small to matter for {s.name}: its share holds {s.tokens} tokens of KV, "
            f"{s.full_contexts:.1f} full contexts (fewer than {MIN_CONTEXTS}){fix}"
            for s in plan.shares if s.full_contexts < MIN_CONTEXTS]


def summary(plan: CachePlan) -> dict:
    """The plan as a stack output (``cache`` in the region stack's outputs)."""
    return {
        "role": "+".join(plan.roles) or "unused",
        "size": plan.size,
        "usableGib": None if plan.usable_bytes is None else round(plan.usable_bytes / GIB, 2),
        "gateway": None if plan.gateway is None else {
            "stores": plan.gateway,
            "responsesHeld": None if plan.usable_bytes is None else plan.usable_bytes // RESPONSE_ENTRY_BYTES,
            "responseEntryBytes": RESPONSE_ENTRY_BYTES,
        },
        "models": [{"name": s.name, "kvBytesPerToken": s.kv_bytes_per_token, "tokens": s.tokens,
                    "fullContexts": round(s.full_contexts, 2)} for s in plan.shares],
        "targetContexts": TARGET_CONTEXTS,
        "suggestion": plan.suggestion,
    }
