"""GPU capacity and cost per pool (components.capacity), from the config and the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from components import capacity
from components.config import load_stack_file, parse_fleet

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
