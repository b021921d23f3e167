"""Stack config validation: every bad input gets one line naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from gpu_fleet.components.config import ConfigError, GlobalConfig, RegionConfig, load_stack_file, parse_fleet

REPO = Path(__file__).resolve().parents[2]
SOURCE = "stacks/Pulumi.eu-west.yaml"


def _raw(stack: str) -> dict:
    doc = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return copy.deepcopy(doc["config"]["gpu-fleet:fleet"])


def _errors(raw: dict, source: str = SOURCE) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_fleet(raw, source, REPO / "stacks")
    return str(exc.value).splitlines()


@pytest.mark.parametrize("stack,kind", [("us-east", RegionConfig), ("eu-west", RegionConfig), ("global", GlobalConfig)])
def test_reference_stacks_are_valid(stack, kind):
    assert isinstance(load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml"), kind)


def test_defaults_are_the_seeds_hpa():
    model = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml").models[0]
    a = model.autoscaling
    assert (a.min_replicas, a.max_replicas, a.gpu_utilization_target, a.pending_requests_target) == (2, 20, 75, 10)
    assert a.scale_up.stabilization_window_seconds == 60
    assert [(p.type, p.value, p.period_seconds) for p in a.scale_up.policies] == [("Pods", 2, 60)]
    assert a.scale_down.stabilization_window_seconds == 300
    assert [(p.type, p.value, p.period_seconds) for p in a.scale_down.policies] == [("Pods", 1, 120)]


def _set(raw: dict, path: str, value) -> dict:
    """Set a dotted path (with [i] indexes) in ``raw``; value None deletes the key."""
    node = raw
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if value is None:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return raw


# (stack, field to change, new value, expected field path in the message, expected words)
BAD_INPUTS = [
    ("eu-west", "gpuPools[0].gpusPerNode", 3, "gpuPools[0].gpusPerNode", "a3-highgpu-8g has 8 GPUs per node, not 3; h100 shapes in europe-west4: 1 (a3-highgpu-1g), 2 (a3-highgpu-2g)"),
    ("us-east", "gpuPools[0].gpusPerNode", 3, "gpuPools[0].gpusPerNode", "h100 with 3 GPUs per node is not offered in aws us-east-1"),
    ("eu-west", "gpuPools[0].gpusPerNode", 0, "gpuPools[0].gpusPerNode", "greater than or equal to 1"),
    ("eu-west", "gpuPools[0].gpu", "h200", "gpuPools[0].gpu", "'h100', 'a100-80gb' or 'a100-40gb'"),
    ("eu-west", "gpuPools[0].minNodes", 24, "gpuPools[0].minNodes", "above maxNodes 23"),
    ("eu-west", "gpuPools[0].gpuPerNode", 8, "gpuPools[0].gpuPerNode", "unknown key; did you mean 'gpusPerNode'?"),
    ("eu-west", "gpuPools[0].capacity", ["spot"], None, None),
    ("eu-west", "gpuPools[0].capacity", [], "gpuPools[0].capacity", "at least 1 item"),
    ("eu-west", "gpuPools[0].capacity", ["on-demand", "on-demand"], "gpuPools[0].capacity", "lists a capacity type twice"),
    ("eu-west", "gpuPools[0].capacity", ["preemptible"], "gpuPools[0].capacity[0]", "'reserved', 'on-demand' or 'spot'"),
    ("eu-west", "gpuPools[0].capacity", ["reserved", "on-demand"], "gpuPools[0].reservations", "name the reservations"),
    ("eu-west", "gpuPools[0].reservations", ["h100-block"], "gpuPools[0].capacity", "does not list reserved"),
    ("eu-west", "gpuPools[0].capacity", ["on-demand", "spot"], None, None),
    ("us-east", "gpuPools[0].capacity", ["on-demand", "spot"], None, None),
    ("us-east", "gpuPools[0].provisioningSeconds", 10, "gpuPools[0].provisioningSeconds", "greater than or equal to 60"),
    ("eu-west", "gpuPools[0].zones", ["europe-west4-a"], "gpuPools[0].zones[0]", "does not offer the pool's machine type; zones that do: europe-west4-b, europe-west4-c"),
    ("eu-west", "cloud", "azure", "cloud", "'aws' or 'gcp'"),
    ("eu-west", "location", "eu-west", "location", "not a gcp region name"),
    ("eu-west", "location", "asia-south1", "location", "h100 x8 is offered in: asia-northeast1, asia-southeast1, australia-southeast1, europe-west1"),
    ("eu-west", "project", None, "project", "required on gcp"),
    ("eu-west", "models[0].pool", "b200", "models[0].pool", "no GPU pool named 'b200'; pools: h100"),
    ("eu-west", "models[0].revision", "main", "models[0].revision", "moving branch"),
    ("eu-west", "models[0].autoscaling", {"minReplicas": 5, "maxReplicas": 3}, "models[0].autoscaling.minReplicas", "above maxReplicas 3"),
    ("eu-west", "models[0].autoscaling", {"scaleUp": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pod", "value": 2, "periodSeconds": 60}]}},
     "models[0].autoscaling.scaleUp.policies[0].type", "'Pods' or 'Percent'"),
    ("eu-west", "network.podsCidr", "10.50.0.0/16", "network.podsCidr", "overlaps network.cidr"),
    ("eu-west", "cluster.publicAccessCidrs", ["0.0.0.0/0"], "cluster.publicAccessCidrs", "public to everyone"),
    ("eu-west", "entrypoint", None, "entrypoint", "required"),
    ("us-east", "gpuPools[0].zones", ["us-east-1a"], "gpuPools[0].zones", "only used on gcp"),
    ("us-east", "cluster.enableApis", True, "cluster.enableApis", "only used on gcp"),
    ("eu-west", "gpuPools[0].zones", ["europe-west1-b"], "gpuPools[0].zones[0]", "not a zone of europe-west4"),
    ("eu-west", "kind", "regional", "kind", "must be one of: region, global"),
]


@pytest.mark.parametrize("stack,field,value,path,words", [b for b in BAD_INPUTS if b[3]], ids=lambda v: str(v)[:40])
def test_bad_input_names_file_and_field(stack, field, value, path, words):
    source = f"stacks/Pulumi.{stack}.yaml"
    lines = _errors(_set(_raw(stack), field, value), source)
    matching = [line for line in lines if line.startswith(f"{source}: {path}: ")]
    assert matching, lines
    assert any(words in line for line in matching), lines


@pytest.mark.parametrize("stack,capacity", [
    ("us-east", ["reserved", "spot", "on-demand"]), ("us-east", ["reserved", "on-demand"]),
    ("us-east", ["spot", "on-demand"]), ("eu-west", ["reserved", "on-demand"]), ("eu-west", ["spot"]),
    # Orders one NodePool / node pool cannot honour: one per capacity type, tried in order.
    ("us-east", ["on-demand", "spot"]), ("us-east", ["on-demand", "reserved", "spot"]),
    ("eu-west", ["on-demand", "spot"]), ("eu-west", ["reserved", "on-demand", "spot"]),
    ("eu-west", ["spot", "on-demand"]),
])
def test_capacity_orders_each_cloud_can_honour(stack, capacity):
    raw = _set(_raw(stack), "gpuPools[0].capacity", capacity)
    if "reserved" in capacity:
        raw["gpuPools"][0]["reservations"] = ["cr-0123456789abcdef0" if stack == "us-east" else "h100-block"]
    assert parse_fleet(raw, SOURCE, REPO / "stacks").gpu_pools[0].capacity == capacity


def test_aws_reservations_are_capacity_reservation_ids():
    raw = _set(_raw("us-east"), "gpuPools[0].capacity", ["reserved", "on-demand"])
    raw["gpuPools"][0]["reservations"] = ["h100-block"]
    assert (f"{SOURCE}: gpuPools[0].reservations: 'h100-block' is not an EC2 capacity reservation ID (cr-...)"
            in _errors(raw))


def test_pool_defaults_are_on_demand_with_a_15_minute_provisioning_allowance():
    pool = parse_fleet(_raw("eu-west"), SOURCE).gpu_pools[0]
    assert (pool.capacity, pool.reservations, pool.provisioning_seconds) == (["on-demand"], [], 900)


def test_every_problem_is_reported_at_once():
    raw = _raw("eu-west")
    raw["gpuPools"][0]["gpusPerNode"] = 3
    raw["models"][0]["pool"] = "missing"
    raw["project"] = None
    raw.pop("project")
    lines = _errors(raw)
    assert {line.split(": ")[1] for line in lines} >= {"project", "gpuPools[0].gpusPerNode", "models[0].pool"}


def test_message_is_one_line_per_problem_without_traceback():
    raw = _set(_raw("eu-west"), "gpuPools[0].gpusPerNode", "eight")
    lines = _errors(raw)
    assert lines == [f"{SOURCE}: gpuPools[0].gpusPerNode: Input should be a valid integer, unable to parse string as an integer"]


def test_not_a_mapping():
    assert _errors("fleet") == [f"{SOURCE}: fleet: must be a mapping with a 'kind' (region or global); got str"]


def test_stack_file_without_the_key(tmp_path):
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("config:\n  aws:region: us-east-1\n")
    with pytest.raises(ConfigError) as exc:
        load_stack_file(path)
    assert str(exc.value) == f"{path}: fleet: missing: put the stack's settings under 'gpu-fleet:fleet'"


def test_stack_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("config: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_stack_file(path)
    message = str(exc.value)
    # Where the unclosed sequence starts, not where the parser gave up.
    assert message.startswith(f"{path}: config: cannot read: line 1: while parsing a flow sequence: ")
    assert message.endswith("(line 2)")
    assert "\n" not in message


@pytest.mark.parametrize("field,value,path,words", [
    ("regions", ["us-east"], "regions", "at least two region stacks"),
    ("regions", ["us-east", "ap-south"], "regions[1]", "no region stack 'ap-south'"),
    ("routing", {"dns": {"hostedZoneName": "example.com", "healthCheckIntervalSeconds": 15}},
     "routing.dns.healthCheckIntervalSeconds", "Route 53 accepts 10 or 30"),
    ("routing", {"dns": {"hostedZoneName": "example.com", "failureThreshold": 11}},
     "routing.dns.failureThreshold", "Route 53 accepts 1 to 10"),
    ("routing", {"dns": {}}, "routing.dns", "exactly one of hostedZoneId and hostedZoneName"),
])
def test_bad_global_input(field, value, path, words):
    source = "stacks/Pulumi.global.yaml"
    lines = _errors(_set(_raw("global"), field, value), source)
    assert any(line.startswith(f"{source}: {path}: ") and words in line for line in lines), lines


def test_gke_tiers_need_compute_classes_and_short_pool_names():
    raw = _set(_raw("eu-west"), "gpuPools[0].capacity", ["on-demand", "spot"])
    raw["cluster"]["kubernetesVersion"] = "1.30"
    assert any("gpuPools[0].capacity:" in line and "GKE 1.30.3-gke.1451000" in line and "1.31 or later" in line
               for line in _errors(raw)), _errors(raw)
    raw = _set(_raw("eu-west"), "gpuPools[0].capacity", ["spot", "on-demand"])
    long_name = "h" * 31
    raw["gpuPools"][0]["name"] = long_name
    for model in raw["models"]:
        model["pool"] = long_name
    assert any(line.startswith(f"{SOURCE}: gpuPools[0].name: ") and "at most 30 characters" in line
               for line in _errors(raw)), _errors(raw)
    # The same name is fine for a pool that is one node pool.
    raw["gpuPools"][0]["capacity"] = ["spot"]
    assert parse_fleet(raw, SOURCE, REPO / "stacks").gpu_pools[0].name == long_name
