"""Every external version the fleet deploys, with where and when it was read upstream.

Pure data at the bottom of the layers (no imports from the project). Components take
their chart versions, images, node images and add-on versions from here, and
``tests/components/test_pins.py`` fails when a planned Helm release, container image or
EKS add-on is not in :data:`PINS`, or when a vendored file's bytes drift from its pin.

How a pin is verified: read the artifact at its upstream source at exactly that version
(a git tag, a published Helm repository index, a documentation page) and record that
source in ``source`` and the day in ``verified``. Whatever could not be read upstream
is said in ``unverified`` (and the field stays None, never a guess). Adding a pin is one
line in :data:`PINS` plus the constant its component imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Kind = Literal["helm-chart", "image", "node-image", "eks-addon", "kubernetes", "vendored-file"]

#: The day every pin below was last read upstream.
VERIFIED_ON = "2026-12-01"


@dataclass(frozen=True)
class Pin:
    """One external artifact at one version.

    name: chart name, image repository, node image / AMI type, add-on name, or vendored
        file name. version: chart version, image tag, add-on version (None: the cloud's
        default for the cluster version, see ``unverified``). repository: the Helm
        repository URL (charts). app_version: what the chart deploys. digest: the image's
        multi-arch index digest, or a vendored file's sha256. source: where it was read.
        unverified: what could not be read upstream, and why (None: everything was).
    """

    kind: Kind
    name: str
    version: Optional[str]
    source: str
    verified: str = VERIFIED_ON
    repository: Optional[str] = None
    app_version: Optional[str] = None
    digest: Optional[str] = None
    unverified: Optional[str] = None

    @property
    def image(self) -> str:
        """The image reference pods use: ``repo:tag@sha256:...``, or ``repo:tag`` while the
        index digest is unverified."""
        if self.kind != "image":
            raise ValueError(f"{self.name} is a {self.kind}, not an image")
        return f"{self.name}:{self.version}" + (f"@{self.digest}" if self.digest else "")


# --------------------------------------------------------------------------- Helm charts

PROMETHEUS_COMMUNITY_REPO = "https://prometheus-community.github.io/helm-charts"
#: The release tags exist (chart-releaser publishes from them); the published index was not readable.
_INDEX_UNREAD = "the repository's gh-pages index.yaml (not readable here; the release tag was read)"

KUBE_PROMETHEUS_STACK = Pin(
    "helm-chart", "kube-prometheus-stack", "81.4.3", repository=PROMETHEUS_COMMUNITY_REPO, app_version="v0.88.1",
    # 81.4.5 was never published (the tags go 81.4.3 -> 81.5.0); 81.4.3 ships operator v0.88.1.
    source="prometheus-community/helm-charts@kube-prometheus-stack-81.4.3 (d43b29960) "
           "charts/kube-prometheus-stack/Chart.yaml (subchart kube-state-metrics 7.1.0)",
    unverified=_INDEX_UNREAD,
)
PROMETHEUS_ADAPTER = Pin(
    "helm-chart", "prometheus-adapter", "5.3.0", repository=PROMETHEUS_COMMUNITY_REPO, app_version="v0.12.0",
    source="prometheus-community/helm-charts@prometheus-adapter-5.3.0 (e6e041b67) charts/prometheus-adapter/Chart.yaml",
    unverified=_INDEX_UNREAD,
)
GPU_OPERATOR = Pin(
    "helm-chart", "gpu-operator", "v26.3.3", repository="https://helm.ngc.nvidia.com/nvidia", app_version="v26.3.3",
    # The chart's Chart.yaml at the tag reads v1.0.0-devel: the release stamps the version.
    source="NVIDIA/gpu-operator@v26.3.3 (b0a49c0e7) deployments/gpu-operator/ and versions.mk; published "
           "index NVIDIA/gpu-operator gh-pages stable/index.yaml (version v26.3.3, appVersion v26.3.3); "
           "repository and --version from docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/getting-started.html",
    unverified="the NGC repository's own index.yaml (only the identical GitHub Pages index was readable)",
)
#: oci:// charts are pulled by reference; the chart's name is the reference's last part.
KARPENTER = Pin(
    "helm-chart", "karpenter", "1.14.1", repository="oci://public.ecr.aws/karpenter", app_version="1.14.1",
    # At tag v1.14.1 Chart.yaml still reads 1.13.0: the release bumps the chart after tagging.
    source="aws/karpenter-provider-aws commit 1d927085d (the v1.14.1 release) charts/karpenter/Chart.yaml "
           "(version and appVersion 1.14.1, controller public.ecr.aws/karpenter/controller:1.14.1); install "
           "command from website/content/en/v1.14/getting-started/getting-started-with-karpenter/scripts/"
           "step08-apply-helm-chart.sh",
)
KEDA = Pin(
    "helm-chart", "keda", "2.20.2", repository="https://kedacore.github.io/charts", app_version="2.20.2",
    source="kedacore/charts@v2.20.2 keda/Chart.yaml; Kubernetes 1.33-1.35 from keda.sh/docs/2.20/operate/cluster/",
    unverified="the published index.yaml (the release tag was read)",
)
AWS_LOAD_BALANCER_CONTROLLER = Pin(
    "helm-chart", "aws-load-balancer-controller", "1.12.0", repository="https://aws.github.io/eks-charts",
    app_version="v2.12.0",
    source="kubernetes-sigs/aws-load-balancer-controller@v2.12.0 (ab69d951f) helm/aws-load-balancer-controller/"
           "Chart.yaml; published index aws/eks-charts gh-pages index.yaml (1.12.0, appVersion v2.12.0)",
)

# --------------------------------------------------------------------------- vendored files

#: Re-vendored at the chart's app version: the file previously vendored (commit 2b150b977,
#: before v2.12.0) lacked ``ec2:DescribeIpamPools`` and ``elasticloadbalancing:SetRulePriorities``,
#: which v2.12.0's rule reconciliation calls.
AWS_LOAD_BALANCER_CONTROLLER_IAM_POLICY = Pin(
    "vendored-file", "aws-load-balancer-controller-iam-policy.json", "v2.12.0",
    digest="sha256:05780d548cae2d0ef012988ec1053e7733011c2a0415a7ca02c363907e455016",
    source="kubernetes-sigs/aws-load-balancer-controller@v2.12.0 docs/install/iam_policy.json, byte for byte",
)

# --------------------------------------------------------------------------- images

VLLM = Pin(
    "image", "vllm/vllm-openai", "v0.33.0",
    # Flags, env vars, metric names and probe paths the fleet uses were read in this release.
    source="vllm 0.33.0 (commit 4ba787ec9; PyPI sdist and wheel): docker/Dockerfile target vllm-openai "
           "(ENTRYPOINT vllm serve, USER root), .buildkite/scripts/publish-release-images.sh "
           "(multi-arch manifest vllm/vllm-openai:v${RELEASE_VERSION})",
    unverified="multi-arch index digest: not published by the release script (it pushes by tag) nor found in "
               "any indexed source on 2026-12-01 (code, issues, pages), and Docker Hub is not reachable here; "
               "resolve it with `docker buildx imagetools inspect vllm/vllm-openai:v0.33.0` and set `digest`",
)
#: The image's own non-root user (vllm@v0.33.0 docker/Dockerfile, vllm-base stage: ``useradd --uid
#: 2000 --gid 0 ... vllm``, HOME /home/vllm group-0-writable; upstream CI smoke-tests the
#: vllm-openai image with ``--user 2000:0``, .buildkite/image_build/image_build.yaml).
VLLM_UID = 2000
VLLM_GID = 0
VLLM_HOME = "/home/vllm"
#: Not set by the fleet: the gpu-operator chart's default, pinned here because the HPA's GPU
#: metric and the exporter's Kubernetes-mode settings were read at this tag.
DCGM_EXPORTER = Pin(
    "image", "nvcr.io/nvidia/k8s/dcgm-exporter", "4.5.3-4.8.2",
    source="NVIDIA/gpu-operator@v26.3.3 deployments/gpu-operator/values.yaml (dcgmExporter.version); "
           "NVIDIA/dcgm-exporter@4.5.3-4.8.2 etc/default-counters.csv (DCGM_FI_DEV_GPU_UTIL), pkg/cmd/app.go "
           "(DCGM_EXPORTER_KUBERNETES, DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE), internal/pkg/appconfig/const.go "
           "(device-name)",
    unverified="digest: the chart deploys it by tag",
)
LMCACHE_VLLM = Pin(
    "image", "lmcache/vllm-openai", "v0.3.5",
    source="none: kept from the previous pin",
    unverified="tag, digest and the vLLM version it bundles were not found in any upstream source readable "
               "here; only used when a model sets lmcache.enabled (no reference stack does)",
)
#: The gateway beside each vLLM server (gpu_fleet.components.gateway). 1.107.0 is left out on purpose: PyPI no
#: longer offers it (it was reported compromised); 1.110.2 is the newest release on PyPI on VERIFIED_ON.
LITELLM = Pin(
    "image", "ghcr.io/berriai/litellm", "main-v1.110.2",
    source="litellm 1.110.2 wheel from PyPI (the code the image is built from): litellm/_redis.py (REDIS_* "
           "environment to redis.Redis arguments), litellm/caching/redis_cache.py and caching.py (cache_params, "
           "mode, ttl, max_messages, errors as misses), litellm/proxy/proxy_server.py (litellm_settings.cache, "
           "LITELLM_MASTER_KEY), proxy/health_endpoints/_health_endpoints.py (/health/liveliness), "
           "litellm_cli/main.py and proxy/proxy_cli.py (litellm --config --port); tag scheme main-<release> "
           "from BerriAI/litellm .github/workflows/ghcr_deploy.yml (docker/metadata-action tags + '-' + tag)",
    unverified="that the image main-v1.110.2 was published and holds exactly the 1.110.2 wheel, the redis-py "
               "version inside it, and its digest: the registry is not readable here",
)

#: Placeholder pods of the warm GPU capacity (gpu_fleet.components.warm_capacity): a container that does nothing.
PAUSE = Pin(
    "image", "registry.k8s.io/pause", "3.10",
    # The registry's promotion manifest maps each promoted digest to its tags; the tag's
    # digest is what registry.k8s.io/pause:3.10 resolves to (its multi-arch index).
    digest="sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a",
    source="kubernetes/k8s.io@ecf019a88caa registry.k8s.io/images/k8s-staging-kubernetes/images.yaml "
           "(name: pause, dmap entry for tag 3.10)",
)

# --------------------------------------------------------------------------- node images

_AMI_TYPES = "AWS CDK NodegroupAmiType: docs.aws.amazon.com/cdk/api/v2/python/aws_cdk.aws_eks/NodegroupAmiType.html"

EKS_SYSTEM_AMI = Pin(
    "node-image", "AL2023_x86_64_STANDARD", None,
    source=_AMI_TYPES,
    unverified="no version: EKS picks the latest AMI release for the cluster version",
)
#: Karpenter's EC2NodeClass alias ``family@version``: it resolves the NVIDIA variant for GPU
#: instance types through SSM. Pinned, not ``latest``: a new AMI replaces every GPU node as it drifts.
EKS_GPU_AMI = Pin(
    "node-image", "al2023", "v20260714",
    source="aws/karpenter-provider-aws@v1.14.1 pkg/providers/amifamily/al2023.go and types.go (VariantNvidia), "
           "website/content/en/v1.14/concepts/nodeclasses.md (amiSelectorTerms alias); awslabs/amazon-eks-ami@"
           "v20260724 CHANGELOG.md (release v20260714: amazon-eks-node-al2023-x86_64-nvidia-1.35-v20260714, "
           "1.35.6-20260714)",
)
GKE_NODE_IMAGE = Pin(
    "node-image", "COS_CONTAINERD", None,
    source="pulumi-gcp 10.2.0 container/_inputs.py (image types COS_CONTAINERD, UBUNTU_CONTAINERD)",
    unverified="no version: GKE's release channel picks the node version; GPU driver version LATEST",
)

# --------------------------------------------------------------------------- Kubernetes and add-ons

#: The default of cluster.kubernetesVersion: the one minor version in standard support on both
#: clouds on VERIFIED_ON that every pin below supports (1.34 leaves EKS standard support on
#: 2026-12-02 and left GKE's on 2026-10-01; KEDA 2.20 is tested up to 1.35, so not 1.36). The
#: dates per cloud, with their sources, are components/data/cloud_limits.json.
KUBERNETES = Pin(
    "kubernetes", "kubernetes", "1.35",
    source="EKS standard support until 2027-03-27 and GKE's until 2027-04-11 (components/data/cloud_limits.json); "
           "supported by karpenter 1.14.x (aws/karpenter-provider-aws@v1.14.1 hack/docs/compatibilitymatrix_gen/"
           "compatibility.yaml: 1.26-1.36; commit 1d927085d website/content/en/v1.14/upgrading/compatibility.md), "
           "KEDA 2.20 (keda.sh/docs/2.20/operate/cluster/: v1.33-v1.35), gpu-operator v26.3.3 (NVIDIA/"
           "cloud-native-docs commit 815c4afb 'Update docs for 26.3.3' gpu-operator/platform-support.rst: Amazon "
           "EKS and Google GKE 1.32-1.36), kube-prometheus-stack 81.4.3 (Chart.yaml kubeVersion '>=1.25.0-0'), the "
           "AL2023 NVIDIA AMI v20260714 (awslabs/amazon-eks-ami@v20260724 CHANGELOG.md: amazon-eks-node-al2023-"
           "x86_64-nvidia-1.35-v20260714); GKE takes '1.35' as min_master_version (the API's '1.X' alias: highest "
           "valid patch of 1.X, google.cloud.container_v1 Cluster/UpdateMasterRequest reference)",
    unverified="the AWS calendar's own 1.35 row and the GKE release schedule page (read as transcribed, see "
               "components/data/cloud_limits.json)",
)

#: The Amazon EKS user guide's version tables (latest add-on version per Kubernetes version), read in
#: its copies at docs.amazonaws.cn (the same awsdocs source; the docs.aws.amazon.com copies readable
#: here stop at 1.34).
_EKS_GUIDE = "docs.amazonaws.cn/zh_cn/eks/latest/userguide/"
_NO_TABLE = ("no per-Kubernetes-version table of this add-on was found in the EKS user guide, and upstream release "
             "notes name the driver version without the -eksbuild.N suffix the EKS API needs; version None installs "
             "EKS's default for the cluster version (`aws eks describe-addon-versions --kubernetes-version 1.35` "
             "gives a pinnable one)")
EKS_ADDONS = {
    "vpc-cni": Pin(
        "eks-addon", "vpc-cni", "v1.21.1-eksbuild.7",
        source="docs.amazonaws.cn/eks/latest/userguide/managing-vpc-cni.md (Amazon VPC CNI versions: 1.35 "
               "v1.21.1-eksbuild.7)"),
    "kube-proxy": Pin(
        "eks-addon", "kube-proxy", "v1.35.3-eksbuild.2",
        source=f"{_EKS_GUIDE}managing-kube-proxy.md (kube-proxy versions: 1.35 v1.35.3-eksbuild.2)"),
    "coredns": Pin(
        "eks-addon", "coredns", "v1.13.2-eksbuild.4",
        source=f"{_EKS_GUIDE}managing-coredns.md (CoreDNS versions: 1.35 v1.13.2-eksbuild.4)"),
    **{name: Pin("eks-addon", name, None, source="none read", unverified=_NO_TABLE)
       for name in ("eks-pod-identity-agent", "aws-ebs-csi-driver", "aws-efs-csi-driver")},
}

PINS: tuple[Pin, ...] = (
    KUBE_PROMETHEUS_STACK,
    PROMETHEUS_ADAPTER,
    GPU_OPERATOR,
    AWS_LOAD_BALANCER_CONTROLLER,
    KARPENTER,
    KEDA,
    AWS_LOAD_BALANCER_CONTROLLER_IAM_POLICY,
    VLLM,
    PAUSE,
    DCGM_EXPORTER,
    LMCACHE_VLLM,
    LITELLM,
    EKS_SYSTEM_AMI,
    EKS_GPU_AMI,
    GKE_NODE_IMAGE,
    KUBERNETES,
    *EKS_ADDONS.values(),
)


def of_kind(kind: Kind) -> list[Pin]:
    return [p for p in PINS if p.kind == kind]
