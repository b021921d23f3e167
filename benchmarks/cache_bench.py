"""What the regional cache (LMCache's Redis tier) saves under a multi-turn chat trace.

Replays a seeded trace of chat sessions that share a system prompt against us-east's
first model (Llama-3.1-70B, TP 4 on H100) with its replicas behind a load balancer that
has no prefix affinity (the regional ALB / GCLB spread requests), and counts, chunk by
chunk, which prompt tokens each request finds in the replica's own GPU prefix cache, in
the regional Redis, or has to prefill. Prints hit rates, time to first token saved per
request with a Redis hit and GPU-seconds saved (negative: lost), with the cache down
(serving without it), at the size :data:`NODE_TYPE` gives and at larger sizes, and the
network bandwidth at which a Redis hit breaks even::

    .venv/bin/python benchmarks/cache_bench.py [--sessions N] [--replicas N] [--seed N]

Model of the system (assumptions, each stated where it is used):

- GPU prefix cache per replica: the stack's sizing (``kv_cache_tokens``), LRU.
- Redis tier: the model's share of the stack's cache (:mod:`gpu_fleet.components.cache_sizing`),
  LRU; LMCache stores every chunk of ``lmcache.chunkSize`` tokens a replica prefills and
  a request reads the longest run of stored chunks after its GPU hits (LMCache 0.3.5,
  lmcache/v1/storage_backend/remote_backend.py: ``contains`` then ``get_blocking``).
  LMCache's local CPU tier is left out: it is per replica, like the GPU cache.
- Prefill time: ``2 x parameters x tokens`` FLOPs at :data:`MFU` of the H100's dense
  BF16 peak (989 TFLOPS per GPU, NVIDIA H100 SXM datasheet: 1,979 with sparsity).
  The MFU is an assumption, not a measurement.
- The read blocks the replica: without layer-wise loading (off by default) LMCache's vLLM
  connector retrieves the KV synchronously in ``start_load_kv``, before the forward pass
  (lmcache 0.3.5, lmcache/integration/vllm/vllm_v1_adapter.py), so a Redis hit occupies
  the replica's GPUs for the read instead of the prefill.
- Reading a chunk from Redis: its KV bytes over the node's baseline network bandwidth
  (:data:`BANDWIDTH_GBPS`), serialised (one connection). Unverified for r7g: the
  ElastiCache supported-node-types page read for this change lists 7.5 Gbps baseline
  for cache.m7g.4xlarge; r7g is assumed the same.
- Trace (assumptions, not sourced from a public trace): a 2,000-token system prompt
  shared by every session, 1 to 8 turns per session, each adding a 200-token user turn
  and a 300-token answer; sessions interleave at random.
"""

from __future__ import annotations

import argparse
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from gpu_fleet.components.cache import sizing_plan
from gpu_fleet.components.cache_sizing import ModelKv
from gpu_fleet.components.config import CacheConfig, load_stack_file, pool_offering
from gpu_fleet.components.sizing import size_model

STACK = Path(__file__).resolve().parents[1] / "stacks" / "Pulumi.us-east.yaml"
H100_DENSE_BF16_FLOPS = 989e12
MFU = 0.5
BANDWIDTH_GBPS = 7.5
SYSTEM_PROMPT = 2000
USER_TURN, ANSWER = 200, 300
MAX_TURNS = 8
#: The cache node the trace is replayed against, with LMCache on for every model of the stack.
NODE_TYPE = "cache.r7g.4xlarge"


class Lru:
    """An LRU set of chunk keys holding at most ``capacity`` chunks."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.keys: OrderedDict = OrderedDict()

    def __contains__(self, key) -> bool:
        if key in self.keys:
            self.keys.move_to_end(key)
            return True
        return False

    def add(self, key) -> None:
        if self.capacity <= 0:
            return
        self.keys[key] = None
        self.keys.move_to_end(key)
        while len(self.keys) > self.capacity:
            self.keys.popitem(last=False)


@dataclass
class Result:
    requests: int = 0
    prompt_chunks: int = 0
    gpu_hits: int = 0
    redis_hits: int = 0
    requests_with_redis_hit: int = 0


def trace(sessions: int, rng: random.Random) -> list[list[int]]:
    """Each request as its prompt length in tokens, in arrival order, tagged by session."""
    turns = [(s, t) for s in range(sessions) for t in range(rng.randint(1, MAX_TURNS))]
    rng.shuffle(turns)
    # Turns of a session arrive in order: sort each session's turns by their position.
    seen: dict[int, int] = {}
    ordered = []
    for s, _ in turns:
        t = seen.get(s, 0)
        seen[s] = t + 1
        ordered.append([s, SYSTEM_PROMPT + t * (USER_TURN + ANSWER) + USER_TURN])
    return ordered


def chunk_keys(session: int, prompt: int, chunk: int) -> list[tuple]:
    """Prefix-chunk keys: the system prompt's chunks are shared by every session."""
    shared = SYSTEM_PROMPT // chunk
    return [("system", i) if i < shared else (session, i) for i in range(prompt // chunk)]


def replay(requests: list[list[int]], replicas: int, gpu_chunks: int, redis_chunks: int, chunk: int,
           rng: random.Random) -> Result:
    gpus = [Lru(gpu_chunks) for _ in range(replicas)]
    redis = Lru(redis_chunks)
    r = Result()
    for session, prompt in requests:
        gpu = gpus[rng.randrange(replicas)]
        keys = chunk_keys(session, prompt, chunk)
        i = 0
        while i < len(keys) and keys[i] in gpu:
            i += 1
        r.gpu_hits += i
        j = i
        while j < len(keys) and keys[j] in redis:
            j += 1
        r.redis_hits += j - i
        r.requests_with_redis_hit += j > i
        for key in keys:
            gpu.add(key)
            redis.add(key)
        r.requests += 1
        r.prompt_chunks += len(keys)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=4, help="replicas behind the load balancer (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    cfg = load_stack_file(STACK)
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    sizing = size_model(model, shape)
    chunk = model.lmcache.chunk_size
    kv = [ModelKv(m.name, size_model(m, pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == m.pool)).shape)
                  .kv_bytes_per_token, m.max_model_len) for m in cfg.models]
    plan = sizing_plan(cfg.cloud, CacheConfig(node_type=NODE_TYPE), kv)
    share = next(s for s in plan.shares if s.name == model.name)

    chunk_bytes = chunk * sizing.kv_bytes_per_token
    prefill_s = 2 * sizing.parameters * chunk / (sizing.gpus * H100_DENSE_BF16_FLOPS * MFU)
    read_s = chunk_bytes * 8 / (BANDWIDTH_GBPS * 1e9)
    requests = trace(args.sessions, random.Random(args.seed))
    gpu_chunks = sizing.kv_cache_tokens // chunk
    print(f"{model.name} on {sizing.gpus} x {sizing.gpu}, {args.replicas} replicas, {len(requests)} requests "
          f"from {args.sessions} sessions (seed {args.seed}); GPU prefix cache {sizing.kv_cache_tokens} tokens "
          f"per replica; chunk {chunk} tokens = {chunk_bytes / 2**20:.0f} MiB of KV")
    print(f"per chunk: prefill {prefill_s * 1000:.1f} ms on {sizing.gpus} GPUs (MFU {MFU}), "
          f"Redis read {read_s * 1000:.1f} ms at {BANDWIDTH_GBPS} Gbps")
    sizes = [("cache down", 0), (f"{plan.size}, {len(kv)} models", share.tokens)]
    sizes += [(f"{k} x that share", share.tokens * k) for k in (4, 16)]
    print(f"{'Redis tier':<28}{'tokens':>10}{'GPU hit':>9}{'Redis hit':>10}{'TTFT saved/hit':>16}"
          f"{'GPU-s saved':>13}{'saved %':>9}")
    for label, tokens in sizes:
        r = replay(requests, args.replicas, gpu_chunks, tokens // chunk, chunk, random.Random(args.seed))
        saved_per_chunk = prefill_s - read_s
        gpu_seconds = r.redis_hits * saved_per_chunk * sizing.gpus or 0.0  # no hits: 0, not -0
        total = (r.prompt_chunks - r.gpu_hits) * prefill_s * sizing.gpus
        per_hit = r.redis_hits * saved_per_chunk / r.requests_with_redis_hit if r.requests_with_redis_hit else 0.0
        print(f"{label:<28}{tokens:>10}{r.gpu_hits / r.prompt_chunks:>9.1%}{r.redis_hits / r.prompt_chunks:>10.1%}"
              f"{per_hit * 1000:>13.0f} ms{gpu_seconds:>13.0f}{gpu_seconds / total if total else 0:>9.1%}")
    print("(GPU-s saved: prefill avoided less the blocking Redis reads, in GPU-seconds; saved %: of the prefill "
          "left after GPU hits; TTFT saved/hit: the same per request with a Redis hit)")
    print(f"break-even: a Redis hit pays once the cache delivers {chunk_bytes * 8 / prefill_s / 1e9:.0f} Gbps "
          f"to a replica (here {BANDWIDTH_GBPS} Gbps)")


if __name__ == "__main__":
    main()
