"""What the regional cache holds: usable memory, per-model KV shares, suggestions, warnings."""

from __future__ import annotations

import pytest

from gpu_fleet.components import cache_sizing as cs

GIB = cs.GIB
# Llama-3.1-70B in bf16: 2 x 80 layers x 8 KV heads x 128 x 2 bytes = 320 KiB per token.
LLAMA_70B = cs.ModelKv("llama-3-1-70b", 2 * 80 * 8 * 128 * 2, 16384)
LLAMA_8B = cs.ModelKv("llama-3-1-8b", 2 * 32 * 8 * 128 * 2, 32768)


def test_elasticache_keeps_a_quarter_for_snapshots_and_replication():
    assert cs.usable_bytes("aws", "cache.r7g.large", 0) == int(13.07 * GIB * 0.75)
    assert cs.usable_bytes("aws", "cache.x9.huge", 0) is None
    assert cs.usable_bytes("gcp", "ignored", 64) == 64 * GIB


def test_default_node_holds_tens_of_thousands_of_70b_tokens():
    plan = cs.plan_cache("aws", "cache.r7g.large", cs.usable_bytes("aws", "cache.r7g.large", 0), [LLAMA_70B])
    (share,) = plan.shares
    assert share.tokens == int(13.07 * GIB * 0.75) // (320 * 1024)  # about 32 k tokens
    assert 30_000 < share.tokens < 33_000
    assert share.full_contexts == pytest.approx(share.tokens / 16384)


def test_models_split_the_cache_evenly():
    usable = 100 * GIB
    plan = cs.plan_cache("gcp", "100 GB", usable, [LLAMA_70B, LLAMA_8B])
    assert [s.tokens for s in plan.shares] == [50 * GIB // LLAMA_70B.kv_bytes_per_token,
                                               50 * GIB // LLAMA_8B.kv_bytes_per_token]


def test_suggestion_is_the_smallest_node_that_holds_the_target():
    need = (LLAMA_70B.context_bytes + LLAMA_8B.context_bytes) * cs.TARGET_CONTEXTS  # 72 GiB
    plan = cs.plan_cache("aws", "cache.r7g.large", cs.usable_bytes("aws", "cache.r7g.large", 0), [LLAMA_70B, LLAMA_8B])
    assert plan.suggestion == "nodeType: cache.r7g.4xlarge"
    assert cs.usable_bytes("aws", "cache.r7g.4xlarge", 0) >= need > cs.usable_bytes("aws", "cache.r7g.2xlarge", 0)
    assert cs.suggest("gcp", need) == "memorySizeGb: 72"
    assert cs.suggest("gcp", 301 * GIB) is None
    assert cs.suggest("aws", 10_000 * GIB) is None


def test_warns_when_nothing_uses_the_cache():
    plan = cs.plan_cache("aws", "cache.r7g.large", 1, [])
    assert not plan.used and plan.suggestion is None
    (warning,) = cs.warnings(plan)
    assert "nothing reads or writes it" in warning and "cache.enabled: false" in warning
    assert cs.summary(plan)["role"] == "unused"


def test_warns_when_a_share_holds_fewer_than_two_contexts():
    small = cs.plan_cache("aws", "cache.r7g.large", cs.usable_bytes("aws", "cache.r7g.large", 0), [LLAMA_70B])
    (warning,) = cs.warnings(small)
    assert "too small to matter for llama-3-1-70b" in warning and "cache.r7g.4xlarge holds 8" in warning
    big = cs.plan_cache("aws", "cache.r7g.2xlarge", cs.usable_bytes("aws", "cache.r7g.2xlarge", 0), [LLAMA_70B])
    assert big.shares[0].full_contexts >= cs.MIN_CONTEXTS and cs.warnings(big) == []


def test_unknown_node_memory_is_said_not_guessed():
    plan = cs.plan_cache("aws", "cache.m5.large", None, [LLAMA_70B])
    assert plan.shares[0].tokens == 0
    assert cs.warnings(plan) == ["cache (cache.m5.large): node memory unknown to the plan, so the KV it holds is not sized"]
    assert cs.summary(plan)["usableGib"] is None


def test_summary_is_the_stack_output():
    plan = cs.plan_cache("gcp", "64 GB", 64 * GIB, [LLAMA_8B])
    assert cs.summary(plan) == {
        "role": "lmcache-kv-sharing", "size": "64 GB", "usableGib": 64.0, "gateway": None,
        "models": [{"name": "llama-3-1-8b", "kvBytesPerToken": 131072, "tokens": 524288, "fullContexts": 16.0}],
        "targetContexts": 8, "suggestion": "memorySizeGb: 32",
    }
