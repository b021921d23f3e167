"""Karpenter on EKS: it provisions every GPU pool, the managed system node group runs it.

Why Karpenter rather than managed node groups (which nothing scaled) or the Cluster
Autoscaler: it launches the instance type a pending pod needs in whichever zone EC2 has
it, falls back between capacity types (reserved, spot, on-demand) within milliseconds,
and never turns a stock-out into a failed, protected AWS resource the way a managed node
group's ``CreateNodegroup`` does. A shortage leaves model pods Pending, nothing else.

Per ``gpuPools`` entry (:func:`node_class_spec`, :func:`node_pool_spec`):

- an ``EC2NodeClass`` (``karpenter.k8s.aws/v1``): the AL2023 EKS AMI by a pinned alias
  (Karpenter picks its NVIDIA variant for instance types with GPUs), the node role, the
  cluster's private subnets and node security groups by ID, the encrypted gp3 root
  volume and IMDSv2 settings the launch templates had, and the pool's capacity
  reservations;
- a ``NodePool`` (``karpenter.sh/v1``): the catalog's instance type, the pool's capacity
  types, labels ``gpu-fleet/pool``/``gpu-fleet/gpu`` and the GPU taint, a ``limits`` of
  ``maxNodes x gpusPerNode`` GPUs, and disruption limited to empty nodes, one at a time;
  or, when the capacity order is not Karpenter's own (on-demand before spot, anything
  before reserved), one such NodePool per capacity type with descending weights
  (:mod:`gpu_fleet.components.capacity_tiers` says how Karpenter falls back between them;
  :func:`max_gpus` how the limit keeps its meaning).

Zones: the NodePool names no zone. Karpenter considers every zone of the subnets it
selects (the cluster's private subnets, one per zone) and launches only into zones where
EC2 offers the instance type (it reads ``DescribeInstanceTypeOfferings``; its controller
policy below allows that call), skipping a zone for 3 minutes after an insufficient
capacity error. So a p4de.24xlarge pool lands in use1-az4/use1-az6 without being told.

Warm nodes (``minNodes``): Karpenter has no minimum size; :mod:`gpu_fleet.components.warm_capacity`
keeps them with placeholder pods.

The decisions are plain functions, tested without Pulumi (and the custom resources
against the CRDs' schemas); :class:`Karpenter` only wires resources together.

Upstream sources, aws/karpenter-provider-aws at tag v1.14.1 (commit bde00654cd31) for
code and at commit 1d927085d (the v1.14.1 docs update, where the ``v1.14`` docs live):
``website/content/en/v1.14/getting-started/getting-started-with-karpenter/cloudformation.yaml``
(controller IAM policies, interruption queue and its policy, EventBridge rules),
``.../scripts/step02-create-cluster.sh`` (Pod Identity association for
``kube-system/karpenter``, node role mapped as a node), ``.../scripts/step08-apply-helm-chart.sh``
(chart, ``settings.clusterName``/``settings.interruptionQueue``, controller resources),
``website/content/en/v1.14/concepts/{nodeclasses,nodepools,disruption}.md`` and
``website/content/en/v1.14/tasks/odcrs.md``.
"""

from __future__ import annotations

import json
from typing import Any, Optional, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from . import pins
from .capacity_tiers import Tier, tiers
from .config import GpuPoolConfig, RegionConfig, pool_offering
from .contract import FLEET_LABELS, GPU_LABEL, GPU_RESOURCE, GPU_TAINT, POOL_LABEL, SYSTEM_POOL

#: The chart as the v1.14 getting-started guide installs it (gpu_fleet.components.pins.KARPENTER).
KARPENTER_CHART = f"{pins.KARPENTER.repository}/{pins.KARPENTER.name}"
#: The guide's namespace (KARPENTER_NAMESPACE=kube-system) and service account.
KARPENTER_NAMESPACE = "kube-system"
KARPENTER_SERVICE_ACCOUNT = "karpenter"
#: Controller resources from step08-apply-helm-chart.sh.
KARPENTER_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
KARPENTER_RELEASE_TIMEOUT_SECONDS = 600

#: ``family@version`` (gpu_fleet.components.pins.EKS_GPU_AMI): the NVIDIA variant for GPU instance types.
AMI_ALIAS = f"{pins.EKS_GPU_AMI.name}@{pins.EKS_GPU_AMI.version}"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
#: Karpenter's own labels (concepts/scheduling.md, well-known labels).
CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
#: The GPU taint as a Kubernetes node taint (contract.GPU_TAINT spells the effect the cloud APIs' way).
NODE_GPU_TAINT = {"key": GPU_TAINT["key"], "value": GPU_TAINT["value"], "effect": "NoSchedule"}
#: An empty GPU node (a replica scaled in, no placeholder) goes after this long: longer
#: than the HPA's 300 s scale-down window, so a flapping model does not pay a new node.
CONSOLIDATE_AFTER = "15m"
#: At most one GPU node of a pool disrupted (emptied, drifted) at a time.
DISRUPTION_BUDGET_NODES = "1"
#: Weight step between a tiered pool's NodePools (the last tier gets this, the first tiers x this).
TIER_WEIGHT_STEP = 10
#: Expiration would drain nodes that serve; GPU nodes are replaced by drift (a new AMI
#: alias) within the budget instead.
EXPIRE_AFTER = "Never"
#: EventBridge events the interruption queue receives (cloudformation.yaml rules).
INTERRUPTION_EVENTS: dict[str, dict] = {
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation-interruption": {
        "source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
    },
}
#: cloudformation.yaml KarpenterInterruptionQueue: MessageRetentionPeriod.
QUEUE_RETENTION_SECONDS = 300
#: Root volume of AL2023 AMIs (DefaultBlockDeviceMappings in amifamily/al2023.go).
ROOT_DEVICE = "/dev/xvda"


# --------------------------------------------------------------------------- pure decisions


def node_class_spec(pool: GpuPoolConfig, *, role: Any, subnet_ids: list, security_group_ids: list,
                    root_throughput_mibps: int, root_iops: int, imds_hop_limit: int, tags: dict) -> dict:
    """The pool's ``EC2NodeClass`` spec. IDs may be Pulumi Inputs."""
    spec: dict = {
        "role": role,
        "amiSelectorTerms": [{"alias": AMI_ALIAS}],
        # IDs, not discovery tags: exactly the cluster's private subnets and node groups,
        # and an existing VPC's subnets are not ours to tag.
        "subnetSelectorTerms": [{"id": s} for s in subnet_ids],
        "securityGroupSelectorTerms": [{"id": g} for g in security_group_ids],
        "blockDeviceMappings": [{
            "deviceName": ROOT_DEVICE,
            "rootVolume": True,
            "ebs": {"volumeSize": f"{pool.disk_size_gb}Gi", "volumeType": "gp3", "encrypted": True,
                    "deleteOnTermination": True, "iops": root_iops, "throughput": root_throughput_mibps},
        }],
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                            "httpPutResponseHopLimit": imds_hop_limit, "httpTokens": "required"},
        "tags": tags,
    }
    if "reserved" in pool.capacity:
        # ODCRs and Capacity Blocks alike (tasks/odcrs.md: "Capacity blocks are modeled as
        # on-demand capacity reservations"); Karpenter has no open matching, so each is named.
        spec["capacityReservationSelectorTerms"] = [{"id": r} for r in pool.reservations]
    return spec


def node_pool_spec(cfg: RegionConfig, pool: GpuPoolConfig, node_class: str, tier: Tier,
                   weight: Optional[int] = None) -> dict:
    """The ``NodePool`` spec of one capacity tier of the pool (gpu_fleet.components.capacity_tiers).

    Capacity types: within the NodePool Karpenter prefers ``reserved``, then ``spot``, then
    ``on-demand``, falling back when EC2 has none (concepts/nodepools.md, capacity type;
    tasks/odcrs.md, prioritization). A tiered pool's NodePools each allow one type and carry
    a descending ``weight``: Karpenter tries them in that order.
    """
    shape = pool_offering(cfg, pool).shape
    spec: dict = {
        "template": {
            # Every tier carries the pool's labels: model pods and warm placeholders select
            # the pool, and the weights pick the tier.
            "metadata": {"labels": {POOL_LABEL: pool.name, GPU_LABEL: pool.gpu}},
            "spec": {
                "nodeClassRef": {"group": NODE_CLASS_GROUP, "kind": "EC2NodeClass", "name": node_class},
                "requirements": [
                    {"key": INSTANCE_TYPE_KEY, "operator": "In", "values": [shape.machine_type]},
                    {"key": CAPACITY_TYPE_KEY, "operator": "In", "values": list(tier.capacity)},
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                ],
                "taints": [dict(NODE_GPU_TAINT)],
                "expireAfter": EXPIRE_AFTER,
            },
        },
        "limits": {GPU_RESOURCE: max_gpus(pool)},
        "disruption": {
            # Only nodes without model pods (placeholders count as pods: warm nodes stay).
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": CONSOLIDATE_AFTER,
            "budgets": [{"nodes": DISRUPTION_BUDGET_NODES}],
        },
    }
    if weight is not None:
        spec["weight"] = weight
    return spec


def node_pool_specs(cfg: RegionConfig, pool: GpuPoolConfig, node_class: str) -> dict[str, dict]:
    """The pool's NodePools by name, most preferred first: one, or one per capacity type
    with weights ``TIER_WEIGHT_STEP x n`` down to ``TIER_WEIGHT_STEP`` (CRD: 1..100)."""
    pool_tiers = tiers("aws", pool)
    if len(pool_tiers) == 1:
        return {pool_tiers[0].name: node_pool_spec(cfg, pool, node_class, pool_tiers[0])}
    return {t.name: node_pool_spec(cfg, pool, node_class, t, TIER_WEIGHT_STEP * (len(pool_tiers) - i))
            for i, t in enumerate(pool_tiers)}


def max_gpus(pool: GpuPoolConfig) -> int:
    """The ``nvidia.com/gpu`` limit of each of the pool's NodePools: ``maxNodes x gpusPerNode``.

    Karpenter's limits are per NodePool and nothing limits a group of them. A tiered pool
    gives every tier the whole limit, so a fallback tier can carry the pool alone when the
    preferred one has no capacity; the pool as a whole can then exceed ``maxNodes`` (up to
    tiers x ``maxNodes``), but only when its models and warm placeholders ask for more than
    ``maxNodes`` nodes: then the preferred tier stops at its limit and the next one takes
    the rest. gpu_fleet.components.capacity counts that and the plan warns (shortfalls).
    """
    return pool.max_nodes * pool.gpus_per_node


def controller_policies(partition: str, region: str, account: str, cluster: str, node_role_arn: str,
                        queue_arn: str) -> dict[str, dict]:
    """The controller's IAM policies, by the cloudformation.yaml resource they follow
    (ZonalShiftPolicy left out: zonal shift is not enabled)."""
    arn = f"arn:{partition}:ec2:{region}"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"}
    request_owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster}": "owned",
                     "aws:RequestTag/eks:eks-cluster-name": cluster}
    tagged_kinds = [f"{arn}:*:{k}/*" for k in
                    ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")]
    profile = f"arn:{partition}:iam::{account}:instance-profile/*"

    def doc(*statements: dict) -> dict:
        return {"Version": "2012-10-17", "Statement": list(statements)}

    return {
        "node-lifecycle": doc(
            {"Sid": "AllowScopedEC2InstanceAccessActions", "Effect": "Allow",
             "Resource": [f"{arn}::image/*", f"{arn}::snapshot/*", f"{arn}:*:security-group/*",
                          f"{arn}:*:subnet/*", f"{arn}:*:capacity-reservation/*", f"{arn}:*:placement-group/*"],
             "Action": ["ec2:RunInstances", "ec2:CreateFleet"]},
            {"Sid": "AllowScopedEC2LaunchTemplateAccessActions", "Effect": "Allow",
             "Resource": f"{arn}:*:launch-template/*", "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
             "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow", "Resource": tagged_kinds,
             "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
             "Condition": {"StringEquals": request_owned,
                           "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow", "Resource": tagged_kinds,
             "Action": "ec2:CreateTags",
             "Condition": {"StringEquals": {**request_owned,
                                            "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                           "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedResourceTagging", "Effect": "Allow", "Resource": f"{arn}:*:instance/*",
             "Action": "ec2:CreateTags",
             "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                           "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster},
                           "ForAllValues:StringEquals": {
                               "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]}}},
            {"Sid": "AllowScopedDeletion", "Effect": "Allow",
             "Resource": [f"{arn}:*:instance/*", f"{arn}:*:launch-template/*"],
             "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
             "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        ),
        "iam-integration": doc(
            {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Resource": node_role_arn, "Action": "iam:PassRole",
             "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}}},
            {"Sid": "AllowScopedInstanceProfileCreationActions", "Effect": "Allow", "Resource": profile,
             "Action": ["iam:CreateInstanceProfile"],
             "Condition": {"StringEquals": {**request_owned, "aws:RequestTag/topology.kubernetes.io/region": region},
                           "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
            {"Sid": "AllowScopedInstanceProfileTagActions", "Effect": "Allow", "Resource": profile,
             "Action": ["iam:TagInstanceProfile"],
             "Condition": {"StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region,
                                            **request_owned, "aws:RequestTag/topology.kubernetes.io/region": region},
                           "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                          "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
            {"Sid": "AllowScopedInstanceProfileActions", "Effect": "Allow", "Resource": profile,
             "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                        "iam:DeleteInstanceProfile"],
             "Condition": {"StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region},
                           "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        ),
        "eks-integration": doc(
            {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow",
             "Resource": f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}", "Action": "eks:DescribeCluster"},
        ),
        "interruption": doc(
            {"Sid": "AllowInterruptionQueueActions", "Effect": "Allow", "Resource": queue_arn,
             "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]},
        ),
        "resource-discovery": doc(
            {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances",
                        "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings",
                        "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
                        "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"],
             "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
            {"Sid": "AllowSSMReadActions", "Effect": "Allow",
             "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*", "Action": "ssm:GetParameter"},
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*", "Action": "pricing:GetProducts"},
            {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Resource": "*",
             "Action": "iam:ListInstanceProfiles"},
            {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Resource": profile,
             "Action": "iam:GetInstanceProfile"},
        ),
    }


def queue_policy(queue_arn: str) -> dict:
    """EventBridge (and SQS) may send to the queue, over TLS only (KarpenterInterruptionQueuePolicy)."""
    return {
        "Id": "EC2InterruptionPolicy",
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
             "Action": "sqs:SendMessage", "Resource": queue_arn},
            {"Sid": "DenyHTTP", "Effect": "Deny", "Action": "sqs:*", "Resource": queue_arn,
             "Condition": {"Bool": {"aws:SecureTransport": False}}, "Principal": "*"},
        ],
    }


def helm_values(cluster_name: pulumi.Input[str], cluster_endpoint: pulumi.Input[str],
                queue_name: pulumi.Input[str]) -> dict:
    """Values of the Karpenter chart (paths the 1.14.1 templates read)."""
    return {
        "settings": {"clusterName": cluster_name, "clusterEndpoint": cluster_endpoint,
                     "interruptionQueue": queue_name},
        "serviceAccount": {"create": True, "name": KARPENTER_SERVICE_ACCOUNT},
        # On the managed system nodes, never on nodes it provisions (the chart's default
        # affinity already keeps it off karpenter.sh/nodepool nodes).
        "nodeSelector": {"kubernetes.io/os": "linux", POOL_LABEL: SYSTEM_POOL},
        "controller": {"resources": KARPENTER_RESOURCES},
    }


# --------------------------------------------------------------------------- component


class KarpenterArgs(TypedDict):
    """Arguments of :class:`Karpenter`.

    config: the region config (``cloud: aws``); ``gpuPools`` become NodePools.
    cluster: the ``aws.eks.Cluster``. node_role: the nodes' ``aws.iam.Role`` (it already
    has an ``EC2_LINUX`` access entry, which is what Karpenter's nodes join with).
    subnet_ids / security_group_ids: where GPU nodes go and what they are in.
    k8s_provider: the cluster's Kubernetes provider. partition: the AWS partition (the account
    is read from the cluster's ARN).
    root_volume: ``{"throughput": MiB/s, "iops": n}``; imds_hop_limit: IMDS hops.
    depends_on: what the controller needs first (Pod Identity agent, system nodes).
    """

    config: RegionConfig
    cluster: aws.eks.Cluster
    node_role: aws.iam.Role
    subnet_ids: list
    security_group_ids: list
    k8s_provider: k8s.Provider
    partition: str
    root_volume: dict
    imds_hop_limit: int
    depends_on: list


class Karpenter(pulumi.ComponentResource):
    """Karpenter's controller, its AWS plumbing and the GPU pools' NodePools
    (``gpufleet:index:Karpenter``). :attr:`node_pools` maps pool names to each pool's first
    NodePool, which depends on the pool's other (fallback) NodePools."""

    node_pools: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: KarpenterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:Karpenter", name, None, opts)
        cfg = args["config"]
        cluster = args["cluster"]
        here = pulumi.ResourceOptions(parent=self)
        region = cfg.location

        # Named after the cluster, as in the guide (one queue per cluster).
        queue = aws.sqs.Queue(f"{name}-interruption", name=cluster.name,
                              message_retention_seconds=QUEUE_RETENTION_SECONDS, sqs_managed_sse_enabled=True,
                              opts=here)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.url,
                            policy=queue.arn.apply(lambda a: json.dumps(queue_policy(a))), opts=here)
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{event}", event_pattern=json.dumps(pattern), opts=here)
            aws.cloudwatch.EventTarget(f"{name}-{event}", rule=rule.name, arn=queue.arn, opts=here)

        role = aws.iam.Role(f"{name}-controller", assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                           "Action": ["sts:AssumeRole", "sts:TagSession"]}],
        }), opts=here)
        # The account from the cluster's own ARN, not from whoever runs Pulumi.
        documents = pulumi.Output.all(cluster.name, args["node_role"].arn, queue.arn, cluster.arn).apply(
            lambda v: controller_policies(args["partition"], region, v[3].split(":")[4], v[0], v[1], v[2]))
        attachments = []
        for key in ("node-lifecycle", "iam-integration", "eks-integration", "interruption", "resource-discovery"):
            policy = aws.iam.Policy(f"{name}-{key}", description=f"Karpenter controller of {name}: {key}",
                                    policy=documents.apply(lambda d, k=key: json.dumps(d[k])), opts=here)
            attachments.append(aws.iam.RolePolicyAttachment(f"{name}-{key}", role=role.name, policy_arn=policy.arn,
                                                            opts=here))
        association = aws.eks.PodIdentityAssociation(
            f"{name}-controller", cluster_name=cluster.name, namespace=KARPENTER_NAMESPACE,
            service_account=KARPENTER_SERVICE_ACCOUNT, role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
        )
        kube = pulumi.ResourceOptions(parent=self, provider=args["k8s_provider"])
        self.release = k8s.helm.v3.Release(
            f"{name}-controller",
            name="karpenter",
            chart=KARPENTER_CHART,
            version=pins.KARPENTER.version,
            namespace=KARPENTER_NAMESPACE,
            create_namespace=False,
            values=helm_values(cluster.name, cluster.endpoint, queue.name),
            atomic=True,
            timeout=KARPENTER_RELEASE_TIMEOUT_SECONDS,
            max_history=10,
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(
                depends_on=[association, *args["depends_on"]])),
        )
        after_crds = pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[self.release]))
        role_name = args["node_role"].name
        self.node_pools = {}
        for pool in cfg.gpu_pools:
            node_class = k8s.apiextensions.CustomResource(
                f"{name}-{pool.name}-class",
                api_version=f"{NODE_CLASS_GROUP}/v1", kind="EC2NodeClass",
                metadata={"name": pool.name, "labels": dict(FLEET_LABELS)},
                spec=node_class_spec(
                    pool, role=role_name, subnet_ids=args["subnet_ids"],
                    security_group_ids=args["security_group_ids"],
                    root_throughput_mibps=args["root_volume"]["throughput"], root_iops=args["root_volume"]["iops"],
                    imds_hop_limit=args["imds_hop_limit"],
                    tags={"Name": f"{name}-{pool.name}", POOL_LABEL: pool.name},
                ),
                opts=after_crds,
            )
            # Fallback tiers first: the pool's first NodePool depends on them, so whatever waits
            # for node_pools[pool] (models, placeholders) waits for every tier.
            created: list[k8s.apiextensions.CustomResource] = []
            for pool_name, spec in reversed(list(node_pool_specs(cfg, pool, pool.name).items())):
                created.append(k8s.apiextensions.CustomResource(
                    f"{name}-{pool_name}",
                    api_version="karpenter.sh/v1", kind="NodePool",
                    metadata={"name": pool_name, "labels": dict(FLEET_LABELS)},
                    spec=spec,
                    opts=pulumi.ResourceOptions.merge(after_crds, pulumi.ResourceOptions(
                        depends_on=[node_class, *created])),
                ))
            self.node_pools[pool.name] = created[-1]
        self.register_outputs({})
