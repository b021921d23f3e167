"""Karpenter's custom resources and policies, checked against Karpenter 1.14.1's own CRDs.

The API server prunes unknown fields of custom resources silently, so a misspelt NodePool
field would never error: these tests validate the rendered NodePool and EC2NodeClass
against the CRDs' ``openAPIV3Schema`` (from ``$GPU_FLEET_REFERENCE_DIR/crds/karpenter-1.14.1``,
default ``<repo>/../shared/reference``) with unknown fields made errors.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from gpu_fleet.components import karpenter, warm_capacity
from gpu_fleet.components.config import load_stack_file, parse_fleet

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("GPU_FLEET_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
CRDS = REFERENCE / "crds" / "karpenter-1.14.1"
US_EAST = REPO / "stacks" / "Pulumi.us-east.yaml"

needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"Karpenter 1.14.1 CRDs not found at {CRDS} "
                                                           "(set GPU_FLEET_REFERENCE_DIR)")


def strict(schema: dict) -> dict:
    """``schema`` with unknown properties rejected wherever the API server would prune them."""
    schema = copy.deepcopy(schema)

    def walk(node: dict) -> None:
        if not isinstance(node, dict):
            return
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    return schema


def crd_schema(file: str) -> dict:
    crd = yaml.safe_load((CRDS / file).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(version["schema"]["openAPIV3Schema"])


def _cfg(**pool_changes):
    raw = yaml.safe_load(US_EAST.read_text())["config"]["gpu-fleet:fleet"]
    raw["gpuPools"][0].update(pool_changes)
    return parse_fleet(raw, str(US_EAST), US_EAST.parent)


def node_class(pool) -> dict:
    spec = karpenter.node_class_spec(
        pool, role="us-east-cluster-nodes", subnet_ids=["subnet-0a", "subnet-0b"],
        security_group_ids=["sg-0a", "sg-0b"], root_throughput_mibps=1000, root_iops=4000, imds_hop_limit=1,
        tags={"Name": "us-east-cluster-h100", "gpu-fleet/pool": pool.name},
    )
    return {"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": pool.name},
            "spec": spec}


def node_pools(cfg, pool) -> list[dict]:
    return [{"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec}
            for name, spec in karpenter.node_pool_specs(cfg, pool, pool.name).items()]


def node_pool(cfg, pool) -> dict:
    (only,) = node_pools(cfg, pool)
    return only


CONFIGS = {
    "reference": {},
    "reserved-spot-on-demand": {"capacity": ["reserved", "spot", "on-demand"],
                                "reservations": ["cr-0123456789abcdef0"]},
    "spot": {"capacity": ["spot"], "minNodes": 0},
    "on-demand-then-spot": {"capacity": ["on-demand", "spot"]},
    "on-demand-reserved-spot": {"capacity": ["on-demand", "reserved", "spot"],
                                "reservations": ["cr-0123456789abcdef0"]},
}


@needs_crds
@pytest.mark.parametrize("changes", CONFIGS.values(), ids=list(CONFIGS))
def test_rendered_resources_match_the_crds(changes):
    cfg = _cfg(**changes)
    for pool in cfg.gpu_pools:
        for rendered in node_pools(cfg, pool):
            jsonschema.validate(rendered, crd_schema("karpenter.sh_nodepools.yaml"))
        jsonschema.validate(node_class(pool), crd_schema("karpenter.k8s.aws_ec2nodeclasses.yaml"))


@needs_crds
def test_an_unknown_or_misspelt_field_fails():
    cfg = load_stack_file(US_EAST)
    pool = cfg.gpu_pools[0]
    bad = node_pool(cfg, pool)
    bad["spec"]["disruption"]["consolidateAftr"] = "15m"
    with pytest.raises(jsonschema.ValidationError, match="consolidateAftr"):
        jsonschema.validate(bad, crd_schema("karpenter.sh_nodepools.yaml"))
    bad = node_class(pool)
    bad["spec"]["blockDeviceMappings"][0]["ebs"]["throughputMibps"] = 1000
    with pytest.raises(jsonschema.ValidationError, match="throughputMibps"):
        jsonschema.validate(bad, crd_schema("karpenter.k8s.aws_ec2nodeclasses.yaml"))
    bad = node_class(pool)
    bad["spec"]["capacityReservationSelectorTerms"] = [{"id": "h100-block"}]
    with pytest.raises(jsonschema.ValidationError, match="h100-block"):
        jsonschema.validate(bad, crd_schema("karpenter.k8s.aws_ec2nodeclasses.yaml"))


def test_node_pool_limits_labels_taint_and_disruption():
    cfg = load_stack_file(US_EAST)
    h100, a100 = cfg.gpu_pools
    spec = node_pool(cfg, h100)["spec"]
    assert spec["limits"] == {"nvidia.com/gpu": 160}  # maxNodes 20 x 8
    assert "weight" not in spec  # one NodePool: nothing to order
    assert node_pool(cfg, a100)["spec"]["limits"] == {"nvidia.com/gpu": 32}
    assert spec["template"]["metadata"]["labels"] == {"gpu-fleet/pool": "h100", "gpu-fleet/gpu": "h100"}
    assert spec["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    requirements = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
    assert requirements["node.kubernetes.io/instance-type"] == ["p5.48xlarge"]
    assert requirements["karpenter.sh/capacity-type"] == ["on-demand"]
    # No zone requirement: Karpenter picks among the subnets' zones where EC2 offers p5.
    assert "topology.kubernetes.io/zone" not in requirements
    assert spec["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "15m",
                                  "budgets": [{"nodes": "1"}]}


def test_node_class_carries_the_launch_template_settings_and_the_pinned_ami():
    pool = _cfg(capacity=["reserved", "on-demand"], reservations=["cr-0123456789abcdef0"]).gpu_pools[0]
    spec = node_class(pool)["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@v20260714"}]
    assert spec["metadataOptions"] == {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                                       "httpPutResponseHopLimit": 1, "httpTokens": "required"}
    assert spec["blockDeviceMappings"][0]["rootVolume"] is True
    assert spec["capacityReservationSelectorTerms"] == [{"id": "cr-0123456789abcdef0"}]


def test_controller_policies_scope_ec2_to_the_cluster_and_read_offerings():
    docs = karpenter.controller_policies("aws", "us-east-1", "123456789012", "us-east-cluster",
                                         "arn:aws:iam::123456789012:role/nodes", "arn:aws:sqs:us-east-1:1:q")
    assert set(docs) == {"node-lifecycle", "iam-integration", "eks-integration", "interruption",
                         "resource-discovery"}
    for doc in docs.values():
        assert len(str(doc)) < 6144  # an IAM managed policy's size limit
    deletion = next(s for s in docs["node-lifecycle"]["Statement"] if s["Sid"] == "AllowScopedDeletion")
    assert deletion["Condition"]["StringEquals"] == {"aws:ResourceTag/kubernetes.io/cluster/us-east-cluster": "owned"}
    reads = next(s for s in docs["resource-discovery"]["Statement"] if s["Sid"] == "AllowRegionalReadActions")
    assert "ec2:DescribeInstanceTypeOfferings" in reads["Action"]
    passrole = docs["iam-integration"]["Statement"][0]
    assert passrole["Resource"] == "arn:aws:iam::123456789012:role/nodes"
    assert docs["interruption"]["Statement"][0]["Resource"] == "arn:aws:sqs:us-east-1:1:q"


def test_queue_accepts_eventbridge_over_tls_only():
    policy = karpenter.queue_policy("arn:aws:sqs:us-east-1:1:q")
    allow, deny = policy["Statement"]
    assert allow["Principal"]["Service"] == ["events.amazonaws.com", "sqs.amazonaws.com"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": False}}
    assert len(karpenter.INTERRUPTION_EVENTS) == 5


def test_helm_values_are_paths_the_chart_reads():
    refs = REFERENCE / "charts" / "karpenter-1.14.1-template-refs.txt"
    if not refs.exists():
        pytest.skip(f"{refs} not found (set GPU_FLEET_REFERENCE_DIR)")
    read = set(refs.read_text().split())

    def paths(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            p = f"{prefix}{k}"
            out += paths(v, p + ".") if isinstance(v, dict) and p not in read else [p]
        return out

    values = karpenter.helm_values("c", "https://e", "q")
    assert set(paths(values)) <= read, set(paths(values)) - read


def _capacity_types(rendered: dict) -> list[str]:
    (types,) = [r["values"] for r in rendered["spec"]["template"]["spec"]["requirements"]
                if r["key"] == "karpenter.sh/capacity-type"]
    return types


@pytest.mark.parametrize("capacity,expected", [
    (["on-demand"], [("h100", ["on-demand"], None)]),
    (["spot", "on-demand"], [("h100", ["spot", "on-demand"], None)]),  # Karpenter's own order
    (["on-demand", "spot"], [("h100-on-demand", ["on-demand"], 20), ("h100-spot", ["spot"], 10)]),
    (["spot", "reserved"], [("h100-spot", ["spot"], 20), ("h100-reserved", ["reserved"], 10)]),
    (["on-demand", "reserved", "spot"], [("h100-on-demand", ["on-demand"], 30),
                                         ("h100-reserved", ["reserved"], 20), ("h100-spot", ["spot"], 10)]),
])
def test_an_order_karpenter_cannot_honour_in_one_node_pool_becomes_weighted_tiers(capacity, expected):
    changes = {"capacity": capacity}
    if "reserved" in capacity:
        changes["reservations"] = ["cr-0123456789abcdef0"]
    cfg = _cfg(**changes)
    rendered = node_pools(cfg, cfg.gpu_pools[0])
    assert [(r["metadata"]["name"], _capacity_types(r), r["spec"].get("weight")) for r in rendered] == expected
    for r in rendered:
        spec = r["spec"]
        # Every tier may carry the whole pool (fallback), lands on the pool's labels and taint,
        # and launches from the pool's one EC2NodeClass.
        assert spec["limits"] == {"nvidia.com/gpu": 160}
        assert spec["template"]["metadata"]["labels"] == {"gpu-fleet/pool": "h100", "gpu-fleet/gpu": "h100"}
        assert spec["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present",
                                                       "effect": "NoSchedule"}]
        assert spec["template"]["spec"]["nodeClassRef"]["name"] == "h100"
    # Warm placeholders select and tolerate their way onto every tier (the weights pick one).
    placeholder = warm_capacity.placeholder_deployment_spec("aws", cfg.gpu_pools[0])["template"]["spec"]
    for r in rendered:
        template = r["spec"]["template"]
        assert placeholder["nodeSelector"].items() <= template["metadata"]["labels"].items()
        for taint in template["spec"]["taints"]:
            assert any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in placeholder["tolerations"])
