"""An EKS cluster with its VPC, system node group, Karpenter for the GPU pools, storage
classes and ALB ingress controller.

Everything goes through the region's ``aws`` provider (passed by the caller in
``opts.providers``; data-source calls pass ``parent=self`` so they use it too); the
Kubernetes provider built from the new cluster is exposed as :attr:`AwsCluster.k8s_provider`
for the components that deploy into it.

- Network: a new VPC with a public and a private subnet per availability zone (or an
  existing VPC's subnets). Nodes, the control plane's network interfaces, the weight cache
  and the cache all live in the private subnets; internet-facing load balancers in the
  public ones, found through the ``kubernetes.io/role/elb`` subnet tag.
- Access: authentication mode ``API`` only (no ``aws-auth`` ConfigMap);
  ``cluster.adminPrincipalArns`` (never the identity running Pulumi) get cluster-admin
  access entries, the node role an ``EC2_LINUX`` entry. Add-ons and the load balancer controller get their AWS
  permissions through EKS Pod Identity, never through the node role.
- GPU nodes: Karpenter (:mod:`gpu_fleet.components.karpenter`) launches them on demand from one
  NodePool per GPU pool; no managed node group runs a GPU instance type.
- GPU drivers: the AL2023 NVIDIA AMI ships the driver and container toolkit;
  the NVIDIA GPU operator (:mod:`gpu_fleet.components.gpu_software`) adds the device plugin,
  feature discovery and dcgm-exporter.
- Storage: ``gp3`` (EBS, the default class: Prometheus' volume) and ``efs-weights`` (EFS
  with one access point per volume, shared by every replica of a model for its weights).
- Ingress: the AWS Load Balancer Controller serves Ingresses of class ``alb``.

The decisions (subnet layout, zones, node groups, launch templates, the kubeconfig, the
controller's values) are plain functions below, tested without Pulumi; the class only
wires resources together.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from . import pins
from .config import RegionConfig, check_region
from .karpenter import Karpenter
from .kubeconfig import exec_kubeconfig
from .contract import POOL_LABEL, SYSTEM_POOL
from .network import AwsNetwork
from .problem import Problem, ProblemError
from .subnets import subnet_layout

DEFAULT_SYSTEM_INSTANCE_TYPE = "m7i.2xlarge"
SYSTEM_AMI_TYPE = pins.EKS_SYSTEM_AMI.name
#: The root volume of AL2023 EKS AMIs.
ROOT_DEVICE = "/dev/xvda"
#: GPU nodes (their EC2NodeClass) pull 10+ GB vLLM images when they join, while a replica
#: waits: gp3 at its most (1,000 MiB/s, which needs 4,000 IOPS) instead of the 125 MiB/s baseline. The extra
#: throughput costs about 40 USD a month, next to 40,000 for a p5.48xlarge.
GPU_ROOT_THROUGHPUT_MIBPS = 1000
GPU_ROOT_IOPS = 4000
#: IMDSv2 only, and one hop: pods (one hop further, in their own network namespace) cannot
#: read the node role's credentials. Nothing here needs them to: add-ons and the load
#: balancer controller get credentials from EKS Pod Identity, the controller is given its
#: region and VPC in its values, and the host-network agents (VPC CNI, Pod Identity, EFS
#: node) are on the node itself. Hop limit 2 would only serve pods that bypass Pod Identity.
IMDS_HOP_LIMIT = 1
CLUSTER_LOG_TYPES = ("api", "audit", "authenticator")
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
CLUSTER_ROLE_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_ROLE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    # Shell access through Session Manager, with no SSH keys or open ports.
    "AmazonSSMManagedInstanceCore",
)
POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
#: EKS cannot place control planes in these zone IDs (its cluster subnet requirements);
#: IDs, not names, because zone names map to different zones in every account.
EKS_UNSUPPORTED_ZONE_IDS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})
#: The VPC CNI's NetworkPolicy agent: the cache's NetworkPolicy admits only its clients.
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
#: The Kubernetes namespace of the add-ons and the load balancer controller.
SYSTEM_NAMESPACE = "kube-system"
DEFAULT_STORAGE_CLASS = "gp3"
WEIGHT_CACHE_STORAGE_CLASS = "efs-weights"
NFS_PORT = 2049
INGRESS_CLASS = "alb"
#: The chart deploys the controller version (``app_version``) whose IAM policy is vendored
#: (:data:`LBC_POLICY_FILE`, pinned at that tag). Move both together: a newer controller
#: needs newer actions. Pins and sources: :mod:`gpu_fleet.components.pins`.
LBC_CHART = pins.AWS_LOAD_BALANCER_CONTROLLER.name
LBC_CHART_REPOSITORY = pins.AWS_LOAD_BALANCER_CONTROLLER.repository
LBC_CHART_VERSION = pins.AWS_LOAD_BALANCER_CONTROLLER.version
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
LBC_POLICY_FILE = Path(__file__).with_name("data") / pins.AWS_LOAD_BALANCER_CONTROLLER_IAM_POLICY.name
#: Seconds the controller release may take to become ready (two replicas, webhook).
LBC_RELEASE_TIMEOUT_SECONDS = 600
AUTH_COMMAND = "aws"
#: The EKS API endpoint's port.
API_PORT = 443


class AwsClusterArgs(TypedDict):
    """Arguments of :class:`AwsCluster`.

    config: the validated region config (``gpu_fleet.components.config.RegionConfig``, cloud
        ``aws``). Used: ``location`` (the region), ``network`` (a new VPC from ``cidr``
        across ``zoneCount`` zones, or ``existing`` VPC and subnet IDs; existing public
        subnets must carry the ``kubernetes.io/role/elb: 1`` tag for load balancers to
        find them), ``cluster`` (Kubernetes version, public access CIDRs, extra admin
        principals, system pool; system instance type defaults to ``m7i.2xlarge``) and
        ``gpuPools``.
    """

    config: RegionConfig


# --------------------------------------------------------------------------- pure decisions


def eks_zones(names: list[str], zone_ids: list[str], count: int) -> list[str]:
    """The first ``count`` zones (by name) that can hold an EKS control plane."""
    usable = [n for n, z in zip(names, zone_ids) if z not in EKS_UNSUPPORTED_ZONE_IDS]
    if len(usable) < count:
        raise ProblemError(Problem("network.zoneCount", f"is {count} but the region has only {len(usable)} zones EKS "
                                   f"supports: {', '.join(usable)}"))
    return usable[:count]


def managed_policy_arn(partition: str, policy: str) -> str:
    """The ARN of an AWS managed IAM policy (``policy`` may carry a path: ``service-role/X``)."""
    return f"arn:{partition}:iam::aws:policy/{policy}"


def access_policy_arn(partition: str, policy: str) -> str:
    """The ARN of an EKS access policy."""
    return f"arn:{partition}:eks::aws:cluster-access-policy/{policy}"


def trust_policy(service: str) -> dict:
    """An assume-role policy letting an AWS service principal assume the role (with session
    tags: EKS and Pod Identity tag their sessions)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": ["sts:AssumeRole", "sts:TagSession"]}
        ],
    }


def secrets_key_policy(key_arn: str) -> dict:
    """What the cluster role needs on the KMS key that envelope-encrypts Secrets."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                "Resource": key_arn,
            }
        ],
    }


def endpoint_access(cfg: RegionConfig) -> dict:
    """The API endpoint is always reachable privately; publicly only from the configured CIDRs."""
    cidrs = [str(c) for c in cfg.cluster.public_access_cidrs]
    access = {"endpoint_private_access": True, "endpoint_public_access": bool(cidrs)}
    if cidrs:
        access["public_access_cidrs"] = cidrs
    return access


def launch_template_spec(disk_size_gb: int) -> dict:
    """Launch template settings of the system node group (security groups are added by
    the caller): encrypted gp3 root volume of ``disk_size_gb`` and IMDSv2 with
    :data:`IMDS_HOP_LIMIT`. GPU nodes get the same from their EC2NodeClass (:mod:`gpu_fleet.components.karpenter`)."""
    ebs: dict = {"volume_size": disk_size_gb, "volume_type": "gp3", "encrypted": True, "delete_on_termination": True}
    return {
        "block_device_mappings": [{"device_name": ROOT_DEVICE, "ebs": ebs}],
        "metadata_options": {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": IMDS_HOP_LIMIT,
        },
    }


def system_node_group_spec(cfg: RegionConfig) -> dict:
    """Node group settings of the system (CPU) pool."""
    sp = cfg.cluster.system_pool
    return {
        "instance_types": [sp.machine_type or DEFAULT_SYSTEM_INSTANCE_TYPE],
        "ami_type": SYSTEM_AMI_TYPE,
        "capacity_type": "ON_DEMAND",
        "scaling_config": {"min_size": sp.min_nodes, "max_size": sp.max_nodes, "desired_size": sp.min_nodes},
        "labels": {POOL_LABEL: SYSTEM_POOL},
    }


def render_kubeconfig(context: str, cluster_name: str, region: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig for the cluster that gets tokens from ``aws eks get-token``."""
    return exec_kubeconfig(context, endpoint, ca_certificate, {
        "command": AUTH_COMMAND,
        "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
        "installHint": "Install the AWS CLI v2: https://docs.aws.amazon.com/cli/",
    })


def load_balancer_controller_policy() -> str:
    """The controller's IAM policy document (the vendored upstream file)."""
    return LBC_POLICY_FILE.read_text()


def load_balancer_controller_values(cluster_name: pulumi.Input[str], region: str, vpc_id: pulumi.Input[str]) -> dict:
    """Helm values of the AWS Load Balancer Controller."""
    return {
        "clusterName": cluster_name,
        # Given, not read from instance metadata, which pods cannot reach (IMDS hop limit 1).
        "region": region,
        "vpcId": vpc_id,
        # The chart's service account; its Pod Identity association refers to it by name.
        "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "replicaCount": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "ingressClass": INGRESS_CLASS,
        # Ingresses name their class in spec.ingressClassName, which needs the object.
        "createIngressClassResource": True,
        # That webhook sees every Service creation and fails it while the controller is
        # down; it only serves Services of type LoadBalancer, which the fleet does not use.
        "enableServiceMutatorWebhook": False,
    }


def addon_version(addon: str, kubernetes_version: str) -> Optional[str]:
    """The add-on's pinned version (:data:`gpu_fleet.components.pins.EKS_ADDONS`), which was read for the
    pinned Kubernetes version only: on another minor (kube-proxy follows the cluster's), or
    where the pin is None, EKS's default for the cluster version."""
    return pins.EKS_ADDONS[addon].version if kubernetes_version == pins.KUBERNETES.version else None


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- component


class AwsCluster(pulumi.ComponentResource):
    """EKS cluster, network, node groups and cluster services of an AWS region
    (``gpufleet:index:AwsCluster``)."""

    cluster_name: pulumi.Output[str]
    kubernetes_version: str
    kubeconfig: pulumi.Output[str]
    k8s_provider: k8s.Provider
    network: AwsNetwork
    weight_cache_storage_class: str
    ingress_class: str

    def __init__(self, name: str, args: AwsClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        cfg = check_region(args["config"], f"AwsCluster {name!r}")  # once per config object
        super().__init__("gpufleet:index:AwsCluster", name, None, opts)
        self.kubernetes_version = cfg.cluster.kubernetes_version
        here = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        partition = aws.get_partition(opts=invoke).partition

        vpc_id, private_subnet_ids, public_subnet_ids, vpc_cidr, public_cidrs = self._network(name, cfg, here)
        # Every node, system and GPU, is in this group (the cache and EFS admit it). It
        # is not tagged kubernetes.io/cluster/<name>: the load balancer controller wants
        # exactly one such group per node, and the EKS cluster security group is it.
        self.node_security_group = aws.ec2.SecurityGroup(
            f"{name}-nodes", vpc_id=vpc_id, description=f"{name}: all cluster nodes", tags={"Name": f"{name}-nodes"},
            opts=here,
        )
        # Node-to-node and control-plane traffic is admitted by the cluster security group,
        # which every node is also in (see the launch templates).
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nodes-egress", security_group_id=self.node_security_group.id, ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0", description="Image pulls, model downloads, AWS APIs", opts=here,
        )
        self.network = AwsNetwork(
            vpc_id=pulumi.Output.from_input(vpc_id),
            vpc_cidr=pulumi.Output.from_input(vpc_cidr),
            private_subnet_ids=pulumi.Output.all(*private_subnet_ids),
            public_subnet_ids=pulumi.Output.all(*public_subnet_ids),
            node_security_group_id=self.node_security_group.id,
            public_subnet_cidrs=pulumi.Output.all(*public_cidrs),
        )

        self._control_plane(name, cfg, partition, private_subnet_ids, here)
        self._access(name, cfg, partition, here)

        self.node_role = aws.iam.Role(
            f"{name}-nodes", assume_role_policy=json.dumps(trust_policy("ec2.amazonaws.com")), opts=here
        )
        node_role_policies = [
            aws.iam.RolePolicyAttachment(f"{name}-nodes-{policy.lower()}", role=self.node_role.name,
                                         policy_arn=managed_policy_arn(partition, policy), opts=here)
            for policy in NODE_ROLE_POLICIES
        ]
        # EKS would create this entry with the first managed node group; declaring it
        # makes it ours, so it outlives node group replacements.
        node_access = aws.eks.AccessEntry(f"{name}-nodes", cluster_name=self.cluster.name,
                                          principal_arn=self.node_role.arn, type="EC2_LINUX", opts=here)

        # The cluster starts without add-ons (bootstrap_self_managed_addons=False): nodes
        # only become Ready once the CNI runs, so these come before any node group.
        self.addons = {
            addon: self._addon(name, addon, depends_on=[], configuration=configuration)
            for addon, configuration in (
                ("vpc-cni", VPC_CNI_CONFIGURATION), ("kube-proxy", None), ("eks-pod-identity-agent", None)
            )
        }
        self._system_node_group(name, cfg, private_subnet_ids,
                                depends_on=[*node_role_policies, node_access, *self.addons.values()])

        # CoreDNS and the CSI controllers are Deployments: they need the system nodes.
        self.addons["coredns"] = self._addon(name, "coredns", depends_on=[self.system_node_group])
        for addon, service_accounts, policy in (
            ("aws-ebs-csi-driver", ("ebs-csi-controller-sa",), "service-role/AmazonEBSCSIDriverPolicy"),
            # The node plugin looks up mount targets too.
            ("aws-efs-csi-driver", ("efs-csi-controller-sa", "efs-csi-node-sa"),
             "service-role/AmazonEFSCSIDriverPolicy"),
        ):
            associations = self._pod_identity(name, addon.removeprefix("aws-"), service_accounts,
                                              managed_policy_arn(partition, policy), here)
            self.addons[addon] = self._addon(
                name, addon,
                depends_on=[self.system_node_group, self.addons["eks-pod-identity-agent"], *associations],
            )

        self._weight_cache(name, vpc_id, private_subnet_ids, here)

        self.cluster_name = self.cluster.name
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.arn, self.cluster.name, self.cluster.endpoint,
                              self.cluster.certificate_authority.data).apply(
                lambda v: render_kubeconfig(v[0], v[1], cfg.location, v[2], v[3])
            )
        )
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            # Kubernetes objects (Helm releases waiting for pods, volumes) need the system
            # nodes, DNS, the CSI drivers and the deployer's cluster-admin access. Not the GPU
            # node groups: a GPU capacity shortage should hold back only the models
            # (Region makes them wait for gpu_pools), not monitoring or the entry point.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.system_node_group, *self.addons.values(), *self.admin_access],
            ),
        )
        self._storage_classes(name)
        self._load_balancer_controller(name, cfg, vpc_id, here)
        self.karpenter = Karpenter(f"{name}-karpenter", {
            "config": cfg,
            "cluster": self.cluster,
            "node_role": self.node_role,
            "subnet_ids": private_subnet_ids,
            "security_group_ids": [self.node_security_group.id, self.cluster.vpc_config.cluster_security_group_id],
            "k8s_provider": self.k8s_provider,
            "partition": partition,
            "root_volume": {"throughput": GPU_ROOT_THROUGHPUT_MIBPS, "iops": GPU_ROOT_IOPS},
            "imds_hop_limit": IMDS_HOP_LIMIT,
            "depends_on": [self.addons["eks-pod-identity-agent"], node_access],
        }, opts=here)
        #: What a model on each pool waits for: its NodePool (GPU nodes arrive later, or not).
        self.gpu_pools = self.karpenter.node_pools
        self.weight_cache_storage_class = WEIGHT_CACHE_STORAGE_CLASS
        self.ingress_class = INGRESS_CLASS

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "vpcId": self.network.vpc_id,
                "weightCacheStorageClass": self.weight_cache_storage_class,
                "ingressClass": self.ingress_class,
            }
        )

    # ----------------------------------------------------------------------- network

    def _network(self, name: str, cfg: RegionConfig, here: pulumi.ResourceOptions):
        """Create (or look up) the VPC; returns its ID, the private and public subnet IDs
        (one per zone), the VPC CIDR and the public subnets' CIDRs."""
        ex = cfg.network.existing
        if ex is not None:
            invoke = pulumi.InvokeOutputOptions(parent=self)
            vpc = aws.ec2.get_vpc_output(id=ex.vpc_id, opts=invoke)
            public_cidrs = [aws.ec2.get_subnet_output(id=s, opts=invoke).cidr_block for s in ex.public_subnet_ids]
            return ex.vpc_id, list(ex.private_subnet_ids), list(ex.public_subnet_ids), vpc.cidr_block, public_cidrs

        zones_found = aws.get_availability_zones(
            state="available",
            # Local and Wavelength zones are opt-in; they cannot hold an EKS control plane.
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOptions(parent=self),
        )
        zones = eks_zones(zones_found.names, zones_found.zone_ids, cfg.network.zone_count)
        layout = subnet_layout(cfg.network.cidr, len(zones))

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(cfg.network.cidr),
            # The private API endpoint resolves through the VPC's DNS.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": name}, opts=here)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=self.vpc.id, routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{name}-public"}, opts=here,
        )
        self.public_subnets, self.private_subnets, private_routes = [], [], []
        for zone, (public_cidr, private_cidr) in zip(zones, layout):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}", vpc_id=self.vpc.id, availability_zone=zone, cidr_block=str(public_cidr),
                # Internet-facing load balancers are placed in subnets with this tag.
                tags={"Name": f"{name}-public-{zone}", "kubernetes.io/role/elb": "1"},
                opts=here,
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{zone}", vpc_id=self.vpc.id, availability_zone=zone, cidr_block=str(private_cidr),
                tags={"Name": f"{name}-private-{zone}", "kubernetes.io/role/internal-elb": "1"},
                opts=here,
            )
            aws.ec2.RouteTableAssociation(f"{name}-public-{zone}", subnet_id=public.id,
                                          route_table_id=public_routes.id, opts=here)
            # One NAT gateway per zone: a zone outage takes down only its own egress, and
            # nodes never pay cross-zone transfer on the way out (model downloads run to
            # hundreds of GB). The cost is one gateway per zone instead of one in all.
            eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags={"Name": f"{name}-nat-{zone}"}, opts=here)
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{zone}", allocation_id=eip.id, subnet_id=public.id, tags={"Name": f"{name}-nat-{zone}"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{zone}", vpc_id=self.vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags={"Name": f"{name}-private-{zone}"}, opts=here,
            )
            aws.ec2.RouteTableAssociation(f"{name}-private-{zone}", subnet_id=private.id,
                                          route_table_id=routes.id, opts=here)
            self.public_subnets.append(public)
            self.private_subnets.append(private)
            private_routes.append(routes)
        # ECR serves image layers from S3: a gateway endpoint is free and keeps those pulls
        # off the NAT gateways' per-GB charge.
        aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{cfg.location}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[r.id for r in private_routes], tags={"Name": f"{name}-s3"},
            opts=here,
        )
        return (self.vpc.id, [s.id for s in self.private_subnets], [s.id for s in self.public_subnets],
                self.vpc.cidr_block, [s.cidr_block for s in self.public_subnets])

    # ----------------------------------------------------------------------- control plane

    def _control_plane(self, name: str, cfg: RegionConfig, partition: str, subnet_ids: list,
                       here: pulumi.ResourceOptions) -> None:
        """The cluster, its IAM role and the KMS key that encrypts its Secrets."""
        self.cluster_role = aws.iam.Role(f"{name}-control-plane",
                                         assume_role_policy=json.dumps(trust_policy("eks.amazonaws.com")), opts=here)
        role_policies = [
            aws.iam.RolePolicyAttachment(f"{name}-control-plane-{policy.lower()}", role=self.cluster_role.name,
                                         policy_arn=managed_policy_arn(partition, policy), opts=here)
            for policy in CLUSTER_ROLE_POLICIES
        ]
        # Protected: without the key, the cluster's Secrets cannot be decrypted.
        self.secrets_key = aws.kms.Key(
            f"{name}-secrets", description=f"Envelope encryption of the Kubernetes Secrets of {name}",
            enable_key_rotation=True, deletion_window_in_days=30,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        key_access = aws.iam.RolePolicy(
            f"{name}-control-plane-secrets-key", role=self.cluster_role.name,
            policy=self.secrets_key.arn.apply(lambda arn: json.dumps(secrets_key_policy(arn))), opts=here,
        )
        self.cluster = aws.eks.Cluster(
            name,
            name=name,
            role_arn=self.cluster_role.arn,
            version=cfg.cluster.kubernetes_version,
            vpc_config={"subnet_ids": subnet_ids, **endpoint_access(cfg)},
            access_config={
                "authentication_mode": "API",
                # Admins get explicit access entries from config instead (see _access); the
                # implicit one would follow whoever created the cluster, invisibly.
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            # Managed add-ons instead of the unmanaged copies EKS would install.
            bootstrap_self_managed_addons=False,
            encryption_config={"provider": {"key_arn": self.secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=list(CLUSTER_LOG_TYPES),
            deletion_protection=True,
            tags={"Name": name},
            opts=pulumi.ResourceOptions(parent=self, protect=True, depends_on=[*role_policies, key_access]),
        )
        # The private endpoint's network interfaces carry the cluster security group, which
        # admits only its own members (EKS user guide, "Amazon EKS security group
        # requirements"): in-VPC deployers (CI runners, a VPN) need a rule of their own.
        self.api_access_rules = [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-from-{str(cidr).replace('/', '-')}",
                security_group_id=self.cluster.vpc_config.cluster_security_group_id,
                cidr_ipv4=str(cidr), ip_protocol="tcp", from_port=API_PORT, to_port=API_PORT,
                description="cluster.privateAccessCidrs: the Kubernetes API from inside the network",
                opts=here,
            )
            for cidr in cfg.cluster.private_access_cidrs
        ]

    def _access(self, name: str, cfg: RegionConfig, partition: str, here: pulumi.ResourceOptions) -> None:
        """Cluster-admin access entries for the configured principals (CI roles, named admins).

        Never the caller's identity: a preview by another role, or an ``up`` from a laptop,
        would otherwise replace the entry and take the CI role's access away."""
        self.admin_principals = list(dict.fromkeys(cfg.cluster.admin_principal_arns))
        if not self.admin_principals:
            pulumi.log.warn(
                "cluster.adminPrincipalArns is empty: no IAM principal, not even the one running pulumi, can use "
                "the Kubernetes API (the cluster grants its creator nothing), so pulumi up fails at the first "
                "Kubernetes object; list the CI deploy and preview roles and your admins", resource=self)
        self.admin_access: list[aws.eks.AccessPolicyAssociation] = []
        for principal in self.admin_principals:
            suffix = f"admin-{_short_hash(principal)}"
            entry = aws.eks.AccessEntry(f"{name}-{suffix}", cluster_name=self.cluster.name, principal_arn=principal,
                                        type="STANDARD", opts=here)
            self.admin_access.append(aws.eks.AccessPolicyAssociation(
                f"{name}-{suffix}", cluster_name=self.cluster.name, principal_arn=entry.principal_arn,
                policy_arn=access_policy_arn(partition, CLUSTER_ADMIN_POLICY), access_scope={"type": "cluster"},
                opts=here,
            ))

    # ----------------------------------------------------------------------- nodes

    def _launch_template(self, name: str, spec: dict, pool: str) -> aws.ec2.LaunchTemplate:
        tags = {"Name": f"{name}-{pool}", POOL_LABEL: pool}
        return aws.ec2.LaunchTemplate(
            f"{name}-{pool}",
            # A launch template with security groups replaces EKS's default, which would
            # have put nodes in the cluster security group: name it alongside ours.
            vpc_security_group_ids=[self.node_security_group.id, self.cluster.vpc_config.cluster_security_group_id],
            tag_specifications=[{"resource_type": kind, "tags": tags} for kind in ("instance", "volume")],
            opts=pulumi.ResourceOptions(parent=self),
            **spec,
        )

    def _system_node_group(self, name: str, cfg: RegionConfig, subnet_ids: list, depends_on: list) -> None:
        """The managed node group of the system pool (GPU pools are Karpenter's)."""
        sp = cfg.cluster.system_pool
        template = self._launch_template(name, launch_template_spec(sp.disk_size_gb), SYSTEM_POOL)
        self.system_node_group = aws.eks.NodeGroup(
            f"{name}-{SYSTEM_POOL}",
            cluster_name=self.cluster.name,
            node_group_name=SYSTEM_POOL,
            node_role_arn=self.node_role.arn,
            subnet_ids=subnet_ids,
            # Disk size lives in the launch template (EKS rejects both).
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            update_config={"max_unavailable": 1},
            node_repair_config={"enabled": True},
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=True,
                depends_on=depends_on,
                # Seeds the size at creation only: resizing it by hand (or a future
                # autoscaler) is not undone by the next pulumi up.
                ignore_changes=["scalingConfig.desiredSize"],
                # A fixed name (nodes show it): a replacement frees the name first.
                delete_before_replace=True,
            ),
            **system_node_group_spec(cfg),
        )

    # ----------------------------------------------------------------------- add-ons

    def _addon(self, name: str, addon: str, depends_on: list, configuration: Optional[dict] = None) -> aws.eks.Addon:
        """A managed add-on at the version :func:`addon_version` gives."""
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=self.cluster.name,
            addon_name=addon,
            addon_version=addon_version(addon, self.kubernetes_version),
            configuration_values=json.dumps(configuration) if configuration else None,
            # The declared configuration wins over edits made in the cluster.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _pod_identity(self, name: str, role: str, service_accounts: tuple[str, ...], policy_arn: pulumi.Input[str],
                      here: pulumi.ResourceOptions) -> list[aws.eks.PodIdentityAssociation]:
        """An IAM role with ``policy_arn`` for ``kube-system`` service accounts, via Pod Identity."""
        iam_role = aws.iam.Role(f"{name}-{role}", assume_role_policy=json.dumps(trust_policy(POD_IDENTITY_SERVICE)),
                                opts=here)
        attachment = aws.iam.RolePolicyAttachment(f"{name}-{role}", role=iam_role.name, policy_arn=policy_arn,
                                                  opts=here)
        return [
            aws.eks.PodIdentityAssociation(
                f"{name}-{account}", cluster_name=self.cluster.name, namespace=SYSTEM_NAMESPACE,
                service_account=account, role_arn=iam_role.arn,
                # Pods start with working credentials only if the policy is attached first.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
            )
            for account in service_accounts
        ]

    # ----------------------------------------------------------------------- storage

    def _weight_cache(self, name: str, vpc_id: pulumi.Input[str], subnet_ids: list,
                      here: pulumi.ResourceOptions) -> None:
        """The EFS file system behind :data:`WEIGHT_CACHE_STORAGE_CLASS`, reachable from the nodes."""
        # Elastic throughput: weight loads are bursts of reads of a few hundred GB, which
        # bursting mode would throttle to a baseline proportional to the bytes stored.
        self.weight_file_system = aws.efs.FileSystem(
            f"{name}-weights", encrypted=True, performance_mode="generalPurpose", throughput_mode="elastic",
            tags={"Name": f"{name}-weights"},
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-weights", vpc_id=vpc_id, description=f"{name}: EFS weight cache, NFS from nodes",
            tags={"Name": f"{name}-weights"}, opts=here,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-weights-nfs", security_group_id=group.id,
            referenced_security_group_id=self.node_security_group.id, ip_protocol="tcp", from_port=NFS_PORT,
            to_port=NFS_PORT, description="NFS from the cluster nodes", opts=here,
        )
        self.weight_mount_targets = [
            aws.efs.MountTarget(f"{name}-weights-{i}", file_system_id=self.weight_file_system.id, subnet_id=subnet_id,
                                security_groups=[group.id], opts=here)
            for i, subnet_id in enumerate(subnet_ids)
        ]

    def _storage_classes(self, name: str) -> None:
        kube = pulumi.ResourceOptions(parent=self, provider=self.k8s_provider)
        self.default_storage_class = k8s.storage.v1.StorageClass(
            f"{name}-{DEFAULT_STORAGE_CLASS}",
            # EKS marks no class default since 1.30; volumes without a class (Prometheus')
            # get this one, even ones created before it (retroactive default assignment).
            metadata={"name": DEFAULT_STORAGE_CLASS,
                      "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
            # Volumes are created in the zone of the pod that first uses them.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=kube,
        )
        self.weight_storage_class = k8s.storage.v1.StorageClass(
            f"{name}-{WEIGHT_CACHE_STORAGE_CLASS}",
            metadata={"name": WEIGHT_CACHE_STORAGE_CLASS},
            provisioner="efs.csi.aws.com",
            # One access point (and directory) per volume. EFS enforces the access point's POSIX
            # identity on every operation, so any pod UID writes; it is vLLM's own user, so the
            # files carry the identity the pods run as (kubernetes-sigs/aws-efs-csi-driver
            # docs/parameters.md, uid/gid/directoryPerms, from v2.0.0 to v3.4.1).
            parameters={
                "provisioningMode": "efs-ap",
                "fileSystemId": self.weight_file_system.id,
                "directoryPerms": "700",
                "uid": str(pins.VLLM_UID),
                "gid": str(pins.VLLM_GID),
            },
            # Downloaded weights outlive the claim that fetched them.
            reclaim_policy="Retain",
            volume_binding_mode="Immediate",
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=self.weight_mount_targets)),
        )

    # ----------------------------------------------------------------------- ingress

    def _load_balancer_controller(self, name: str, cfg: RegionConfig, vpc_id: pulumi.Input[str],
                                  here: pulumi.ResourceOptions) -> None:
        policy = aws.iam.Policy(f"{name}-load-balancer-controller", policy=load_balancer_controller_policy(),
                                description=f"AWS Load Balancer Controller of {name}", opts=here)
        associations = self._pod_identity(name, "load-balancer-controller", (LBC_SERVICE_ACCOUNT,), policy.arn, here)
        self.load_balancer_controller = k8s.helm.v3.Release(
            f"{name}-load-balancer-controller",
            name=LBC_CHART,
            chart=LBC_CHART,
            version=LBC_CHART_VERSION,
            repository_opts={"repo": LBC_CHART_REPOSITORY},
            namespace=SYSTEM_NAMESPACE,
            create_namespace=False,
            values=load_balancer_controller_values(self.cluster.name, cfg.location, vpc_id),
            atomic=True,
            timeout=LBC_RELEASE_TIMEOUT_SECONDS,
            max_history=10,
            opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider, depends_on=associations),
        )
