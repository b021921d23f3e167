"""The cache benchmark's replay: which prompt chunks come from the GPU, from Redis, or are prefilled."""

from __future__ import annotations

import random

from benchmarks import cache_bench as cb


def test_turns_of_a_session_arrive_in_order_and_grow():
    requests = cb.trace(50, random.Random(3))
    by_session: dict[int, list[int]] = {}
    for session, prompt in requests:
        by_session.setdefault(session, []).append(prompt)
    assert all(p == sorted(p) and p[0] == cb.SYSTEM_PROMPT + cb.USER_TURN for p in by_session.values())
    assert all(len(p) <= cb.MAX_TURNS for p in by_session.values())


def test_redis_serves_what_another_replica_prefilled():
    first, second = [0, 1024], [0, 1536]  # the same session, its second turn on the other replica
    rng = random.Random(0)
    r = cb.replay([first, second], 2, gpu_chunks=0, redis_chunks=100, chunk=256, rng=rng)
    assert (r.prompt_chunks, r.gpu_hits, r.redis_hits, r.requests_with_redis_hit) == (10, 0, 4, 1)
    down = cb.replay([first, second], 2, gpu_chunks=0, redis_chunks=0, chunk=256, rng=random.Random(0))
    assert (down.gpu_hits, down.redis_hits) == (0, 0)


def test_the_gpu_is_asked_first_and_lru_evicts_the_oldest():
    lru = cb.Lru(2)
    for key in ("a", "b", "c"):
        lru.add(key)
    assert "a" not in lru and "b" in lru and "c" in lru
    r = cb.replay([[0, 512], [0, 512]], 1, gpu_chunks=10, redis_chunks=10, chunk=256, rng=random.Random(0))
    assert (r.gpu_hits, r.redis_hits) == (2, 0)
