"""The regional cache's hourly cost from the catalog's ``cachePrices`` (pure: no Pulumi)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_fleet.components import capacity
from gpu_fleet.components.cache_settings import DEFAULT_NODE_TYPE, cache_hourly_usd, memorystore_replication
from gpu_fleet.components.config import CacheConfig, load_stack_file
from gpu_fleet.components.gpu_catalog import cache_prices

REPO = Path(__file__).resolve().parents[2]
PRICES = {
    "aws": {"us-east-1": {"valkey": {"cache.r7g.large": 0.2}}},
    "gcp": {"europe-west4": {"BASIC": {"usdPerGbHour": 0.03}, "STANDARD_HA": {"usdPerGbHourPerNode": 0.05}}},
}


def _stack(name: str):
    return load_stack_file(REPO / "stacks" / f"Pulumi.{name}.yaml")


def test_aws_bills_every_node_primary_and_replicas():
    for replicas in (0, 1, 3):
        cache = CacheConfig(node_type="cache.r7g.large", replicas=replicas)
        assert cache_hourly_usd("aws", "us-east-1", cache, PRICES) == pytest.approx(0.2 * (1 + replicas))


def test_gcp_bills_gb_basic_per_instance_standard_per_node():
    assert cache_hourly_usd("gcp", "europe-west4", CacheConfig(memory_size_gb=4, replicas=0), PRICES) == pytest.approx(4 * 0.03)
    assert cache_hourly_usd("gcp", "europe-west4", CacheConfig(memory_size_gb=10, replicas=2), PRICES) == pytest.approx(10 * 3 * 0.05)


@pytest.mark.parametrize("cloud,location,cache", [
    ("aws", "us-east-1", CacheConfig(node_type="cache.r7g.xlarge")),  # node type not in the catalog
    ("aws", "us-east-1", CacheConfig(engine="redis")),  # engine not in the catalog
    ("aws", "eu-west-1", CacheConfig()),  # region not in the catalog
    ("gcp", "us-central1", CacheConfig(memory_size_gb=10)),
])
def test_no_price_in_the_catalog_is_none_never_a_guess(cloud, location, cache):
    assert cache_hourly_usd(cloud, location, cache, PRICES) is None


def test_a_disabled_cache_costs_nothing():
    assert cache_hourly_usd("aws", "us-east-1", CacheConfig(enabled=False), PRICES) == 0.0


def test_the_reference_stacks_caches_are_in_the_catalog():
    prices = cache_prices()
    us = _stack("us-east")
    node = us.cache.node_type or DEFAULT_NODE_TYPE
    # us-east: Valkey cache.r7g.large, read from a price-list data file (sources say where).
    assert prices["aws"][us.location][us.cache.engine][node] == 0.1752
    assert cache_hourly_usd(us.cloud, us.location, us.cache, prices) == pytest.approx(0.1752 * (1 + us.cache.replicas))
    assert "aws-valkey" in prices["sources"]
    # eu-west: the entry exists, its rate is unverified (null), so the cost is unknown.
    eu = _stack("eu-west")
    tier = memorystore_replication(eu.cache.replicas)["tier"]
    assert "usdPerGbHourPerNode" in prices["gcp"][eu.location][tier]
    assert cache_hourly_usd(eu.cloud, eu.location, eu.cache, prices) is None


def test_cost_json_keeps_the_cache_apart_from_the_gpu_figures():
    pools = capacity.region_capacity(_stack("us-east"))
    without = capacity.cost_json(pools)
    with_cache = capacity.cost_json(pools, 0.35)
    assert without["cacheHourlyUsd"] is None and with_cache["cacheHourlyUsd"] == 0.35
    assert {k: v for k, v in with_cache.items() if k != "cacheHourlyUsd"} == {
        k: v for k, v in without.items() if k != "cacheHourlyUsd"}
    assert "cacheHourlyUsd" not in capacity.fleet_json({"us-east": pools})["cost"]
