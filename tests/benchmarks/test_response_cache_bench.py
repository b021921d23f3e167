"""The response-cache benchmark's replay: exact repeats within the TTL hit, long chats never do."""

from __future__ import annotations

import random

from benchmarks import response_cache_bench as rb


def _cost(tokens: int) -> float:
    return tokens / 1000


def test_a_repeat_hits_within_the_ttl_only():
    q = lambda at: rb.Request(at, "k", 2, 1000, 100)  # noqa: E731
    r = rb.replay([q(0), q(10), q(700)], ttl=600, prefill_s=_cost, decode_s=_cost, gpus=4)
    # 10 s after the answer was stored: a hit; 700 s after: expired, stored again.
    assert (r.requests, r.cacheable, r.hits) == (3, 3, 1)
    assert r.gpu_s_saved == (1.0 + 0.1) * 4 and r.gpu_s == 3 * (1.0 + 0.1) * 4
    assert abs(r.ttft_saved_s - (1.0 - rb.REDIS_RTT_MS / 1000)) < 1e-9


def test_requests_with_more_messages_than_litellm_caches_never_hit():
    q = lambda at: rb.Request(at, "k", rb.MAX_MESSAGES + 1, 1000, 100)  # noqa: E731
    r = rb.replay([q(0), q(1)], ttl=600, prefill_s=_cost, decode_s=_cost, gpus=1)
    assert (r.cacheable, r.hits, r.gpu_s_saved) == (0, 0, 0)


def test_the_trace_has_the_asked_mix_and_chats_grow_turn_by_turn():
    requests = rb.trace(2000, 0.4, random.Random(1))
    assert len(requests) == 2000 and [q.at for q in requests] == sorted(q.at for q in requests)
    assert sum(q.key[0] == "template" for q in requests) == 800
    chats = [q for q in requests if q.key[0] == "chat"]
    assert all(q.messages == 2 + 2 * q.key[2] for q in chats)
    # No chat request repeats, so a chat-only hour gets no hit.
    r = rb.replay(rb.trace(2000, 0.0, random.Random(1)), 600, _cost, _cost, 1)
    assert r.hits == 0 and r.cacheable > 0
