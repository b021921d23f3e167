"""Pod and node pool policies: model pre-warming probes, the GPU taint, GPU requests and tolerations."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pulumi_policy import ReportViolation, ResourceValidationArgs

from contract import GPU_LABEL, GPU_RESOURCE
from resource_access import (
    DAEMON_SET,
    EKS_NODE_GROUP,
    GKE_NODE_POOL,
    _containers,
    get,
    _gpu_amount,
    _is_model_server,
    items,
    mapping,
    _num,
    plain,
    pod_spec,
    _schema,
    settings,
)

PROBES_SCHEMA = _schema(
    modelLoadedPaths={"type": "array", "items": {"type": "string"}, "default": ["/v1/models"],
                      "description": "HTTP paths that answer only once the model is loaded (vLLM's /health does not prove it)."},
)


def _probe_loads_model(probe: Mapping, paths: list[str]) -> bool:
    path = get(probe, "httpGet", "path")
    if isinstance(path, str) and path.split("?", 1)[0] in paths:
        return True
    command = " ".join(str(plain(c)) for c in items(get(probe, "exec", "command")))
    return any(p in command for p in paths)


def _probe_summary(probe: Mapping) -> str:
    if get(probe, "httpGet") is not None:
        return f"httpGet {get(probe, 'httpGet', 'path', default='/')}"
    if get(probe, "exec") is not None:
        return "exec " + " ".join(str(plain(c)) for c in items(get(probe, "exec", "command")))
    return next((k for k in ("tcpSocket", "grpc") if get(probe, k) is not None), "no handler")


def validate_model_probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _is_model_server(args):
        return
    paths = list(settings(args, PROBES_SCHEMA)["modelLoadedPaths"])
    containers = [c for c in items(get(pod_spec(args), "containers")) if isinstance(c, Mapping)]
    problems = []
    for c in containers:
        missing = []
        for kind in ("startupProbe", "readinessProbe"):
            probe = mapping(get(c, kind))
            if not probe:
                missing.append(f"no {kind}")
            elif not _probe_loads_model(probe, paths):
                missing.append(f"{kind} checks {_probe_summary(probe)}")
        if not missing:
            return
        problems.append(f"container {get(c, 'name', default='?')}: {', '.join(missing)}")
    report(f"a vLLM model server needs a startupProbe and a readinessProbe on a path that answers only once the "
           f"model is loaded ({' or '.join(paths)}; httpGet path or an exec command calling it), so no traffic "
           f"reaches a replica before its weights are in GPU memory; {'; '.join(problems) or 'no containers'}.")


GPU_TAINT_SCHEMA = _schema(
    taintKey={"type": "string", "default": GPU_RESOURCE, "description": "Key of the taint GPU nodes must carry."},
    gpuLabel={"type": "string", "default": GPU_LABEL, "description": "Node label marking a GPU pool."},
    gpuInstanceTypePattern={"type": "string", "default": r"^(p[0-9]+|g[0-9]+)[a-z]*\.",
                            "description": "Regex of EC2 instance types with NVIDIA GPUs."},
)

#: EKS AMI types with NVIDIA drivers (AL2023_*_NVIDIA, BOTTLEROCKET_*_NVIDIA, AL2_x86_64_GPU).
_EKS_GPU_AMI = re.compile(r"NVIDIA|_GPU$")


def _has_gpu_taint(taints: list, key: str) -> bool:
    return any(get(t, "key") == key and get(t, "effect") == "NO_SCHEDULE" for t in taints)


def validate_gpu_node_pool_taint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, GPU_TAINT_SCHEMA)
    key = cfg["taintKey"]
    props = args.props
    if args.resource_type == EKS_NODE_GROUP:
        labels = mapping(get(props, "labels"))
        instance_types = [str(t) for t in items(get(props, "instanceTypes"))]
        why = (
            f"label {cfg['gpuLabel']}" if cfg["gpuLabel"] in labels
            else f"AMI {get(props, 'amiType')}" if _EKS_GPU_AMI.search(str(get(props, "amiType", default="")))
            else next((f"instance type {t}" for t in instance_types if re.match(cfg["gpuInstanceTypePattern"], t)), None)
        )
        if why and not _has_gpu_taint(items(get(props, "taints")), key):
            report(f"GPU node group ({why}) has no taint {key} with effect NO_SCHEDULE: pods without a GPU request "
                   "can land on GPU nodes and keep them (and the autoscaler) from scaling down.")
    elif args.resource_type == GKE_NODE_POOL:
        accelerators = [a for a in items(get(props, "nodeConfig", "guestAccelerators")) if get(a, "count", default=1) > 0]
        gpu_label = cfg["gpuLabel"] in mapping(get(props, "nodeConfig", "labels"))
        if (accelerators or gpu_label) and not _has_gpu_taint(items(get(props, "nodeConfig", "taints")), key):
            report(f"GPU node pool has no nodeConfig.taints entry {key} with effect NO_SCHEDULE. GKE adds it to the "
                   "nodes itself; declaring it keeps the config and the nodes equal (no drift, no surprise on recreate).")


WORKLOAD_GPU_SCHEMA = _schema(
    taintKey={"type": "string", "default": GPU_RESOURCE, "description": "Key of the GPU nodes' NoSchedule taint."},
    gpuNodeLabels={"type": "array", "items": {"type": "string"},
                   "default": [GPU_LABEL, "cloud.google.com/gke-accelerator", "nvidia.com/gpu.present"],
                   "description": "Node labels that select GPU nodes."},
)


def _tolerates(tolerations: list, key: str) -> bool:
    for t in tolerations:
        effect = get(t, "effect", default="")
        if effect not in ("", "NoSchedule"):
            continue
        operator = get(t, "operator", default="Equal")
        # An empty key with Exists tolerates every taint. Equal's value cannot be compared
        # with the node pools' taint from here: the key and effect decide.
        if get(t, "key", default="") == key or (operator == "Exists" and not get(t, "key")):
            return True
    return False


def _gpu_node_selection(spec: Mapping, labels: list[str]) -> list[str]:
    selected = [k for k in mapping(get(spec, "nodeSelector")) if k in labels]
    terms = items(get(spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"))
    for term in terms:
        for expr in items(get(term, "matchExpressions")):
            if get(expr, "key") in labels and get(expr, "operator") in ("In", "Exists"):
                selected.append(get(expr, "key"))
    return sorted(set(selected))


def validate_gpu_workloads(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args)
    if spec is None:
        return
    cfg = settings(args, WORKLOAD_GPU_SCHEMA)
    gpu_containers = []
    for c in _containers(spec):
        requests, limits = mapping(get(c, "resources", "requests")), mapping(get(c, "resources", "limits"))
        requested, limited = _gpu_amount(requests), _gpu_amount(limits)
        if requested is None and limited is None:
            continue
        gpu_containers.append(c)
        name = get(c, "name", default="?")
        if limited is None or limited <= 0:
            report(f"container {name} requests {GPU_RESOURCE} without a limit: Kubernetes takes extended resources "
                   "from limits (requests must equal them), so set resources.limits.")
        elif requested is not None and requested != limited:
            report(f"container {name}: {GPU_RESOURCE} request {_num(requested)} differs from its limit {_num(limited)}; "
                   "extended resources cannot be overcommitted, set them equal.")
    if gpu_containers:
        if not _tolerates(items(get(spec, "tolerations")), cfg["taintKey"]):
            report(f"the pod requests GPUs but does not tolerate the {cfg['taintKey']} NoSchedule taint every GPU node "
                   "carries: it would stay Pending.")
    elif args.resource_type != DAEMON_SET:
        # Node agents (DaemonSets) legitimately run on GPU nodes without a GPU.
        selected = _gpu_node_selection(spec, list(cfg["gpuNodeLabels"]))
        if selected:
            report(f"the pod selects GPU nodes ({', '.join(selected)}) but no container has a {GPU_RESOURCE} limit: "
                   "it would take room on a GPU node without using a GPU and keep that node from scaling down.")
