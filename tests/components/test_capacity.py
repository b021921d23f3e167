"""GPU capacity and cost per pool (gpu_fleet.components.capacity), from the config and the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gpu_fleet.components import capacity
from gpu_fleet.components.config import load_stack_file, parse_fleet

REPO = Path(__file__).resolve().parents[2]
US_EAST = REPO / "stacks" / "Pulumi.us-east.yaml"
EU_WEST = REPO / "stacks" / "Pulumi.eu-west.yaml"


def _pools(path: Path) -> dict[str, capacity.PoolCapacity]:
    return {p.name: p for p in capacity.region_capacity(load_stack_file(path))}


def test_us_east_reference_figures():
    pools = _pools(US_EAST)
    h100, a100 = pools["h100"], pools["a100"]
    assert (h100.warm_gpus, h100.max_gpus) == (8, 160)
    # Llama 70B and Qwen 72B, 2 replicas x TP4 each: 16 GPUs, two nodes, plus the warm one.
    assert (h100.model_gpus_at_min, h100.nodes_at_min) == (16, 3)
    assert h100.min_hourly_usd == round(3 * 55.04, 2)
    # At maxReplicas (20 x 4 each) the models want 160 GPUs: the pool's 20 nodes, no more.
    assert (h100.model_gpus_at_max, h100.nodes_wanted_at_max, h100.nodes_at_max) == (160, 20, 20)
    assert h100.max_hourly_usd == round(20 * 55.04, 2)
    assert (a100.model_gpus_at_min, a100.nodes_at_min, a100.nodes_at_max) == (2, 2, 4)
    assert h100.zones == ("use1-az1", "use1-az2", "use1-az3", "use1-az4", "use1-az5", "use1-az6")


def test_shortfall_warning_names_the_pool_and_the_fix():
    raw = yaml.safe_load(US_EAST.read_text())["config"]["gpu-fleet:fleet"]
    raw["gpuPools"][0]["maxNodes"] = 10
    (warning,) = capacity.shortfalls(capacity.region_capacity(parse_fleet(raw, str(US_EAST), US_EAST.parent)))
    assert warning.startswith("GPU pool h100: its models may ask for 160 GPUs at maxReplicas")
    assert "raise gpuPools.h100.maxNodes to 20" in warning


def test_no_warning_when_the_pool_can_hold_every_model_at_max():
    # The reference pools are sized for every model at maxReplicas.
    for path in (US_EAST, EU_WEST):
        assert capacity.shortfalls(capacity.region_capacity(load_stack_file(path))) == []


def test_cost_json_is_priced_on_demand_and_labels_other_capacity():
    raw = yaml.safe_load(US_EAST.read_text())["config"]["gpu-fleet:fleet"]
    raw["gpuPools"][0].update(capacity=["spot", "on-demand"])
    cost = capacity.cost_json(capacity.region_capacity(parse_fleet(raw, str(US_EAST), US_EAST.parent)))
    assert cost["priceBasis"] == "on-demand"
    assert cost["minHourlyUsd"] == round(sum(p["minHourlyUsd"] for p in cost["pools"]), 2)
    h100 = next(p for p in cost["pools"] if p["name"] == "h100")
    assert "spot" in h100["note"] and h100["hourlyUsdPerNode"] == 55.04


def test_fleet_sums_the_stacks():
    stacks = {"us-east": capacity.region_capacity(load_stack_file(US_EAST)),
              "eu-west": capacity.region_capacity(load_stack_file(EU_WEST))}
    fleet = capacity.fleet_json(stacks)
    costs = [capacity.cost_json(p) for p in stacks.values()]
    assert fleet["cost"]["minHourlyUsd"] == round(sum(c["minHourlyUsd"] for c in costs), 2)
    assert fleet["cost"]["maxHourlyUsd"] == round(sum(c["maxHourlyUsd"] for c in costs), 2)
    assert fleet["capacity"]["maxGpus"] == 160 + 32 + 184


@pytest.mark.parametrize("asks,per_node,nodes", [([], 8, 0), ([4, 4], 8, 1), ([4, 4, 4], 8, 2),
                                                 ([1] * 9, 8, 2), ([4, 1, 4, 1, 1, 1, 1, 1], 8, 2)])
def test_nodes_for_packs_replicas(asks, per_node, nodes):
    assert capacity.nodes_for(asks, per_node) == nodes


@given(st.lists(st.sampled_from([1, 2, 4, 8]), max_size=60))
def test_nodes_for_power_of_two_replicas_is_optimal(asks):
    # Sizes that divide the node pack perfectly first-fit decreasing.
    assert capacity.nodes_for(asks, 8) == -(-sum(asks) // 8)


def _tiered(order: list[str], path: Path = US_EAST, **changes) -> capacity.PoolCapacity:
    raw = yaml.safe_load(path.read_text())["config"]["gpu-fleet:fleet"]
    raw["gpuPools"][0].update(capacity=order, **changes)
    return capacity.region_capacity(parse_fleet(raw, str(path), path.parent))[0]


@pytest.mark.parametrize("path,max_nodes", [(US_EAST, 10), (EU_WEST, 12)])
def test_a_tiered_pool_reaches_max_nodes_per_tier_and_says_when_it_may_exceed_it(path, max_nodes):
    # Each tier carries maxNodes: the pool reaches twice that, and runs beyond maxNodes only
    # when its models and warm nodes ask for more.
    pool = _tiered(["on-demand", "spot"], path, maxNodes=max_nodes)
    assert pool.tiers == (("on-demand",), ("spot",))
    assert (pool.reachable_nodes, pool.max_gpus) == (2 * max_nodes, 2 * max_nodes * 8)
    assert pool.nodes_at_max == min(2 * max_nodes, pool.nodes_wanted_at_max + pool.min_nodes) > max_nodes
    (note,) = capacity.shortfalls([pool])
    assert "capacity tiers (on-demand > spot)" in note and "more than maxNodes" in note
    pool_json = capacity.capacity_json([pool])["pools"][0]
    assert (pool_json["capacityTiers"], pool_json["reachableNodes"], pool_json["maxNodes"]) == (
        [["on-demand"], ["spot"]], 2 * max_nodes, max_nodes)
    cost = capacity.cost_json([pool])["pools"][0]
    assert cost["maxHourlyUsd"] == round(pool.nodes_at_max * pool.hourly_usd_per_node, 2)
    assert "spot" in cost["note"]


def test_a_tiered_pool_within_max_nodes_gets_no_note_and_one_nodepool_orders_stay_single():
    assert capacity.shortfalls([_tiered(["on-demand", "spot"], maxNodes=21)]) == []  # 20 wanted + 1 warm
    assert _tiered(["spot", "on-demand"]).tiers == (("spot", "on-demand"),)  # Karpenter's own order
    assert _tiered(["spot", "on-demand"]).reachable_nodes == 20


def test_a_tiered_pool_short_even_across_tiers_names_the_per_tier_fix():
    (warning,) = capacity.shortfalls([_tiered(["on-demand", "spot"], maxNodes=8)])
    assert "reaches 128 (16 x 8)" in warning and "raise gpuPools.h100.maxNodes to 10" in warning
