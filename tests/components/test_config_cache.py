"""Cache config checks: every invalid ``cache`` section gets a line naming the stack file and
the ``cache.<field>`` path, before any resource is created."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import pytest
import yaml

from gpu_fleet.components.config import ConfigError, RegionConfig, parse_fleet

REPO = Path(__file__).resolve().parents[2]


def _raw(stack: str, cache: Optional[dict]) -> dict:
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    raw = copy.deepcopy(doc["config"]["gpu-fleet:fleet"])
    if cache is not None:
        raw["cache"] = cache
    return raw


def _parse(stack: str, cache: dict) -> RegionConfig:
    return parse_fleet(_raw(stack, cache), f"stacks/Pulumi.{stack}.yaml", REPO / "stacks")


def _errors(stack: str, cache: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _parse(stack, cache)
    return str(exc.value).splitlines()


US, EU = "us-east", "eu-west"

# (stack, cache section, field path, words in the message)
BAD_CACHES = [
    (US, {"replicas": 0}, "cache.replicas", "automatic failover needs at least one replica"),
    (US, {"memorySizeGb": 10}, "cache.memorySizeGb", "only used on gcp"),
    (EU, {"nodeType": "cache.r7g.large"}, "cache.nodeType", "only used on aws"),
    (EU, {"engine": "valkey"}, "cache.engine", "Memorystore for Redis runs redis"),
    (US, {"evictionPolicy": "lru"}, "cache.evictionPolicy", "'allkeys-lru'"),
    (US, {"engineVersion": "8"}, "cache.engineVersion", "should match pattern"),
    # engine versions
    (US, {"engineVersion": "7.1"}, "cache.engineVersion", "ElastiCache has no valkey 7.1 that this fleet supports; use one of: 7.2, 8.0, 8.1, 8.2"),
    (US, {"engine": "redis", "engineVersion": "6.2"}, "cache.engineVersion", "no redis 6.2 that this fleet supports; use one of: 7.0, 7.1"),
    (US, {"engine": "redis", "engineVersion": "8.0"}, "cache.engineVersion", "use one of: 7.0, 7.1"),
    (EU, {"engineVersion": "7.1"}, "cache.engineVersion", "Memorystore has no redis 7.1 that this fleet supports; use one of: 7.0, 7.2"),
    # node types
    (US, {"nodeType": "cache.r7g.huge"}, "cache.nodeType", "cache.r7g.huge is not an ElastiCache node type; cache.r7g comes in large"),
    (US, {"nodeType": "cache.t2.micro"}, "cache.nodeType", "previous generation"),
    (US, {"nodeType": "cache.r6gd.xlarge"}, "cache.nodeType", "data tiering"),
    (US, {"nodeType": "db.r7g.large"}, "cache.nodeType", "not an ElastiCache node type; use one of cache.t3.*"),
    # Memorystore sizes
    (EU, {"memorySizeGb": 4}, "cache.memorySizeGb", "4 GB is too small: read replicas need nodes of at least 5 GB (replicas: 1); set memorySizeGb: 5 or more"),
    (EU, {"memorySizeGb": 301}, "cache.memorySizeGb", "above the Memorystore maximum of 300 GB"),
    (EU, {"memorySizeGb": 0, "replicas": 0, "automaticFailover": False}, "cache.memorySizeGb", "greater than or equal to 1"),
    (EU, {"automaticFailover": False}, "cache.automaticFailover", "always fails over; remove automaticFailover: false"),
    # windows
    (US, {"maintenanceWindow": "sun:25:00-sun:26:00"}, "cache.maintenanceWindow", "25:00 in 'sun:25:00-sun:26:00' is not a time of day"),
    (US, {"maintenanceWindow": "sunday 05:00"}, "cache.maintenanceWindow", "should match pattern"),
    (US, {"maintenanceWindow": "sun:05:00-sun:05:30"}, "cache.maintenanceWindow", "lasts 30 minutes; ElastiCache needs at least 60"),
    (EU, {"maintenanceWindow": "sun:05:00-sun:07:00"}, "cache.maintenanceWindow", "lasts 120 minutes; Memorystore windows last exactly one hour"),
    (US, {"snapshotWindow": "05:30-06:30"}, "cache.snapshotWindow", "overlaps maintenanceWindow sun:05:00-sun:06:00"),
    (US, {"maintenanceWindow": "mon:00:00-mon:01:00", "snapshotWindow": "23:30-00:30"}, "cache.snapshotWindow", "overlaps maintenanceWindow"),
    (US, {"snapshotWindow": "03:00-03:30"}, "cache.snapshotWindow", "lasts 30 minutes; ElastiCache needs at least 60"),
    (US, {"snapshotWindow": "24:00-01:00"}, "cache.snapshotWindow", "not a time of day"),
    (EU, {"snapshotWindow": "03:00-04:00"}, "cache.snapshotWindow", "only used on aws"),
]


@pytest.mark.parametrize("stack,cache,path,words", BAD_CACHES, ids=lambda v: str(v)[:60])
def test_bad_cache_names_file_and_field(stack, cache, path, words):
    source = f"stacks/Pulumi.{stack}.yaml"
    lines = _errors(stack, cache)
    matching = [line for line in lines if line.startswith(f"{source}: {path}: ")]
    assert matching, lines
    assert any(words in line for line in matching), lines


@pytest.mark.parametrize("stack,cache", [
    (US, None),  # the reference stacks as written
    (EU, None),
    (US, {"engine": "redis", "engineVersion": "7.0", "nodeType": "cache.t4g.micro"}),
    (US, {"engineVersion": "7.2", "nodeType": "cache.m7g.xlarge", "replicas": 5}),
    (US, {"replicas": 0, "automaticFailover": False, "snapshotRetentionDays": 0}),
    (US, {"maintenanceWindow": "sat:23:00-sun:01:00", "snapshotWindow": "01:00-02:00"}),
    (EU, {"replicas": 0, "automaticFailover": False, "memorySizeGb": 1}),  # Basic tier
    (EU, {"memorySizeGb": 5, "replicas": 5, "engineVersion": "7.0"}),
    (EU, {"maintenanceWindow": "tue:23:30-wed:00:30"}),
])
def test_good_caches_parse(stack, cache):
    assert _parse(stack, cache).cache.enabled


def test_a_disabled_cache_is_not_checked():
    cfg = _parse(US, {"enabled": False, "replicas": 0, "nodeType": "cache.nope", "snapshotWindow": "05:30-06:30"})
    assert cfg.cache.enabled is False


def test_every_cache_problem_is_reported_at_once():
    lines = _errors(US, {"engineVersion": "9.9", "nodeType": "cache.t1.micro", "memorySizeGb": 4,
                         "snapshotWindow": "05:00-06:00"})
    paths = {line.split(": ")[1] for line in lines}
    assert paths == {"cache.engineVersion", "cache.nodeType", "cache.memorySizeGb", "cache.snapshotWindow"}


@pytest.mark.parametrize("gateway,path", [
    ({"cacheMode": "always"}, "gateway.cacheMode"),
    ({"cacheTtlSeconds": 0}, "gateway.cacheTtlSeconds"),
    ({"enabled": True, "redisUrl": "redis://x"}, "gateway.redisUrl"),
])
def test_bad_gateway_names_file_and_field(gateway, path):
    raw = _raw("us-east", None)
    raw["gateway"] = gateway
    with pytest.raises(ConfigError) as exc:
        parse_fleet(raw, "stacks/Pulumi.us-east.yaml", REPO / "stacks")
    assert "stacks/Pulumi.us-east.yaml" in str(exc.value) and path in str(exc.value)


def test_the_reference_stacks_use_the_gateway_by_default():
    for stack in ("us-east", "eu-west"):
        cfg = _parse(stack, None)
        assert cfg.gateway.enabled and cfg.gateway.cache_mode == "default_on" and cfg.gateway.cache_ttl_seconds == 600
