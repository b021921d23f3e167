"""The region component as ``pulumi up`` would run it: the reference region stacks, planned
by the real program, checked across every resource they register."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
import yaml

from gpu_fleet.components import cache_sizing
from gpu_fleet.components.config import ConfigError, RegionConfig, check_region, load_stack_file
from gpu_fleet import engine
from gpu_fleet.plan import PLACEHOLDER_SECRET, plan_stack

REPO = Path(__file__).resolve().parents[2]
STACKS, PROGRAM = REPO / "stacks", REPO / "__main__.py"
REGIONS = {"us-east": ("aws", "us-east-1"), "eu-west": ("gcp", "europe-west4")}
#: Stateful resources: deleting or replacing one loses data or takes the region down.
STATEFUL = {
    "aws": {"aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:elasticache/replicationGroup:ReplicationGroup",
            "aws:efs/fileSystem:FileSystem", "aws:ec2/vpc:Vpc", "aws:kms/key:Key"},
    "gcp": {"gcp:container/cluster:Cluster", "gcp:container/nodePool:NodePool", "gcp:redis/instance:Instance",
            "gcp:compute/network:Network"},
}


@pytest.fixture(params=sorted(REGIONS))
def region(request, reference_plan):
    return request.param, reference_plan(request.param).recording


def test_every_cloud_resource_uses_the_regions_explicit_provider(region):
    stack, rec = region
    cloud, location = REGIONS[stack]
    (provider,) = [r for r in rec.resources if r.type == f"pulumi:providers:{cloud}"]
    assert provider.plain_inputs["region"] == location
    cloud_resources = [r for r in rec.resources if r.custom and r.type.startswith(f"{cloud}:")]
    assert len(cloud_resources) > 15
    for r in cloud_resources:
        assert rec.provider_of(r) is provider, f"{r.type} {r.name} uses {r.provider or 'the default provider'}"
    other = "gcp" if cloud == "aws" else "aws"
    assert not [r for r in rec.resources if r.type.startswith(f"{other}:")]


def test_every_data_source_goes_through_an_explicit_provider(region):
    stack, rec = region
    # EKS looks up zones and the partition; GKE needs no look-up.
    assert rec.calls or REGIONS[stack][0] == "gcp"
    for call in rec.calls:
        assert call.provider and "::default" not in call.provider, f"{call.token} used the default provider"


def test_every_kubernetes_object_goes_to_the_new_cluster(region):
    _, rec = region
    (k8s_provider,) = [r for r in rec.resources if r.type == "pulumi:providers:kubernetes"]
    objects = [r for r in rec.resources if r.custom and r.type.startswith("kubernetes:")]
    assert len(objects) > 20
    for r in objects:
        assert rec.provider_of(r) is k8s_provider, f"{r.type} {r.name}"
    assert engine.is_secret(k8s_provider.inputs["kubeconfig"])


def test_stateful_resources_are_protected(region):
    stack, rec = region
    cloud, _ = REGIONS[stack]
    for type_ in STATEFUL[cloud]:
        found = rec.of_type(type_)
        assert found, type_
        assert all(r.protect for r in found), [r.name for r in found if not r.protect]


def test_region_outputs(region):
    stack, rec = region
    cloud, location = REGIONS[stack]
    cfg = load_stack_file(f"stacks/Pulumi.{stack}.yaml")
    out = rec.stack_outputs
    assert (out["cloud"], out["location"]) == (cloud, location)
    assert out["clusterName"]
    assert {"kubeconfig", "cacheAuthToken"} <= rec.secret_outputs
    assert [(p["name"], p["gpu"], p["gpusPerNode"], p["maxNodes"]) for p in out["gpuPools"]] == [
        (p.name, p.gpu, p.gpus_per_node, p.max_nodes) for p in cfg.gpu_pools
    ]
    assert [m["name"] for m in out["models"]] == [m.name for m in cfg.models]
    assert all(m["kvCacheTokens"] > m["maxConcurrentSequences"] > 0 for m in out["models"])
    # Memorystore serves TLS on 6378; ElastiCache keeps 6379 with TLS on.
    assert out["cacheEndpoint"] and out["cachePort"] == {"aws": 6379, "gcp": 6378}[cloud]
    assert out["healthPath"] == "/health" and out["domain"] == cfg.entrypoint.domain
    # By default the gateway reads and writes the cache (gpu_fleet.components.gateway); LMCache is off
    # in the reference stacks (benchmarks/cache_bench.py: a Redis read of a chunk's KV is
    # slower than recomputing it). The plan says what the cache holds and warns of nothing.
    assert out["cache"]["role"] == "gateway-response-cache" and out["cache"]["models"] == []
    assert "exact-match response cache" in out["cache"]["gateway"]["stores"]
    assert out["cache"]["gateway"]["responsesHeld"] > 1_000_000
    assert [w for w in rec.warnings if w.startswith("cache (")] == []


def test_the_region_routes_the_api_through_the_gateway(region):
    stack, rec = region
    (ingress,) = [m for r, m in rec.kubernetes_objects() if r.type == "kubernetes:networking.k8s.io/v1:Ingress"]
    routes = {(p["path"], p["backend"]["service"]["port"]["number"]) for rule in ingress["spec"]["rules"]
              for p in rule["http"]["paths"]}
    assert routes == {("/v1", 4000), ("/health", 8000)}
    # Only the gateway's pods may reach the cache, and they all carry its label.
    for r, m in rec.kubernetes_objects():
        if r.type == "kubernetes:apps/v1:Deployment" and m["metadata"]["name"].startswith("vllm-"):
            pod = m["spec"]["template"]
            assert pod["metadata"]["labels"]["gpu-fleet/cache-client"] == "true"
            assert [c["name"] for c in pod["spec"]["containers"]] == ["vllm", "gateway"]


def _stack(tmp_path, edit) -> Path:
    doc = yaml.safe_load((STACKS / "Pulumi.us-east.yaml").read_text())
    edit(doc["config"]["gpu-fleet:fleet"])
    path = tmp_path / "Pulumi.us-east.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _plan(path: Path):
    try:
        return plan_stack(path, PROGRAM).recording
    finally:
        pulumi.runtime.settings.set_root_resource(None)


def test_a_cache_nothing_uses_is_a_plan_warning(tmp_path):
    rec = _plan(_stack(tmp_path, lambda fleet: fleet.update(gateway={"enabled": False})))
    out = rec.stack_outputs["cache"]
    assert out["role"] == "unused" and out["gateway"] is None
    assert [w for w in rec.warnings if w.startswith("cache (")] == [
        f"cache ({out['size']}): provisioned but nothing reads or writes it: turn the gateway on (gateway.enabled: "
        "true, the default) or LMCache for a model (models[].lmcache.enabled: true), or turn the cache off "
        "(cache.enabled: false)"]
    # No pod holds the cache's credentials or the label its egress policy admits.
    for d in rec.of_type("kubernetes:apps/v1:Deployment"):
        pod = d.plain_inputs["spec"]["template"]
        assert "gpu-fleet/cache-client" not in pod["metadata"]["labels"]
        assert "REDIS" not in json.dumps(pod["spec"])


@pytest.mark.parametrize("node_type,lmcache,words", [
    ("cache.r7g.large", [True, False, False], "cache (cache.r7g.large): too small to matter for llama-3-1-70b"),
    ("cache.r7g.4xlarge", [True, True, True], None),
])
def test_the_plan_sizes_the_kv_a_cache_holds(tmp_path, node_type, lmcache, words):
    doc = yaml.safe_load((STACKS / "Pulumi.us-east.yaml").read_text())
    fleet = doc["config"]["gpu-fleet:fleet"]
    fleet["cache"]["nodeType"] = node_type
    for model, on in zip(fleet["models"], lmcache):
        model["lmcache"] = {"enabled": on}
    path = tmp_path / "Pulumi.us-east.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        rec = plan_stack(path, PROGRAM).recording
    finally:
        pulumi.runtime.settings.set_root_resource(None)
    cache_warnings = [w for w in rec.warnings if w.startswith("cache (")]
    assert cache_warnings == ([w for w in rec.warnings if words in w] if words else [])
    assert len(cache_warnings) == (1 if words else 0)
    out = rec.stack_outputs["cache"]
    assert out["role"] == "gateway-response-cache+lmcache-kv-sharing" and out["size"] == node_type
    assert [m["name"] for m in out["models"]] == [m["name"] for m, on in zip(fleet["models"], lmcache) if on]
    assert all((m["fullContexts"] >= cache_sizing.MIN_CONTEXTS) == (words is None) for m in out["models"])
    # Its pods carry the cache's credentials and the label its egress policy admits.
    for m, on in zip(fleet["models"], lmcache):
        pod = rec.named("kubernetes:apps/v1:Deployment", f"us-east-{m['name']}-deployment").plain_inputs["spec"]["template"]
        assert pod["metadata"]["labels"].get("gpu-fleet/cache-client") == "true"  # the gateway's
        assert ("envFrom" in pod["spec"]["containers"][0]) == on  # vLLM's: only with LMCache


def _unmarked(value, needle: str) -> bool:
    """Whether ``needle`` occurs in ``value`` outside a secret wrapper."""
    return needle in json.dumps(engine.masked(value), default=str)


def test_secrets_never_appear_unmarked(region):
    _, rec = region
    token = engine.reveal(rec.stack_outputs["cacheAuthToken"])
    assert token and len(token) >= 16
    for needle in (PLACEHOLDER_SECRET, token):
        for r in rec.resources:
            assert not _unmarked(r.inputs, needle), f"{r.type} {r.name} inputs"
            assert not _unmarked(r.outputs, needle), f"{r.type} {r.name} outputs"
        public = {k: v for k, v in rec.stack_outputs.items() if k not in rec.secret_outputs}
        assert not _unmarked(public, needle)
    # The secret values did reach the Secrets that need them.
    assert any(PLACEHOLDER_SECRET in json.dumps(engine.reveal(r.inputs)) for r in rec.of_type("kubernetes:core/v1:Secret"))


#: What stands for a GPU pool's capacity in each cloud's plan.
GPU_POOL_TYPE = {"us-east": "kubernetes:karpenter.sh/v1:NodePool", "eu-west": "gcp:container/nodePool:NodePool"}
MODEL_COMPONENT = "gpufleet:index:ModelDeployment"


def waiting_on(rec: engine.Recording, roots: set[str]) -> set[str]:
    """URNs of every resource that waits, directly or not, for one of ``roots`` (the
    recorded ``dependsOn``: explicit ones and those from inputs)."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in rec.resources:
            if r.urn not in found and set(r.depends_on) & (roots | found):
                found.add(r.urn)
                changed = True
    return found


def _pools(stack: str, rec: engine.Recording) -> dict[str, engine.ResourceRecord]:
    cfg = load_stack_file(f"stacks/Pulumi.{stack}.yaml")
    return {p.name: rec.named(GPU_POOL_TYPE[stack], f"{stack}-cluster-{'karpenter-' if stack == 'us-east' else ''}{p.name}") for p in cfg.gpu_pools}


def test_each_model_waits_for_its_gpu_pool_and_nothing_else_does(region):
    stack, rec = region
    cfg = load_stack_file(f"stacks/Pulumi.{stack}.yaml")
    pools = _pools(stack, rec)
    models = {m.name: m for m in cfg.models}
    waiting = [r for r in rec.resources if set(r.depends_on) & {p.urn for p in pools.values()}]
    components = [r for r in waiting if r.type == MODEL_COMPONENT]
    assert sorted(r.name for r in components) == sorted(f"{stack}-{m}" for m in models)
    for r in components:
        assert pools[models[r.name.removeprefix(f"{stack}-")].pool].urn in r.depends_on


def _members(rec: engine.Recording, component: engine.ResourceRecord) -> set[str]:
    """A component and everything below it."""
    out = {component.urn}
    changed = True
    while changed:
        changed = False
        for r in rec.resources:
            if r.parent in out and r.urn not in out:
                out.add(r.urn)
                changed = True
    return out


def _awaited(r: engine.ResourceRecord) -> bool:
    return r.plain_inputs.get("metadata", {}).get("annotations", {}).get("pulumi.com/skipAwait") != "true"


def test_only_a_pools_own_models_depend_on_its_gpu_capacity(region):
    """Over the whole recorded dependency graph: what waits for a GPU pool, or for a model
    Deployment (whose readiness needs GPUs), is that pool's models and its warm-capacity
    placeholders (never awaited) — never the cluster, add-ons, monitoring, cache, entry point
    or another pool's models. And nothing else Pulumi awaits needs a GPU."""
    stack, rec = region
    cfg = load_stack_file(f"stacks/Pulumi.{stack}.yaml")
    models = {r.name.removeprefix(f"{stack}-"): r for r in rec.of_type(MODEL_COMPONENT)}
    assert set(models) == {m.name for m in cfg.models}
    warm = rec.named("gpufleet:index:WarmCapacity", f"{stack}-warm-capacity")
    for pool_name, pool in _pools(stack, rec).items():
        own = set().union(*(_members(rec, models[m.name]) for m in cfg.models if m.pool == pool_name))
        deployments = {r.urn for r in rec.of_type("kubernetes:apps/v1:Deployment") if r.urn in own}
        assert deployments, f"no model runs on pool {pool_name}"
        placeholders = {r.urn for r in rec.resources if r.parent == warm.urn and r.name.endswith(f"-{pool_name}")}
        dependents = waiting_on(rec, {pool.urn} | deployments) - {warm.urn} - placeholders
        assert dependents <= own, sorted(rec.by_urn(u).name for u in dependents - own)
        assert not any(_awaited(rec.by_urn(u)) for u in placeholders
                       if rec.by_urn(u).type == "kubernetes:apps/v1:Deployment")
    # Pods needing GPUs: model Deployments (awaited, with the pool's allowance) and the
    # placeholders (not awaited). The models' Services are not awaited either: a Service
    # awaits a ready endpoint, i.e. a GPU, and the entry point names them.
    for r in rec.resources:
        gpu_pod = "nvidia.com/gpu" in json.dumps(r.plain_inputs) and r.type == "kubernetes:apps/v1:Deployment"
        in_model = any(r.urn in _members(rec, m) for m in models.values())
        assert not gpu_pod or in_model or not _awaited(r), r.name
    for m in models.values():
        for r in rec.resources:
            if r.parent == m.urn and r.type == "kubernetes:core/v1:Service":
                assert not _awaited(r), r.name


def test_waiting_on_follows_dependencies_transitively():
    def rec_(name, depends_on=()):
        return engine.ResourceRecord(urn=name, type="t", name=name, custom=True, parent="", provider="",
                                     inputs={}, outputs={}, depends_on=list(depends_on))

    rec = engine.Recording(stack="s", resources=[
        rec_("pool"), rec_("model", ["pool"]), rec_("service", ["model"]), rec_("ingress", ["service"]),
        rec_("monitoring"),
    ])
    assert waiting_on(rec, {"pool"}) == {"model", "service", "ingress"}


def test_the_entrypoint_waits_for_the_load_balancer_controller_on_aws(reference_plan):
    rec = reference_plan("us-east").recording
    controller = rec.named("kubernetes:helm.sh/v3:Release", "us-east-cluster-load-balancer-controller")
    entrypoint = rec.named("gpufleet:index:Entrypoint", "us-east-entrypoint")
    assert controller.urn in entrypoint.depends_on


def test_with_enable_apis_the_cache_and_entrypoint_wait_for_the_project_services(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((repo / "stacks" / "Pulumi.eu-west.yaml").read_text())
    doc["config"]["gpu-fleet:fleet"]["cluster"]["enableApis"] = True
    path = tmp_path / "Pulumi.eu-west.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        rec = plan_stack(path, repo / "__main__.py").recording
    finally:
        pulumi.runtime.settings.set_root_resource(None)
    apis = {r.urn for r in rec.of_type("gcp:projects/service:Service")}
    assert len(apis) == 7
    for component in ("gpufleet:index:GcpCache", "gpufleet:index:Entrypoint"):
        (comp,) = rec.of_type(component)
        assert apis <= set(comp.depends_on), component


def _in_code(edit) -> RegionConfig:
    """The us-east config as a program would build it in code (only the fields the file sets)."""
    raw = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml").model_dump(by_alias=True, exclude_unset=True)
    edit(raw)
    return RegionConfig.model_validate(raw)


def test_a_region_config_built_in_code_gets_the_stack_files_checks(fleet):
    from gpu_fleet.components.region import Region

    bad = _in_code(lambda raw: raw["gpuPools"][0].update(gpusPerNode=3))
    args = {"config": bad, "hugging_face_token": pulumi.Output.secret("hf"), "api_key": pulumi.Output.secret("k")}
    with pytest.raises(ConfigError) as raised:
        fleet.run(lambda: Region("edge", args))
    assert str(raised.value) == ("Region 'edge': gpuPools[0].gpusPerNode: h100 with 3 GPUs per node is not offered "
                                 "in aws us-east-1; valid GPUs per node: 8 (p5.48xlarge)")


def test_a_valid_config_built_in_code_is_checked_once(fleet):
    good = _in_code(lambda raw: None)
    assert not good._checked
    assert check_region(good, "code") is good and good._checked
    assert load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")._checked  # a stack file's is checked already
