"""What the gateway's response cache in the regional Redis saves under a trace with repeats.

Replays a seeded hour of requests to us-east's first model (Llama-3.1-70B, TP 4 on H100)
through the gateway (components/gateway.py: LiteLLM's exact-match cache, the stack's
``gateway`` settings) and counts the requests answered from Redis, the time to first token
they get instead, and the GPU time they leave to other requests::

    .venv/bin/python benchmarks/response_cache_bench.py [--requests N] [--seed N]

The effect depends on how much traffic repeats exactly, which differs by workload and is
not sourced here, so the script prints one line per mix of traffic (:data:`MIXES`).

Model of the system (assumptions, each stated where it is used):

- Traffic: chat sessions (as benchmarks/cache_bench.py: a 2,000-token system prompt, 1 to 8
  turns of a 200-token user turn and a 300-token answer) and templated requests (an
  800-token prompt, a 150-token answer) drawn from a catalogue of :data:`CATALOGUE` distinct
  prompts with Zipf-like popularity (exponent :data:`ZIPF`: the shape Breslau et al.,
  "Web Caching and Zipf-like Distributions", INFOCOM 1999, found in web requests; the
  exponent and the catalogue size are assumptions). Arrivals uniform over the hour.
- The cache (LiteLLM 1.110.2, litellm/caching/caching.py): a request is looked up and
  stored only with at most ``max_messages`` = 4 messages (so a chat's first two turns at
  most, which are unique to their session and never hit); an entry lives ``ttl`` seconds;
  the cache's capacity (millions of answers, the plan's ``responsesHeld``) never binds.
- Time to first token of a miss: the prefill alone, ``2 x parameters x prompt tokens``
  FLOPs at :data:`MFU` of the H100's dense BF16 peak (989 TFLOPS per GPU, NVIDIA H100 SXM
  datasheet), no queueing (so the saving is a lower bound under load). Of a hit: one Redis
  round trip inside the VPC, :data:`REDIS_RTT_MS` (an assumption, unverified).
- GPU time of a request: its prefill plus ``2 x parameters x answer tokens`` decode FLOPs
  at :data:`DECODE_MFU` (decode is memory-bound; an assumption for a well-batched server).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from gpu_fleet.components.config import load_stack_file, pool_offering
from gpu_fleet.components.sizing import size_model

STACK = Path(__file__).resolve().parents[1] / "stacks" / "Pulumi.us-east.yaml"
H100_DENSE_BF16_FLOPS = 989e12
MFU = 0.5
DECODE_MFU = 0.25
REDIS_RTT_MS = 1.0
SYSTEM_PROMPT, USER_TURN, ANSWER, MAX_TURNS = 2000, 200, 300, 8
TEMPLATE_PROMPT, TEMPLATE_ANSWER = 800, 150
CATALOGUE = 5000
ZIPF = 1.0
#: LiteLLM's default ``max_messages``: longer requests are neither looked up nor stored.
MAX_MESSAGES = 4
HOUR = 3600.0
#: Share of templated (possibly repeated) requests in each printed mix.
MIXES = (0.0, 0.1, 0.4, 0.8)


@dataclass(frozen=True)
class Request:
    at: float
    key: object
    messages: int
    prompt: int
    answer: int


def trace(n: int, templated_share: float, rng: random.Random) -> list[Request]:
    """``n`` requests over an hour: chat turns and Zipf-popular templated prompts."""
    weights = [1 / (rank ** ZIPF) for rank in range(1, CATALOGUE + 1)]
    templated = round(n * templated_share)
    out = [Request(rng.uniform(0, HOUR), ("template", k), 2, TEMPLATE_PROMPT, TEMPLATE_ANSWER)
           for k in rng.choices(range(CATALOGUE), weights=weights, k=templated)]
    session = 0
    while len(out) < n:
        start = rng.uniform(0, HOUR)
        for turn in range(rng.randint(1, MAX_TURNS)):
            if len(out) == n:
                break
            # system, then user/assistant pairs, then this turn's user message
            out.append(Request(start + 60 * turn, ("chat", session, turn), 2 + 2 * turn,
                               SYSTEM_PROMPT + turn * (USER_TURN + ANSWER) + USER_TURN, ANSWER))
        session += 1
    return sorted(out, key=lambda r: r.at)


@dataclass
class Result:
    requests: int = 0
    cacheable: int = 0
    hits: int = 0
    ttft_saved_s: float = 0.0
    gpu_s: float = 0.0
    gpu_s_saved: float = 0.0


def replay(requests: list[Request], ttl: float, prefill_s, decode_s, gpus: int) -> Result:
    """Exact-match cache with a TTL: ``prefill_s(tokens)``, ``decode_s(tokens)`` in seconds."""
    stored: dict[object, float] = {}
    r = Result()
    for q in requests:
        r.requests += 1
        cost = (prefill_s(q.prompt) + decode_s(q.answer)) * gpus
        r.gpu_s += cost
        if q.messages > MAX_MESSAGES:
            continue
        r.cacheable += 1
        written = stored.get(q.key)
        if written is not None and q.at - written < ttl:
            r.hits += 1
            r.ttft_saved_s += prefill_s(q.prompt) - REDIS_RTT_MS / 1000
            r.gpu_s_saved += cost
        else:
            stored[q.key] = q.at
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests in the hour (default 20000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    cfg = load_stack_file(STACK)
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    s = size_model(model, shape)
    flops = s.gpus * H100_DENSE_BF16_FLOPS

    def prefill_s(tokens: int) -> float:
        return 2 * s.parameters * tokens / (flops * MFU)

    def decode_s(tokens: int) -> float:
        return 2 * s.parameters * tokens / (flops * DECODE_MFU)

    ttl = cfg.gateway.cache_ttl_seconds
    print(f"{model.name} on {s.gpus} x {s.gpu}; {args.requests} requests in an hour (seed {args.seed}); cache "
          f"mode {cfg.gateway.cache_mode}, ttl {ttl} s; templated prompt {TEMPLATE_PROMPT} tokens: prefill "
          f"{prefill_s(TEMPLATE_PROMPT) * 1000:.0f} ms, a hit answers in ~{REDIS_RTT_MS:.0f} ms")
    print(f"{'templated share':<17}{'hits':>8}{'of all':>9}{'TTFT saved/hit':>16}{'GPU-h':>8}{'GPU-h saved':>13}"
          f"{'saved %':>9}")
    for share in MIXES:
        r = replay(trace(args.requests, share, random.Random(args.seed)), ttl, prefill_s, decode_s, s.gpus)
        per_hit = r.ttft_saved_s / r.hits if r.hits else 0.0
        print(f"{share:<17.0%}{r.hits:>8}{r.hits / r.requests:>9.1%}{per_hit * 1000:>13.0f} ms"
              f"{r.gpu_s / 3600:>8.2f}{r.gpu_s_saved / 3600:>13.2f}{r.gpu_s_saved / r.gpu_s:>9.1%}")
    print("(hits: requests answered from Redis; GPU-h: GPU time the hour's requests need without the cache; "
          "saved: what the hits leave to other requests; chat turns beyond the second are never cached)")


if __name__ == "__main__":
    main()
