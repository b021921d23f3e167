"""ModelDeployment: the pure spec builders, then the component under the recording mocks."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from urllib.parse import parse_qs

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from gpu_fleet.components import model_deployment as md
from gpu_fleet.components import sizing
from gpu_fleet.components.config import parse_fleet, pool_offering
from gpu_fleet.components.contract import MODEL_LABEL, VLLM_POD_LABELS
from gpu_fleet.components.monitoring_rules import ModelRef
from gpu_fleet import manifests
from gpu_fleet.engine import Recording, is_secret, reveal

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SECRET = "kubernetes:core/v1:Secret"
API_KEY = "sk-fleet-test-3b1f0c9e7d2a4c58"
HF_TOKEN = "hf_test_9c2d7e4a1b6f3e80"


def _raw(stack: str) -> dict:
    return copy.deepcopy(yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())["config"]["gpu-fleet:fleet"])


def _cfg(stack: str = "us-east", edit=None):
    raw = _raw(stack)
    if edit:
        edit(raw)
    return parse_fleet(raw, f"stacks/Pulumi.{stack}.yaml", STACKS)


def _parts(cfg, index: int):
    model = cfg.models[index]
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    return model, pool, pool_offering(cfg, pool).shape


def _run(fleet, cfg, *, stack="us-east", storage_class="efs-weights", cache=True, service_annotations=None,
         gateway=False) -> Recording:
    """The region's wiring in miniature: namespace, serving Secret (secret values), models."""

    def program():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
        ns = k8s.core.v1.Namespace("serving", metadata={"name": cfg.namespace}, opts=opts)
        secret = k8s.core.v1.Secret(
            "vllm-secrets",
            metadata={"name": "vllm-secrets", "namespace": ns.metadata["name"]},
            string_data={"HF_TOKEN": pulumi.Output.secret(HF_TOKEN), "VLLM_API_KEY": pulumi.Output.secret(API_KEY)},
            opts=opts,
        )
        models = []
        for i, m in enumerate(cfg.models):
            model, pool, shape = _parts(cfg, i)
            args = {
                "model": model, "pool": pool, "shape": shape,
                "namespace": ns.metadata["name"],
                "secret_name": secret.metadata["name"],
                "cache_secret_name": "redis-connection" if cache else None,
                "weight_cache_storage_class": storage_class,
            }
            if service_annotations is not None:
                args["service_annotations"] = service_annotations
            if gateway:
                args["gateway"] = cfg.gateway
            models.append(md.ModelDeployment(f"{stack}-{m.name}", args, opts=opts))
        pulumi.export("models", [m.summary for m in models])
        pulumi.export("services", [m.service_name for m in models])

    return fleet.run(program, stack=stack)


@pytest.fixture
def us_east(fleet) -> Recording:
    return _run(fleet, _cfg())


# --------------------------------------------------------------------------- names and labels


def test_labels_follow_the_fleet_contract():
    model = _cfg().models[1]
    assert md.deployment_name(model) == ModelRef(name="llama-3-1-8b").deployment == "vllm-llama-3-1-8b"
    assert md.selector_labels(model) == {"app.kubernetes.io/name": "vllm", "gpu-fleet/model": "llama-3-1-8b"}
    assert md.selector_labels(model) == {**VLLM_POD_LABELS, MODEL_LABEL: model.name}
    assert md.labels(model) == {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": "llama-3-1-8b",
        "app.kubernetes.io/version": "v0.33.0",
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "gpu-fleet",
        "app.kubernetes.io/managed-by": "pulumi",
        "gpu-fleet/model": "llama-3-1-8b",
    }
    # The selector never includes what changes with the image.
    assert "app.kubernetes.io/version" not in md.selector_labels(model)


@pytest.mark.parametrize("image,version", [
    ("vllm/vllm-openai:v0.11.0", "v0.11.0"),
    ("registry.example.com:5000/team/vllm:v0.11.0-cu128", "v0.11.0-cu128"),
    ("vllm/vllm-openai@sha256:0123456789abcdef0123", "sha256-0123456789ab"),
    ("registry.example.com:5000/vllm", "latest"),
])
def test_image_version_is_a_valid_label_value(image, version):
    assert md.image_version(image) == version


# --------------------------------------------------------------------------- container


def test_vllm_args_serve_the_openai_api_from_the_config():
    cfg = _cfg(edit=lambda r: r["models"][0].update(quantization="fp8", extraArgs=["--enable-prefix-caching"]))
    assert md.vllm_args(cfg.models[0]) == [
        "--model", "meta-llama/Llama-3.1-70B-Instruct",
        "--revision", "1605565b47bb9346c5515c34102e054115b4f98b",
        "--served-model-name", "llama-3-1-70b",
        "--tensor-parallel-size", "4",
        "--max-model-len", "16384",
        "--dtype", "bfloat16",
        "--quantization", "fp8",
        "--gpu-memory-utilization", "0.9",
        "--port", "8000",
        "--download-dir", "/models-cache/hub",
        "--shutdown-timeout", "110",
        "--enable-prefix-caching",
    ]


def test_every_flag_the_deployment_sets_is_refused_in_extra_args():
    cfg = _cfg(edit=lambda r: r["models"][0].update(quantization="fp8", lmcache={"enabled": True}))
    flags = {a for a in md.vllm_args(cfg.models[0]) if a.startswith("--")}
    assert flags <= set(sizing.SERVER_FLAGS)


def test_secrets_are_referenced_never_inlined():
    model = _cfg().models[1]
    env = md.container_env(model, "vllm-secrets", "redis-connection", "aws")
    by_name = {e["name"]: e for e in env}
    assert by_name["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "vllm-secrets", "key": "HF_TOKEN"}}}
    assert by_name["VLLM_API_KEY"] == {"name": "VLLM_API_KEY",
                                       "valueFrom": {"secretKeyRef": {"name": "vllm-secrets", "key": "VLLM_API_KEY"}}}
    assert by_name["HF_HOME"]["value"] == md.CACHE_MOUNT
    assert not any("LMCACHE" in name for name in by_name)


@pytest.mark.parametrize("cloud,ca", [("aws", {}), ("gcp", {"ssl_ca_certs": ["/etc/redis-tls/ca.crt"]})])
def test_lmcache_is_wired_to_the_regional_redis(cloud, ca):
    model = _cfg(edit=lambda r: r["models"][1].update(lmcache={"enabled": True, "chunkSize": 512})).models[1]
    env = {e["name"]: e.get("value") for e in md.container_env(model, "vllm-secrets", "redis-connection", cloud)}
    base, _, query = env["LMCACHE_REMOTE_URL"].partition("?")
    assert base == "$(REDIS_URL)"  # expanded from the cache Secret inside the pod
    # Timeouts keep a dead cache from stalling requests (LMCache turns the errors into misses).
    assert parse_qs(query) == {"socket_connect_timeout": ["1"], "socket_timeout": ["2"], **ca}
    assert (env["LMCACHE_CHUNK_SIZE"], env["LMCACHE_LOCAL_CPU"], env["LMCACHE_MAX_LOCAL_CPU_SIZE"]) == ("512", "True", "5.0")
    assert md.vllm_args(model)[-2:] == ["--kv-transfer-config", '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}']
    assert md.serving_image(model) == "lmcache/vllm-openai:v0.3.5"
    with pytest.raises(ValueError, match="LMCache needs the regional cache"):
        md.container_env(model, "vllm-secrets", None, cloud)


def test_resources_request_the_tensor_parallel_gpus_and_a_node_share():
    cfg = _cfg()
    model, _, shape = _parts(cfg, 0)  # 70B, TP 4 on p5.48xlarge (192 vCPU, 2048 GiB, 8 GPUs)
    r = md.container_resources(shape, model.tensor_parallel_size)
    assert r["requests"] == r["limits"] == {"cpu": "94000m", "memory": "968Gi", "nvidia.com/gpu": "4"}


def test_probes_authenticate_from_the_environment_and_cover_the_budget():
    p = md.probes(2509)
    for kind in ("startupProbe", "readinessProbe"):
        command = p[kind]["exec"]["command"]
        assert command[:2] == ["python3", "-c"]
        assert "/v1/models" in command[2] and "os.environ['VLLM_API_KEY']" in command[2]
        compile(command[2], "probe", "exec")  # valid Python
    assert p["startupProbe"]["failureThreshold"] * p["startupProbe"]["periodSeconds"] >= 2509
    assert p["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert not any("httpHeaders" in probe.get("httpGet", {}) for probe in p.values())


def test_budgets_and_timeouts_grow_with_the_model():
    cfg = _cfg()
    s70, s8 = (sizing.size_model(*_parts(cfg, i)[::2]) for i in (0, 1))
    b70, b8 = md.startup_budget_seconds(s70), md.startup_budget_seconds(s8)
    assert b70 > b8
    for s, budget in ((s70, b70), (s8, b8)):
        assert md.rollout_timeout_seconds(s, 1, 900, budget) > budget
        assert md.rollout_timeout_seconds(s, 2, 900, budget) > md.rollout_timeout_seconds(s, 1, 900, budget)


@pytest.mark.parametrize("storage_class,expected", [
    ("premium-rwx", 2560),    # GKE Filestore Basic SSD minimum
    ("efs-weights", 1024),    # elastic: a fixed nominal request
    ("custom-rwx", 263),      # 2 x 141.1 GB in GiB, rounded up
])
def test_weight_cache_size(storage_class, expected):
    s70 = sizing.size_model(*_parts(_cfg(), 0)[::2])
    assert md.weight_cache_size_gi(s70, storage_class) == expected
    assert md.pvc_spec(s70, storage_class)["resources"]["requests"]["storage"] == f"{expected}Gi"


# --------------------------------------------------------------------------- the component


def test_creates_the_objects_with_the_contract_names(us_east):
    for model, name in (("llama-3-1-70b", "vllm-llama-3-1-70b"), ("llama-3-1-8b", "vllm-llama-3-1-8b")):
        component = us_east.named("gpufleet:index:ModelDeployment", f"us-east-{model}")
        children = {(r.type, r.plain_inputs["metadata"]["name"]) for r in us_east.children_of(component)}
        assert children == {(DEPLOYMENT, name), (SERVICE, name), (PDB, name), (HPA, name), (PVC, f"{name}-weights")}
        for child in us_east.children_of(component):
            assert child.plain_inputs["metadata"]["namespace"] == "llm-serving"
            assert child.plain_inputs["metadata"]["labels"]["gpu-fleet/model"] == model
            provider = us_east.provider_of(child)
            assert provider is not None and provider.name == "k8s"


def test_every_object_passes_strict_validation(fleet):
    for stack, storage_class in (("us-east", "efs-weights"), ("eu-west", "premium-rwx")):
        lm = _cfg(stack, edit=lambda r: r["models"][1].update(lmcache={"enabled": True}, quantization="fp8"))
        rec = _run(fleet, lm, stack=stack, storage_class=storage_class, service_annotations={"cloud.google.com/neg": '{"ingress": true}'})
        objects = rec.kubernetes_objects()
        # Namespace and Secret, then Deployment, Service, PDB, HPA and weight cache PVC per model.
        assert len(objects) == 2 + 5 * len(lm.models)
        for r, manifest in objects:
            checked, errors = manifests.validate(manifest)
            assert checked and errors == [], (r.name, errors)


def test_hpa_is_the_seeds_by_default(us_east):
    hpa = us_east.named(HPA, "us-east-llama-3-1-70b-hpa").plain_inputs
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-llama-3-1-70b"},
        "minReplicas": 2,
        "maxReplicas": 20,
        "metrics": [
            {"type": "External", "external": {
                "metric": {"name": "dcgm_gpu_utilization", "selector": {"matchLabels": {"deployment": "vllm-llama-3-1-70b"}}},
                "target": {"type": "AverageValue", "averageValue": "75"}}},
            {"type": "External", "external": {
                "metric": {"name": "llm_pending_requests", "selector": {"matchLabels": {"deployment": "vllm-llama-3-1-70b"}}},
                "target": {"type": "AverageValue", "averageValue": "10"}}},
        ],
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
        },
    }
    assert manifests.hpa_enum_errors({"spec": hpa["spec"]}) == []


def test_autoscaling_overrides_flow_through(fleet):
    def edit(raw):
        raw["models"][1]["autoscaling"] = {
            "minReplicas": 3, "maxReplicas": 8, "gpuUtilizationTarget": 70, "pendingRequestsTarget": 5,
            "scaleUp": {"stabilizationWindowSeconds": 30, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}]},
        }

    rec = _run(fleet, _cfg(edit=edit))
    spec = rec.named(HPA, "us-east-llama-3-1-8b-hpa").plain_inputs["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 8)
    assert [m["external"]["target"]["averageValue"] for m in spec["metrics"]] == ["70", "5"]
    assert spec["behavior"]["scaleUp"]["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 30}]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    deployment = rec.named(DEPLOYMENT, "us-east-llama-3-1-8b-deployment")
    assert deployment.plain_inputs["spec"]["replicas"] == 3


def test_deployment_waits_long_enough_and_leaves_replicas_to_the_hpa(us_east):
    for model, index in (("llama-3-1-70b", 0), ("llama-3-1-8b", 1)):
        d = us_east.named(DEPLOYMENT, f"us-east-{model}-deployment")
        spec = d.plain_inputs["spec"]
        s = sizing.size_model(*_parts(_cfg(), index)[::2])
        budget = sizing.startup_budget_seconds(s)
        timeout = int(d.plain_inputs["metadata"]["annotations"]["pulumi.com/timeoutSeconds"])
        assert timeout > budget
        assert d.custom_timeouts == {"create": f"{timeout}s", "update": f"{timeout}s"}
        assert spec["progressDeadlineSeconds"] >= timeout
        assert d.ignore_changes == ["spec.replicas"]
        assert spec["replicas"] == 2
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        startup = spec["template"]["spec"]["containers"][0]["startupProbe"]
        assert startup["failureThreshold"] == math.ceil(budget / startup["periodSeconds"])
        # The pool's provisioning allowance (15 min by default) is part of the wait.
        assert timeout > budget + 900
        # Karpenter leaves the node alone while the replica loads.
        assert spec["template"]["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": f"{budget}s"}
        # The Service is not awaited (it would wait for GPUs, and the entry point with it).
        service = us_east.named(SERVICE, f"us-east-{model}-service")
        assert service.plain_inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    summaries = {m["name"]: m for m in us_east.stack_outputs["models"]}
    assert summaries["llama-3-1-70b"]["startupBudgetSeconds"] > summaries["llama-3-1-8b"]["startupBudgetSeconds"]


def test_pod_runs_on_its_pool_with_gpus_shared_memory_and_the_weight_cache(us_east):
    pod = us_east.named(DEPLOYMENT, "us-east-llama-3-1-70b-deployment").plain_inputs["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu-fleet/pool": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container = pod["containers"][0]
    assert container["image"] == "vllm/vllm-openai:v0.33.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert volumes["weights"]["persistentVolumeClaim"] == {"claimName": "vllm-llama-3-1-70b-weights"}
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]} == {
        "/models-cache": "weights", "/dev/shm": "dshm", "/home/vllm": "home", "/tmp": "tmp"}
    assert volumes["home"]["emptyDir"] == volumes["tmp"]["emptyDir"] == {}
    assert pod["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone": "ScheduleAnyway", "kubernetes.io/hostname": "ScheduleAnyway"}
    claim = us_east.named(PVC, "us-east-llama-3-1-70b-weights")
    assert claim.plain_inputs["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim.plain_inputs["spec"]["storageClassName"] == "efs-weights"
    assert claim.plain_inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    assert not claim.protect and not claim.retain_on_delete
    deployment = us_east.named(DEPLOYMENT, "us-east-llama-3-1-70b-deployment")
    assert claim.urn in deployment.depends_on


def test_on_eks_vllm_runs_as_its_own_user_on_a_read_only_root(us_east):
    pod = us_east.named(DEPLOYMENT, "us-east-llama-3-1-70b-deployment").plain_inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # The user is the vLLM container's: the gateway sidecar keeps its image's own.
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 0}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                            "runAsUser": 2000, "runAsGroup": 0}
    assert all("runAsNonRoot" not in c.get("securityContext", {}) for c in pod["containers"][1:])
    # Root's HOME would be on the read-only filesystem: HOME is the writable volume, whoever runs.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == "/home/vllm" and env["HF_HOME"] == "/models-cache"


@pytest.mark.parametrize("cloud,non_root", [("aws", True), ("gcp", False)])
def test_only_eks_runs_non_root_and_only_the_pinned_vllm_image_is_read_only(cloud, non_root):
    model = _cfg().models[1]
    pod, container = md.security_contexts(model, cloud)
    assert container["readOnlyRootFilesystem"] is True
    assert (container.get("runAsUser"), container.get("runAsNonRoot"), pod.get("fsGroup")) == (
        (2000, True, 0) if non_root else (None, None, None))
    # LMCache's image (and any image but the pinned one) keeps root and a writable filesystem:
    # its cache paths were not read.
    lm = _cfg(edit=lambda r: r["models"][1].update(lmcache={"enabled": True})).models[1]
    other = _cfg(edit=lambda r: r["models"][1].update(image="vllm/vllm-openai:v0.34.0")).models[1]
    for m in (lm, other):
        pod, container = md.security_contexts(m, cloud)
        assert "readOnlyRootFilesystem" not in container and "runAsUser" not in container
        assert "HOME" not in {e["name"] for e in md.container_env(m, "s", "redis-connection", cloud)}


def test_service_and_pdb_select_the_pods(fleet):
    annotations = {"cloud.google.com/neg": '{"ingress": true}'}
    rec = _run(fleet, _cfg(), service_annotations=annotations)
    service = rec.named(SERVICE, "us-east-llama-3-1-8b-service").plain_inputs
    selector = {"app.kubernetes.io/name": "vllm", "gpu-fleet/model": "llama-3-1-8b"}
    assert service["spec"] == {"type": "ClusterIP", "selector": selector,
                               "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]}
    assert service["metadata"]["annotations"]["cloud.google.com/neg"] == '{"ingress": true}'
    pdb = rec.named(PDB, "us-east-llama-3-1-8b-pdb").plain_inputs["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": selector}, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    template = rec.named(DEPLOYMENT, "us-east-llama-3-1-8b-deployment").plain_inputs["spec"]["template"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert rec.stack_outputs["services"] == ["vllm-llama-3-1-70b", "vllm-llama-3-1-8b", "vllm-qwen2-5-72b"]


def _unmarked(value, text: str, where: str) -> list[str]:
    """Paths where ``text`` appears outside a secret wrapper."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _unmarked(v, text, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unmarked(v, text, f"{where}[{i}]")]
    return [where] if isinstance(value, str) and text in value else []


def test_api_key_and_token_never_appear_in_plaintext(fleet):
    cfg = _cfg(edit=lambda r: r["models"][1].update(lmcache={"enabled": True}))
    rec = _run(fleet, cfg)
    for text in (API_KEY, HF_TOKEN):
        leaks = [p for r in rec.resources for p in _unmarked(r.inputs, text, f"{r.type}:{r.name}")]
        leaks += [k for k, v in rec.stack_outputs.items() if _unmarked(v, text, k)]
        assert leaks == []
        # It does reach the serving Secret, secret-wrapped.
        assert text in reveal(rec.named(SECRET, "vllm-secrets").inputs["stringData"]).values()
    for name in ("llama-3-1-70b", "llama-3-1-8b"):
        container = rec.named(DEPLOYMENT, f"us-east-{name}-deployment").plain_inputs["spec"]["template"]["spec"]["containers"][0]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert refs == {"HF_TOKEN": {"name": "vllm-secrets", "key": "HF_TOKEN"},
                        "VLLM_API_KEY": {"name": "vllm-secrets", "key": "VLLM_API_KEY"}}
        # Redis credentials only where LMCache uses them (llama-3-1-8b here).
        lmcache = name == "llama-3-1-8b"
        assert container.get("envFrom") == ([{"secretRef": {"name": "redis-connection"}}] if lmcache else None)
        pod_labels = rec.named(DEPLOYMENT, f"us-east-{name}-deployment").plain_inputs["spec"]["template"]["metadata"]["labels"]
        assert (pod_labels.get("gpu-fleet/cache-client") == "true") == lmcache
        # Every plain value is configuration, never a credential.
        values = [e["value"] for e in container["env"] if "value" in e]
        assert all(API_KEY not in v and HF_TOKEN not in v and "rediss://" not in v for v in values)


def test_without_a_cache_there_is_no_cache_wiring(fleet):
    rec = _run(fleet, _cfg(), cache=False)
    container = rec.named(DEPLOYMENT, "us-east-llama-3-1-8b-deployment").plain_inputs["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in container


def test_summary_is_the_models_stack_output(us_east):
    cfg = _cfg()
    s8 = sizing.size_model(*_parts(cfg, 1)[::2])
    assert us_east.stack_outputs["models"][1] == {
        "name": "llama-3-1-8b",
        "modelId": "meta-llama/Llama-3.1-8B-Instruct",
        "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
        "pool": "a100",
        "gpusPerReplica": 1,
        "minReplicas": 2,
        "maxReplicas": 20,
        "kvCacheTokens": s8.kv_cache_tokens,
        "maxConcurrentSequences": s8.kv_cache_tokens // 32768,
        "startupBudgetSeconds": sizing.startup_budget_seconds(s8),
        "service": "vllm-llama-3-1-8b",
    }
    assert 300_000 < s8.kv_cache_tokens < 600_000


def test_a_model_that_does_not_fit_is_refused_before_anything_is_created(fleet):
    cfg = _cfg()
    model, pool, shape = _parts(cfg, 1)
    too_big = model.model_copy(update={"model_id": "meta-llama/Llama-3.1-70B-Instruct"})
    a100_40 = shape.__class__(**{**shape.__dict__, "gpu": "a100-40gb", "gpu_memory_gb": 40})
    created = []

    def program():
        created.append(md.ModelDeployment("x", {
            "model": too_big, "pool": pool, "shape": a100_40, "namespace": "llm-serving",
            "secret_name": "vllm-secrets", "cache_secret_name": None, "weight_cache_storage_class": "efs-weights"}))

    with pytest.raises(ValueError, match="model llama-3-1-8b cannot run on p4de.24xlarge: tensorParallelSize: "):
        fleet.run(program)
    assert created == []


# --------------------------------------------------------------------------- the gateway


def _pod(rec: Recording, stack: str, name: str) -> dict:
    return rec.named(DEPLOYMENT, f"{stack}-{name}-deployment").plain_inputs["spec"]["template"]


@pytest.mark.parametrize("stack,storage_class", [("us-east", "efs-weights"), ("eu-west", "premium-rwx")])
def test_the_gateway_uses_the_cache_with_tls_and_auth_and_only_it_holds_the_credentials(fleet, stack, storage_class):
    cfg = _cfg(stack)
    rec = _run(fleet, cfg, stack=stack, storage_class=storage_class, gateway=True)
    for m in cfg.models:
        pod = _pod(rec, stack, m.name)
        assert pod["metadata"]["labels"]["gpu-fleet/cache-client"] == "true"
        vllm, gateway = pod["spec"]["containers"]
        assert gateway["name"] == "gateway" and gateway["image"] == "ghcr.io/berriai/litellm:main-v1.110.2"
        assert gateway["args"] == ["--config", "/etc/litellm/config.yaml", "--port", "4000"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in gateway["env"]}
        # AUTH token and address by reference from the cache Secret, TLS on, short timeouts.
        for key in ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
            assert env[key] == {"secretKeyRef": {"name": "redis-connection", "key": key}}
        assert env["REDIS_SSL"] == "true" and env["REDIS_SOCKET_CONNECT_TIMEOUT"] == "1"
        assert "REDIS_URL" not in env
        # The fleet's API key is the gateway's master key and what it sends to vLLM.
        key = {"secretKeyRef": {"name": "vllm-secrets", "key": "VLLM_API_KEY"}}
        assert env["LITELLM_MASTER_KEY"] == key and env["VLLM_API_KEY"] == key
        # vLLM itself holds no Redis credential (LMCache is off).
        assert "envFrom" not in vllm and not any(e["name"].startswith("REDIS") for e in vllm["env"])
        mounts = {v["mountPath"]: v["name"] for v in gateway["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        if stack == "eu-west":
            # Memorystore's own CA, from the cache Secret, as a file redis-py verifies against.
            assert env["REDIS_SSL_CA_CERTS"] == "/etc/redis-tls/ca.crt" and mounts["/etc/redis-tls"] == "redis-tls"
            assert volumes["redis-tls"]["secret"] == {"secretName": "redis-connection",
                                                      "items": [{"key": "REDIS_CA_CERT", "path": "ca.crt"}]}
        else:
            # ElastiCache chains to public CAs: the system store, with the host name checked.
            assert "REDIS_SSL_CA_CERTS" not in env and "REDIS_SSL_CHECK_HOSTNAME" not in env
            assert "redis-tls" not in volumes
        assert volumes[mounts["/etc/litellm"]]["configMap"]["name"] == f"gateway-{m.name}"
        # The pod keeps Guaranteed QoS and fits the node's share: vLLM gives up what the gateway takes.
        assert gateway["resources"]["requests"] == gateway["resources"]["limits"]
        whole = md.container_resources(*_shape_and_gpus(cfg, m))
        assert _cpu(vllm["resources"]["limits"]["cpu"]) + _cpu(gateway["resources"]["limits"]["cpu"]) == \
            _cpu(whole["limits"]["cpu"])
        service = rec.named("kubernetes:core/v1:Service", f"{stack}-{m.name}-service").plain_inputs["spec"]
        assert [(p["name"], p["port"]) for p in service["ports"]] == [("http", 8000), ("gateway", 4000)]


def _shape_and_gpus(cfg, model):
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    shape = pool_offering(cfg, pool).shape
    return shape, md.size_model(model, shape).gpus


def _cpu(text: str) -> int:
    return int(text.removesuffix("m"))


def test_the_gateway_config_caches_in_redis_and_fails_safe(fleet):
    cfg = _cfg()
    rec = _run(fleet, cfg, gateway=True)
    data = rec.named("kubernetes:core/v1:ConfigMap", "us-east-llama-3-1-8b-gateway").plain_inputs["data"]
    config = yaml.safe_load(data["config.yaml"])
    assert config["model_list"] == [{"model_name": "llama-3-1-8b", "litellm_params": {
        "model": "hosted_vllm/llama-3-1-8b", "api_base": "http://127.0.0.1:8000/v1",
        "api_key": "os.environ/VLLM_API_KEY"}}]
    # A Redis that does not answer costs a lookup at most 1 s, then the request goes to vLLM.
    assert config["litellm_settings"] == {"cache": True, "cache_params": {
        "type": "redis", "mode": "default_on", "ttl": 600, "socket_timeout": 1}}
    assert API_KEY not in data["config.yaml"]


def test_a_gateway_without_a_cache_keeps_no_redis_wiring(fleet):
    rec = _run(fleet, _cfg(), cache=False, gateway=True)
    data = rec.named("kubernetes:core/v1:ConfigMap", "us-east-llama-3-1-8b-gateway").plain_inputs["data"]
    assert "litellm_settings" not in yaml.safe_load(data["config.yaml"])
    pod = _pod(rec, "us-east", "llama-3-1-8b")
    assert "gpu-fleet/cache-client" not in pod["metadata"]["labels"]
    assert not any(e["name"].startswith("REDIS") for c in pod["spec"]["containers"] for e in c["env"])


def test_gateway_objects_pass_strict_validation(fleet):
    rec = _run(fleet, _cfg("eu-west"), stack="eu-west", storage_class="premium-rwx", gateway=True)
    for r, manifest in rec.kubernetes_objects():
        checked, errors = manifests.validate(manifest)
        assert checked and errors == [], (r.name, errors)
