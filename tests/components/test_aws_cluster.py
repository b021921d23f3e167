"""AwsCluster: the us-east reference stack's EKS cluster, VPC, node groups, storage and
load balancer controller, offline."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gpu_fleet.components import aws_cluster as eks
from gpu_fleet.components import contract, gke_cluster, karpenter, pins
from gpu_fleet.components.problem import ProblemError
from gpu_fleet.components.config import ConfigError, load_stack_file, parse_fleet
from gpu_fleet.components.subnets import subnet_layout
from gpu_fleet.components.gpu_catalog import load_catalog
from gpu_fleet.components.contract import SYSTEM_NODE_SELECTOR
from gpu_fleet import mock_outputs
from gpu_fleet.engine import Recording, ResourceRecord, is_secret
from gpu_fleet.manifests import validate

REPO = Path(__file__).resolve().parents[2]
US_EAST = REPO / "stacks" / "Pulumi.us-east.yaml"
EU_WEST = REPO / "stacks" / "Pulumi.eu-west.yaml"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
COMPONENT = "gpufleet:index:AwsCluster"
CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
ADDON = "aws:eks/addon:Addon"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"
ACCESS_POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
RELEASE = "kubernetes:helm.sh/v3:Release"
CALLER = "aws:index/getCallerIdentity:getCallerIdentity"
DEPLOYER = f"arn:aws:iam::{mock_outputs.ACCOUNT_ID}:role/platform-deployer"
#: us-east-1's first three zones EKS supports in the mock's zone-ID mapping (us-east-1c
#: is use1-az3 there).
ZONES = ["us-east-1a", "us-east-1b", "us-east-1d"]


def _raw() -> dict:
    return copy.deepcopy(yaml.safe_load(US_EAST.read_text())["config"]["gpu-fleet:fleet"])


def _cfg(edit=None):
    raw = _raw()
    if edit:
        edit(raw)
    return parse_fleet(raw, str(US_EAST), US_EAST.parent)


def _run(fleet, cfg) -> Recording:
    def program():
        provider = aws.Provider("us-east-aws", region=cfg.location)
        cluster = eks.AwsCluster("us-east-cluster", {"config": cfg},
                                 opts=pulumi.ResourceOptions(providers={"aws": provider}))
        pulumi.export("clusterName", cluster.cluster_name)
        pulumi.export("kubeconfig", cluster.kubeconfig)
        pulumi.export("storageClass", cluster.weight_cache_storage_class)
        pulumi.export("ingressClass", cluster.ingress_class)
        net = cluster.network
        pulumi.export("network", {
            "vpcId": net.vpc_id, "vpcCidr": net.vpc_cidr, "privateSubnetIds": net.private_subnet_ids,
            "publicSubnetIds": net.public_subnet_ids, "nodeSecurityGroupId": net.node_security_group_id,
            "publicSubnetCidrs": net.public_subnet_cidrs,
        })

    return fleet.run(program, stack="us-east")


@pytest.fixture
def us_east(fleet) -> Recording:
    return _run(fleet, load_stack_file(US_EAST))


def _named(rec: Recording, type_: str, suffix: str) -> ResourceRecord:
    return rec.named(type_, f"us-east-cluster{suffix}")


def _subnets(rec: Recording, kind: str) -> list[ResourceRecord]:
    return [_named(rec, SUBNET, f"-{kind}-{zone}") for zone in ZONES]


def _admin_entries(rec: Recording) -> set[str]:
    return {e.plain_inputs["principalArn"] for e in rec.of_type(ACCESS_ENTRY) if e.plain_inputs["type"] == "STANDARD"}


def _mount_target_subnets(rec: Recording) -> list[str]:
    """Subnets of the weight cache's mount targets, in subnet order (``-weights-<i>``)."""
    targets = sorted(rec.of_type("aws:efs/mountTarget:MountTarget"), key=lambda t: int(t.name.rsplit("-", 1)[1]))
    return [t.plain_inputs["subnetId"] for t in targets]


def _addon(rec: Recording, addon: str) -> ResourceRecord:
    return _named(rec, ADDON, f"-{addon}")


# --------------------------------------------------------------------------- network


def test_vpc_with_public_and_private_subnets_in_three_eks_zones(us_east):
    vpc = _named(us_east, "aws:ec2/vpc:Vpc", "-vpc")
    assert vpc.plain_inputs["cidrBlock"] == "10.40.0.0/16"
    assert vpc.plain_inputs["enableDnsSupport"] is True and vpc.plain_inputs["enableDnsHostnames"] is True
    assert vpc.protect
    public, private = _subnets(us_east, "public"), _subnets(us_east, "private")
    assert len(us_east.of_type(SUBNET)) == 6
    assert [s.plain_inputs["availabilityZone"] for s in public] == ZONES
    assert [s.plain_inputs["availabilityZone"] for s in private] == ZONES
    assert [s.plain_inputs["cidrBlock"] for s in private] == ["10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"]
    assert [s.plain_inputs["cidrBlock"] for s in public] == ["10.40.128.0/22", "10.40.132.0/22", "10.40.136.0/22"]
    for s in public:
        assert s.plain_inputs["tags"]["kubernetes.io/role/elb"] == "1"
        assert "kubernetes.io/role/internal-elb" not in s.plain_inputs["tags"]
    for s in private:
        assert s.plain_inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in s.plain_inputs["tags"]
    assert {s.plain_inputs["vpcId"] for s in public + private} == {vpc.outputs["id"]}
    # The model pods' ingress NetworkPolicy admits the ALB's nodes by these.
    assert us_east.stack_outputs["network"]["publicSubnetCidrs"] == ["10.40.128.0/22", "10.40.132.0/22", "10.40.136.0/22"]


def test_zones_come_from_the_regional_provider(us_east):
    provider = us_east.named("pulumi:providers:aws", "us-east-aws")
    zones = [c for c in us_east.calls if c.token == "aws:index/getAvailabilityZones:getAvailabilityZones"]
    assert len(zones) == 1
    assert zones[0].args["state"] == "available"
    assert zones[0].args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    for call in us_east.calls:
        assert call.provider.rsplit("::", 1)[0] == provider.urn, call.token


def test_internet_egress_through_one_nat_gateway_per_zone(us_east):
    igw = _named(us_east, "aws:ec2/internetGateway:InternetGateway", "-igw")
    public_rt = _named(us_east, "aws:ec2/routeTable:RouteTable", "-public")
    assert public_rt.plain_inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": igw.outputs["id"]}]
    assocs = {a.name: a.plain_inputs for a in us_east.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    private_tables = []
    for zone, public, private in zip(ZONES, _subnets(us_east, "public"), _subnets(us_east, "private")):
        eip = _named(us_east, "aws:ec2/eip:Eip", f"-nat-{zone}")
        nat = _named(us_east, "aws:ec2/natGateway:NatGateway", f"-nat-{zone}")
        assert nat.plain_inputs["subnetId"] == public.outputs["id"]
        assert nat.plain_inputs["allocationId"] == eip.outputs["id"]
        assert igw.urn in nat.depends_on
        rt = _named(us_east, "aws:ec2/routeTable:RouteTable", f"-private-{zone}")
        assert rt.plain_inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": nat.outputs["id"]}]
        assert assocs[f"us-east-cluster-private-{zone}"] == {"subnetId": private.outputs["id"],
                                                             "routeTableId": rt.outputs["id"]}
        assert assocs[f"us-east-cluster-public-{zone}"] == {"subnetId": public.outputs["id"],
                                                            "routeTableId": public_rt.outputs["id"]}
        private_tables.append(rt.outputs["id"])
    s3 = _named(us_east, "aws:ec2/vpcEndpoint:VpcEndpoint", "-s3").plain_inputs
    assert (s3["serviceName"], s3["vpcEndpointType"]) == ("com.amazonaws.us-east-1.s3", "Gateway")
    assert s3["routeTableIds"] == private_tables


def test_network_record_for_cache_and_entrypoint(us_east):
    net = us_east.stack_outputs["network"]
    assert net["vpcId"] == _named(us_east, "aws:ec2/vpc:Vpc", "-vpc").outputs["id"]
    assert net["vpcCidr"] == "10.40.0.0/16"
    assert net["privateSubnetIds"] == [s.outputs["id"] for s in _subnets(us_east, "private")]
    assert net["publicSubnetIds"] == [s.outputs["id"] for s in _subnets(us_east, "public")]
    assert net["nodeSecurityGroupId"] == _named(us_east, "aws:ec2/securityGroup:SecurityGroup", "-nodes").outputs["id"]


def test_node_security_group_allows_egress_and_is_not_the_cluster_tagged_group(us_east):
    group = _named(us_east, "aws:ec2/securityGroup:SecurityGroup", "-nodes")
    assert not any(k.startswith("kubernetes.io/cluster/") for k in group.plain_inputs.get("tags", {}))
    egress = _named(us_east, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "-nodes-egress").plain_inputs
    assert (egress["securityGroupId"], egress["ipProtocol"], egress["cidrIpv4"]) == (
        group.outputs["id"], "-1", "0.0.0.0/0")


def test_existing_network_is_looked_up_not_created(fleet):
    def existing(raw):
        raw["network"] = {"existing": {"vpcId": "vpc-0shared", "privateSubnetIds": ["subnet-p1", "subnet-p2"],
                                       "publicSubnetIds": ["subnet-u1", "subnet-u2"]}}

    rec = _run(fleet, _cfg(existing))
    for t in ("vpc:Vpc", "subnet:Subnet", "natGateway:NatGateway", "internetGateway:InternetGateway",
              "routeTable:RouteTable", "eip:Eip", "vpcEndpoint:VpcEndpoint"):
        assert rec.of_type(f"aws:ec2/{t}") == [], t
    calls = {c.token: c for c in rec.calls}
    assert "aws:index/getAvailabilityZones:getAvailabilityZones" not in calls
    assert calls["aws:ec2/getVpc:getVpc"].args["id"] == "vpc-0shared"
    subnets = [c.args["id"] for c in rec.calls if c.token == "aws:ec2/getSubnet:getSubnet"]
    assert subnets == ["subnet-u1", "subnet-u2"]
    cidrs = rec.stack_outputs["network"]["publicSubnetCidrs"]
    assert len(cidrs) == 2 and all(c.startswith("10.90.") for c in cidrs)
    provider = rec.named("pulumi:providers:aws", "us-east-aws")
    for call in rec.calls:
        assert call.provider.rsplit("::", 1)[0] == provider.urn, call.token
    cluster = _named(rec, CLUSTER, "").plain_inputs
    assert cluster["vpcConfig"]["subnetIds"] == ["subnet-p1", "subnet-p2"]
    for group in rec.of_type(NODE_GROUP):
        assert group.plain_inputs["subnetIds"] == ["subnet-p1", "subnet-p2"]
    assert _mount_target_subnets(rec) == ["subnet-p1", "subnet-p2"]
    assert {g.plain_inputs["vpcId"] for g in rec.of_type("aws:ec2/securityGroup:SecurityGroup")} == {"vpc-0shared"}
    controller = rec.named(RELEASE, "us-east-cluster-load-balancer-controller")
    assert controller.plain_inputs["values"]["vpcId"] == "vpc-0shared"
    net = rec.stack_outputs["network"]
    assert (net["vpcId"], net["vpcCidr"]) == ("vpc-0shared", "10.90.0.0/16")
    assert (net["privateSubnetIds"], net["publicSubnetIds"]) == (["subnet-p1", "subnet-p2"], ["subnet-u1", "subnet-u2"])


def test_too_few_eks_zones_is_an_error(fleet):
    def six(raw):
        raw["network"]["zoneCount"] = 6

    # us-east-1 has six zones in the mock, one of which EKS cannot use.
    with pytest.raises(Exception, match="zoneCount: is 6 but the region has only 5 zones EKS supports"):
        _run(fleet, _cfg(six))


# --------------------------------------------------------------------------- control plane


def test_endpoint_is_private_only_without_public_cidrs(fleet):
    rec = _run(fleet, _cfg(lambda raw: raw["cluster"].update(publicAccessCidrs=[])))
    vpc = _named(rec, CLUSTER, "").plain_inputs["vpcConfig"]
    assert (vpc["endpointPrivateAccess"], vpc["endpointPublicAccess"]) == (True, False)
    assert "publicAccessCidrs" not in vpc


def test_cluster_is_private_pinned_encrypted_and_logged(us_east):
    cluster = _named(us_east, CLUSTER, "")
    i = cluster.plain_inputs
    assert i["name"] == "us-east-cluster"
    assert i["version"] == "1.35"
    assert i["vpcConfig"] == {
        "subnetIds": [s.outputs["id"] for s in _subnets(us_east, "private")],
        "endpointPrivateAccess": True,
        # us-east lets only the deployer's egress range reach the endpoint publicly.
        "endpointPublicAccess": True,
        "publicAccessCidrs": ["203.0.113.0/24"],
    }
    assert i["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    assert i["bootstrapSelfManagedAddons"] is False
    key = _named(us_east, "aws:kms/key:Key", "-secrets")
    assert key.plain_inputs["enableKeyRotation"] is True
    assert i["encryptionConfig"] == {"provider": {"keyArn": key.outputs["arn"]}, "resources": ["secrets"]}
    assert i["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert i["deletionProtection"] is True
    role = _named(us_east, ROLE, "-control-plane")
    assert i["roleArn"] == role.outputs["arn"]
    trust = json.loads(role.plain_inputs["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
                      "Action": ["sts:AssumeRole", "sts:TagSession"]}]
    attachment = _named(us_east, ATTACHMENT, "-control-plane-amazoneksclusterpolicy").plain_inputs
    assert attachment == {"role": role.outputs["name"], "policyArn": "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"}
    key_policy = _named(us_east, "aws:iam/rolePolicy:RolePolicy", "-control-plane-secrets-key").plain_inputs
    assert key_policy["role"] == role.outputs["name"]
    assert json.loads(key_policy["policy"])["Statement"][0]["Resource"] == key.outputs["arn"]
    assert cluster.protect and key.protect


def test_public_access_cidrs_open_the_public_endpoint_to_them_only(fleet):
    def public(raw):
        raw["cluster"]["publicAccessCidrs"] = ["203.0.113.0/24", "198.51.100.7/32"]

    rec = _run(fleet, _cfg(public))
    vpc_config = _named(rec, CLUSTER, "").plain_inputs["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["publicAccessCidrs"] == ["203.0.113.0/24", "198.51.100.7/32"]


def test_private_access_cidrs_open_the_private_endpoint_to_in_vpc_runners(fleet, us_east):
    assert us_east.of_type(SG_INGRESS) and not [r for r in us_east.of_type(SG_INGRESS) if "-api-from-" in r.name]

    def runners(raw):
        raw["cluster"]["privateAccessCidrs"] = ["10.40.200.0/24", "192.168.8.0/22"]

    rec = _run(fleet, _cfg(runners))
    cluster_sg = _named(rec, CLUSTER, "").outputs["vpcConfig"]["clusterSecurityGroupId"]
    rules = {r.plain_inputs["cidrIpv4"]: r.plain_inputs for r in rec.of_type(SG_INGRESS) if "-api-from-" in r.name}
    assert set(rules) == {"10.40.200.0/24", "192.168.8.0/22"}
    for rule in rules.values():
        assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443)
        assert rule["securityGroupId"] == cluster_sg


def test_private_access_cidrs_are_aws_only():
    from gpu_fleet.components.config import parse_fleet as parse

    raw = yaml.safe_load(EU_WEST.read_text())["config"]["gpu-fleet:fleet"]
    raw["cluster"]["privateAccessCidrs"] = ["10.0.0.0/24"]
    with pytest.raises(ConfigError, match=r"cluster\.privateAccessCidrs: only used on aws"):
        parse(raw, str(EU_WEST), EU_WEST.parent)


def test_configured_admins_get_cluster_admin(fleet):
    admin = "arn:aws:iam::210987654321:role/sre"

    def admins(raw):
        raw["cluster"]["adminPrincipalArns"] = [admin, DEPLOYER, admin]  # each principal once only

    rec = _run(fleet, _cfg(admins))
    assert _admin_entries(rec) == {DEPLOYER, admin}
    assert len(rec.of_type(ACCESS_ENTRY)) == 3  # two admins and the node role
    associations = {a.plain_inputs["principalArn"]: a.plain_inputs for a in rec.of_type(ACCESS_POLICY)}
    assert set(associations) == {DEPLOYER, admin}
    for a in associations.values():
        assert a["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        assert a["accessScope"] == {"type": "cluster"}
        assert a["clusterName"] == "us-east-cluster"


def test_the_reference_stack_names_its_ci_roles_as_admins(us_east):
    expected = set(_raw()["cluster"]["adminPrincipalArns"])
    assert {arn.rsplit("/", 1)[1] for arn in expected} >= {"gpu-fleet-deploy", "gpu-fleet-preview"}
    assert _admin_entries(us_east) == expected


def test_admins_never_follow_the_identity_running_pulumi(fleet, monkeypatch):
    """A preview by another role (or an ``up`` from a laptop) plans exactly the same entries."""
    def entries(caller_arn: str) -> list[tuple[str, str, dict]]:
        monkeypatch.setitem(mock_outputs.CALLS, CALLER, lambda args, ctx: {
            "accountId": mock_outputs.ACCOUNT_ID, "arn": caller_arn, "userId": "AROAX:x", "id": "x"})
        rec = _run(fleet, load_stack_file(US_EAST))
        return sorted((r.type, r.name, r.plain_inputs) for r in rec.resources
                      if r.type in (ACCESS_ENTRY, ACCESS_POLICY))

    ci = entries(f"arn:aws:sts::{mock_outputs.ACCOUNT_ID}:assumed-role/gpu-fleet-preview/github-1")
    laptop = entries(f"arn:aws:sts::{mock_outputs.ACCOUNT_ID}:assumed-role/AWSReservedSSO_Admin_1/alice")
    assert ci == laptop
    assert len(ci) == 2 * len(_raw()["cluster"]["adminPrincipalArns"]) + 1


def test_no_caller_identity_lookup(us_east):
    tokens = {c.token for c in us_east.calls}
    assert CALLER not in tokens and "aws:iam/getSessionContext:getSessionContext" not in tokens


def test_no_admins_warns_that_kubernetes_is_unreachable(fleet):
    def none(raw):
        raw["cluster"]["adminPrincipalArns"] = []

    rec = _run(fleet, _cfg(none))
    assert _admin_entries(rec) == set()
    assert any("cluster.adminPrincipalArns is empty" in w for w in rec.warnings)


@pytest.mark.parametrize("arn", [
    "arn:aws:sts::123456789012:assumed-role/ci/session",  # a session, not the role
    "123456789012",
    "arn:aws:iam::1234:role/x",
])
def test_admin_principals_must_be_role_or_user_arns(arn):
    def bad(raw):
        raw["cluster"]["adminPrincipalArns"] = [arn]

    with pytest.raises(ConfigError, match=r"cluster\.adminPrincipalArns\[0\]"):
        _cfg(bad)


def test_gke_admin_accounts_are_refused_on_aws():
    def bad(raw):
        raw["cluster"]["adminAccounts"] = ["alice@example.com"]

    with pytest.raises(ConfigError, match=r"cluster\.adminAccounts: only used on gcp"):
        _cfg(bad)


# --------------------------------------------------------------------------- nodes


def test_node_role_and_access_entry(us_east):
    role = _named(us_east, ROLE, "-nodes")
    trust = json.loads(role.plain_inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = {a.plain_inputs["policyArn"] for a in us_east.of_type(ATTACHMENT)
                if a.plain_inputs["role"] == role.outputs["name"]}
    assert attached == {f"arn:aws:iam::aws:policy/{p}" for p in (
        "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly",
        "AmazonSSMManagedInstanceCore")}
    entry = _named(us_east, ACCESS_ENTRY, "-nodes").plain_inputs
    assert (entry["principalArn"], entry["type"]) == (role.outputs["arn"], "EC2_LINUX")
    for group in us_east.of_type(NODE_GROUP):
        assert group.plain_inputs["nodeRoleArn"] == role.outputs["arn"]


NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


def test_no_managed_node_group_runs_a_gpu_instance_type(us_east):
    gpu_types = {s.machine_type for s in load_catalog().shapes["aws"].values()}
    groups = us_east.of_type(NODE_GROUP)
    assert [g.name for g in groups] == ["us-east-cluster-system"]
    assert not set(groups[0].plain_inputs["instanceTypes"]) & gpu_types
    assert [t.name for t in us_east.of_type(LAUNCH_TEMPLATE)] == ["us-east-cluster-system"]


def test_karpenter_provisions_each_gpu_pool(us_east):
    pools = {r.plain_inputs["metadata"]["name"]: r.plain_inputs["spec"] for r in us_east.of_type(NODE_POOL)}
    classes = {r.plain_inputs["metadata"]["name"]: r.plain_inputs["spec"] for r in us_east.of_type(NODE_CLASS)}
    assert set(pools) == set(classes) == {"h100", "a100"}
    h100 = pools["h100"]
    assert h100["limits"] == {"nvidia.com/gpu": 160}
    assert pools["a100"]["limits"] == {"nvidia.com/gpu": 32}
    assert {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]} in \
        h100["template"]["spec"]["requirements"]
    assert h100["template"]["metadata"]["labels"] == {"gpu-fleet/pool": "h100", "gpu-fleet/gpu": "h100"}
    assert h100["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert h100["template"]["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                        "name": "h100"}
    cls = classes["h100"]
    assert cls["role"] == _named(us_east, ROLE, "-nodes").outputs["name"]
    assert cls["subnetSelectorTerms"] == [{"id": s.outputs["id"]} for s in _subnets(us_east, "private")]
    nodes_sg = _named(us_east, "aws:ec2/securityGroup:SecurityGroup", "-nodes").outputs["id"]
    cluster_sg = _named(us_east, CLUSTER, "").outputs["vpcConfig"]["clusterSecurityGroupId"]
    assert cls["securityGroupSelectorTerms"] == [{"id": nodes_sg}, {"id": cluster_sg}]
    assert cls["blockDeviceMappings"][0]["ebs"] == {
        "volumeSize": "1000Gi", "volumeType": "gp3", "encrypted": True, "deleteOnTermination": True,
        "throughput": 1000, "iops": 4000}
    assert cls["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert classes["a100"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == "500Gi"  # the pool default
    assert "capacityReservationSelectorTerms" not in cls


def test_karpenter_controller_runs_on_the_system_nodes_with_pod_identity(us_east):
    release = _named(us_east, RELEASE, "-karpenter-controller")
    i = release.plain_inputs
    assert (i["chart"], i["version"], i["namespace"]) == ("oci://public.ecr.aws/karpenter/karpenter", "1.14.1",
                                                          "kube-system")
    values = i["values"]
    assert values["nodeSelector"]["gpu-fleet/pool"] == "system"
    assert values["settings"]["clusterName"] == "us-east-cluster"
    queue = _named(us_east, "aws:sqs/queue:Queue", "-karpenter-interruption")
    assert values["settings"]["interruptionQueue"] == queue.outputs["name"]
    association = _named(us_east, POD_IDENTITY, "-karpenter-controller").plain_inputs
    assert (association["namespace"], association["serviceAccount"]) == ("kube-system", "karpenter")
    assert association["serviceAccount"] == values["serviceAccount"]["name"]
    role = _named(us_east, ROLE, "-karpenter-controller")
    assert association["roleArn"] == role.outputs["arn"]
    attached = [a for a in us_east.of_type(ATTACHMENT) if a.plain_inputs["role"] == role.outputs["name"]]
    assert len(attached) == 5
    rules = [r.plain_inputs["eventPattern"] for r in us_east.of_type("aws:cloudwatch/eventRule:EventRule")]
    assert len(rules) == 5
    targets = us_east.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert {t.plain_inputs["arn"] for t in targets} == {queue.outputs["arn"]}
    # The node role's EC2_LINUX access entry is what Karpenter's nodes join with.
    assert _named(us_east, ACCESS_ENTRY, "-nodes").urn in release.depends_on


def test_reservations_and_capacity_types_reach_karpenter(fleet):
    def reserved(raw):
        raw["gpuPools"][0].update(capacity=["reserved", "spot", "on-demand"],
                                  reservations=["cr-0123456789abcdef0", "cr-0fedcba9876543210"])

    rec = _run(fleet, _cfg(reserved))
    pools = {r.plain_inputs["metadata"]["name"]: r.plain_inputs["spec"] for r in rec.of_type(NODE_POOL)}
    classes = {r.plain_inputs["metadata"]["name"]: r.plain_inputs["spec"] for r in rec.of_type(NODE_CLASS)}
    assert {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved", "spot", "on-demand"]} \
        in pools["h100"]["template"]["spec"]["requirements"]
    assert classes["h100"]["capacityReservationSelectorTerms"] == [
        {"id": "cr-0123456789abcdef0"}, {"id": "cr-0fedcba9876543210"}]
    assert "capacityReservationSelectorTerms" not in classes["a100"]


def test_system_node_group(us_east):
    group = _named(us_east, NODE_GROUP, "-system")
    i = group.plain_inputs
    assert i["instanceTypes"] == ["m7i.2xlarge"]
    assert i["amiType"] == "AL2023_x86_64_STANDARD"
    assert i["labels"] == SYSTEM_NODE_SELECTOR
    assert "taints" not in i
    assert i["scalingConfig"] == {"minSize": 2, "maxSize": 4, "desiredSize": 2}
    assert i["nodeGroupName"] == "system"
    lt = _named(us_east, LAUNCH_TEMPLATE, "-system").plain_inputs
    assert lt["blockDeviceMappings"][0]["ebs"] == {"volumeSize": 100, "volumeType": "gp3", "encrypted": True,
                                                    "deleteOnTermination": True}
    assert group.protect and group.ignore_changes == ["scalingConfig.desiredSize"]


def test_system_instance_type_override(fleet):
    def bigger(raw):
        raw["cluster"]["systemPool"] = {"machineType": "m7i.4xlarge", "diskSizeGb": 200, "minNodes": 3, "maxNodes": 6}

    rec = _run(fleet, _cfg(bigger))
    i = _named(rec, NODE_GROUP, "-system").plain_inputs
    assert i["instanceTypes"] == ["m7i.4xlarge"]
    assert i["scalingConfig"] == {"minSize": 3, "maxSize": 6, "desiredSize": 3}
    assert _named(rec, LAUNCH_TEMPLATE, "-system").plain_inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 200


# --------------------------------------------------------------------------- add-ons


def test_addons_with_network_policy_and_their_pinned_versions(us_east):
    addons = {a.plain_inputs["addonName"]: a for a in us_east.of_type(ADDON)}
    assert set(addons) == {"vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "aws-ebs-csi-driver",
                           "aws-efs-csi-driver"}
    assert json.loads(addons["vpc-cni"].plain_inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    for name, addon in addons.items():
        assert addon.plain_inputs["clusterName"] == "us-east-cluster"
        # A pinned version is passed; an unpinned one is left to EKS's default for the cluster version.
        assert addon.plain_inputs.get("addonVersion") == pins.EKS_ADDONS[name].version, name
        assert addon.plain_inputs["resolveConflictsOnCreate"] == "OVERWRITE"
        if name != "vpc-cni":
            assert "configurationValues" not in addon.plain_inputs, name
    assert addons["kube-proxy"].plain_inputs["addonVersion"] == "v1.35.3-eksbuild.2"
    assert addons["vpc-cni"].plain_inputs["addonVersion"] == "v1.21.1-eksbuild.7"


def test_addon_pins_apply_to_the_pinned_kubernetes_version_only():
    assert eks.addon_version("coredns", pins.KUBERNETES.version) == pins.EKS_ADDONS["coredns"].version is not None
    assert eks.addon_version("coredns", "1.36") is None
    assert eks.addon_version("aws-ebs-csi-driver", pins.KUBERNETES.version) is None


def test_node_agents_come_before_nodes_and_deployments_after_the_system_nodes(us_east):
    system = _named(us_east, NODE_GROUP, "-system")
    for group in us_east.of_type(NODE_GROUP):
        for addon in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
            assert _addon(us_east, addon).urn in group.depends_on, (group.name, addon)
    for addon in ("coredns", "aws-ebs-csi-driver", "aws-efs-csi-driver"):
        assert system.urn in _addon(us_east, addon).depends_on, addon


@pytest.mark.parametrize("addon,role,accounts,policy", [
    ("aws-ebs-csi-driver", "ebs-csi-driver", ["ebs-csi-controller-sa"], "AmazonEBSCSIDriverPolicy"),
    ("aws-efs-csi-driver", "efs-csi-driver", ["efs-csi-controller-sa", "efs-csi-node-sa"], "AmazonEFSCSIDriverPolicy"),
])
def test_csi_drivers_get_their_roles_through_pod_identity(us_east, addon, role, accounts, policy):
    iam_role = _named(us_east, ROLE, f"-{role}")
    trust = json.loads(iam_role.plain_inputs["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                      "Action": ["sts:AssumeRole", "sts:TagSession"]}]
    attachment = _named(us_east, ATTACHMENT, f"-{role}").plain_inputs
    assert attachment == {"role": iam_role.outputs["name"],
                          "policyArn": f"arn:aws:iam::aws:policy/service-role/{policy}"}
    driver = _addon(us_east, addon)
    for account in accounts:
        association = _named(us_east, POD_IDENTITY, f"-{account}")
        i = association.plain_inputs
        assert (i["clusterName"], i["namespace"], i["serviceAccount"], i["roleArn"]) == (
            "us-east-cluster", "kube-system", account, iam_role.outputs["arn"])
        assert association.urn in driver.depends_on
    assert _addon(us_east, "eks-pod-identity-agent").urn in driver.depends_on


# --------------------------------------------------------------------------- storage


def test_weight_cache_file_system(us_east):
    fs = _named(us_east, "aws:efs/fileSystem:FileSystem", "-weights")
    assert fs.plain_inputs["encrypted"] is True
    assert fs.plain_inputs["throughputMode"] == "elastic"
    assert fs.protect
    group = _named(us_east, "aws:ec2/securityGroup:SecurityGroup", "-weights")
    rule = _named(us_east, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "-weights-nfs").plain_inputs
    nodes_sg = us_east.stack_outputs["network"]["nodeSecurityGroupId"]
    assert (rule["securityGroupId"], rule["referencedSecurityGroupId"]) == (group.outputs["id"], nodes_sg)
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 2049, 2049)
    assert _mount_target_subnets(us_east) == us_east.stack_outputs["network"]["privateSubnetIds"]
    for t in us_east.of_type("aws:efs/mountTarget:MountTarget"):
        assert t.plain_inputs["fileSystemId"] == fs.outputs["id"]
        assert t.plain_inputs["securityGroups"] == [group.outputs["id"]]


def test_storage_classes(us_east):
    classes = {m["metadata"]["name"]: (r, m) for r, m in us_east.kubernetes_objects() if m["kind"] == "StorageClass"}
    assert set(classes) == {"gp3", "efs-weights"}
    provider = us_east.named("pulumi:providers:kubernetes", "us-east-cluster-k8s")
    for record, manifest in classes.values():
        assert validate(manifest) == (True, []), manifest
        assert us_east.provider_of(record) is provider
    _, gp3 = classes["gp3"]
    assert gp3["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert gp3["provisioner"] == "ebs.csi.aws.com"
    assert gp3["parameters"]["type"] == "gp3" and gp3["parameters"]["encrypted"] == "true"
    assert gp3["volumeBindingMode"] == "WaitForFirstConsumer"
    record, efs = classes["efs-weights"]
    fs = _named(us_east, "aws:efs/fileSystem:FileSystem", "-weights")
    assert efs["provisioner"] == "efs.csi.aws.com"
    assert efs["parameters"] == {"provisioningMode": "efs-ap", "fileSystemId": fs.outputs["id"],
                                 "directoryPerms": "700", "uid": "2000", "gid": "0"}
    assert efs["reclaimPolicy"] == "Retain"
    assert {t.urn for t in us_east.of_type("aws:efs/mountTarget:MountTarget")} <= set(record.depends_on)
    assert us_east.stack_outputs["storageClass"] == "efs-weights"
    # No other class claims to be the default.
    default = "storageclass.kubernetes.io/is-default-class"
    defaults = [m for _, m in classes.values() if (m["metadata"].get("annotations") or {}).get(default) == "true"]
    assert len(defaults) == 1


# --------------------------------------------------------------------------- load balancer controller


def test_load_balancer_controller(us_east):
    release = us_east.named(RELEASE, "us-east-cluster-load-balancer-controller")
    i = release.plain_inputs
    assert (i["chart"], i["name"], i["namespace"]) == ("aws-load-balancer-controller",) * 2 + ("kube-system",)
    assert i["version"] == eks.LBC_CHART_VERSION
    assert i["repositoryOpts"] == {"repo": "https://aws.github.io/eks-charts"}
    values = i["values"]
    assert values["clusterName"] == "us-east-cluster"
    assert values["region"] == "us-east-1"
    assert values["vpcId"] == us_east.stack_outputs["network"]["vpcId"]
    assert values["serviceAccount"] == {"create": True, "name": "aws-load-balancer-controller"}
    assert values["nodeSelector"] == SYSTEM_NODE_SELECTOR
    assert (values["ingressClass"], values["createIngressClassResource"]) == ("alb", True)
    assert values["enableServiceMutatorWebhook"] is False
    assert us_east.stack_outputs["ingressClass"] == "alb"
    provider = us_east.named("pulumi:providers:kubernetes", "us-east-cluster-k8s")
    assert us_east.provider_of(release) is provider

    policy = _named(us_east, "aws:iam/policy:Policy", "-load-balancer-controller")
    assert json.loads(policy.plain_inputs["policy"]) == json.loads(eks.LBC_POLICY_FILE.read_text())
    role = _named(us_east, ROLE, "-load-balancer-controller")
    trust = json.loads(role.plain_inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    attachment = _named(us_east, ATTACHMENT, "-load-balancer-controller").plain_inputs
    assert attachment == {"role": role.outputs["name"], "policyArn": policy.outputs["arn"]}
    association = _named(us_east, POD_IDENTITY, "-aws-load-balancer-controller")
    assert (association.plain_inputs["namespace"], association.plain_inputs["serviceAccount"]) == (
        "kube-system", "aws-load-balancer-controller")
    assert association.plain_inputs["roleArn"] == role.outputs["arn"]
    assert association.urn in release.depends_on


def test_vendored_controller_policy_is_the_upstream_document():
    doc = json.loads(eks.load_balancer_controller_policy())
    assert doc["Version"] == "2012-10-17"
    actions = {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # What ALB Ingresses need: load balancers, listeners, rules, target groups, security groups.
    assert {"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:CreateRule", "elasticloadbalancing:CreateTargetGroup",
            "elasticloadbalancing:RegisterTargets", "ec2:CreateSecurityGroup", "ec2:DescribeSubnets",
            "acm:DescribeCertificate", "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:ModifyIpPools"} <= actions
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])


# --------------------------------------------------------------------------- providers, protection, kubeconfig


def test_every_aws_resource_uses_the_regions_provider(us_east):
    provider = us_east.named("pulumi:providers:aws", "us-east-aws")
    component = next(r for r in us_east.resources if r.type == COMPONENT)
    karpenter_component = us_east.named("gpufleet:index:Karpenter", "us-east-cluster-karpenter")
    assert karpenter_component.parent == component.urn
    aws_resources = [r for r in us_east.resources if r.type.startswith("aws:")]
    assert len(aws_resources) >= 60
    for r in aws_resources:
        assert us_east.provider_of(r) is provider, r.name
        assert r.parent in (component.urn, karpenter_component.urn), r.name
    kube = [r for r in us_east.resources if r.type.startswith("kubernetes:")]
    assert kube and all(r.parent in (component.urn, karpenter_component.urn) for r in kube)


def test_stateful_resources_are_protected_and_nothing_is_retained(us_east):
    protected = {(r.type, r.name) for r in us_east.resources if r.protect}
    assert protected == {
        ("aws:ec2/vpc:Vpc", "us-east-cluster-vpc"),
        (CLUSTER, "us-east-cluster"),
        ("aws:kms/key:Key", "us-east-cluster-secrets"),
        ("aws:efs/fileSystem:FileSystem", "us-east-cluster-weights"),
        (NODE_GROUP, "us-east-cluster-system"),
    }
    assert not any(r.retain_on_delete for r in us_east.resources)


def test_kubeconfig_is_a_secret_for_aws_eks_get_token(us_east):
    assert "kubeconfig" in us_east.secret_outputs
    cluster = _named(us_east, CLUSTER, "")
    doc = yaml.safe_load(us_east.stack_outputs["kubeconfig"])
    context = cluster.outputs["arn"]
    assert doc["current-context"] == context
    assert doc["clusters"][0]["cluster"] == {"server": cluster.outputs["endpoint"],
                                             "certificate-authority-data": mock_outputs._CA}
    user = doc["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"] == ["eks", "get-token", "--cluster-name", "us-east-cluster", "--region", "us-east-1"]
    assert user["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert us_east.stack_outputs["clusterName"] == "us-east-cluster"


def test_kubernetes_provider_waits_for_nodes_and_addons(us_east):
    provider = us_east.named("pulumi:providers:kubernetes", "us-east-cluster-k8s")
    component = next(r for r in us_east.resources if r.type == COMPONENT)
    assert provider.parent == component.urn
    assert is_secret(provider.inputs["kubeconfig"])
    assert provider.plain_inputs["kubeconfig"] == us_east.stack_outputs["kubeconfig"]
    system = us_east.named(NODE_GROUP, "us-east-cluster-system")
    waits_for = {system.urn} | {r.urn for r in us_east.of_type(ADDON)} | {
        r.urn for r in us_east.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")}
    assert len(waits_for) == 7 + len(_raw()["cluster"]["adminPrincipalArns"])  # system group, 6 add-ons, admins
    assert waits_for <= set(provider.depends_on)
    # Nothing of Karpenter's is waited for: a capacity shortage holds back only the models.
    karpenter = {r.urn for r in us_east.resources if "karpenter" in r.name}
    assert karpenter and not karpenter & set(provider.depends_on)


def test_labels_are_shared_with_gke():
    assert eks.POOL_LABEL is contract.POOL_LABEL is gke_cluster.POOL_LABEL
    assert karpenter.GPU_LABEL is contract.GPU_LABEL is gke_cluster.GPU_LABEL


# --------------------------------------------------------------------------- pure functions


def test_subnet_layout_of_the_reference_vpc():
    assert [(str(pub), str(priv)) for pub, priv in subnet_layout("10.40.0.0/16", 2)] == [
        ("10.40.128.0/21", "10.40.0.0/18"), ("10.40.136.0/21", "10.40.64.0/18")]


@pytest.mark.parametrize("cidr,zones,message", [
    ("10.0.0.0/8", 3, "larger than an AWS VPC"),
    ("10.40.0.0/24", 3, "too small for 3 zones: public subnets would be /30"),
    ("10.40.0.0/16", 0, "at least one zone"),
])
def test_subnet_layout_rejects(cidr, zones, message):
    with pytest.raises(ValueError, match=message):
        subnet_layout(cidr, zones)


@given(
    address=st.integers(min_value=0, max_value=2**32 - 1),
    prefix=st.integers(min_value=16, max_value=26),
    zones=st.integers(min_value=2, max_value=6),
)
def test_subnet_layout_properties(address, prefix, zones):
    vpc = ipaddress.IPv4Network((address, prefix), strict=False)
    try:
        layout = subnet_layout(vpc, zones)
    except ValueError:
        # Only when the public subnets would be smaller than AWS allows.
        assert prefix + 1 + (zones - 1).bit_length() + 3 > 28
        return
    assert len(layout) == zones
    subnets = [net for pair in layout for net in pair]
    for net in subnets:
        assert net.subnet_of(vpc)
        assert net.prefixlen <= 28
    for i, a in enumerate(subnets):
        for b in subnets[i + 1:]:
            assert not a.overlaps(b), (a, b)
    for public, private in layout:
        assert private.num_addresses == 8 * public.num_addresses
    # The private subnets (nodes and pods) hold more than a quarter of the VPC.
    assert sum(p.num_addresses for _, p in layout) * 4 > vpc.num_addresses


def test_eks_zones_skip_unsupported_zone_ids():
    names = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    ids = ["use1-az4", "use1-az6", "use1-az3", "use1-az1"]
    assert eks.eks_zones(names, ids, 3) == ["us-east-1a", "us-east-1b", "us-east-1d"]
    with pytest.raises(ProblemError, match="zoneCount: is 4") as raised:
        eks.eks_zones(names, ids, 4)
    assert raised.value.problem.path == "network.zoneCount"


def test_launch_template_spec_for_system_nodes_has_no_gpu_extras():
    spec = eks.launch_template_spec(100)
    assert spec["block_device_mappings"][0]["ebs"] == {"volume_size": 100, "volume_type": "gp3", "encrypted": True,
                                                       "delete_on_termination": True}
    assert spec["metadata_options"]["http_tokens"] == "required"
    assert "capacity_reservation_specification" not in spec


def test_kubeconfig_document():
    doc = yaml.safe_load(eks.render_kubeconfig("ctx", "c1", "eu-west-1", "https://x.eks.amazonaws.com", "Q0E="))
    assert doc["clusters"] == [{"name": "ctx", "cluster": {"server": "https://x.eks.amazonaws.com",
                                                           "certificate-authority-data": "Q0E="}}]
    assert doc["contexts"] == [{"name": "ctx", "context": {"cluster": "ctx", "user": "ctx"}}]
    exec_ = doc["users"][0]["user"]["exec"]
    assert exec_["args"] == ["eks", "get-token", "--cluster-name", "c1", "--region", "eu-west-1"]


def test_on_demand_before_spot_renders_weighted_node_pools_the_pool_waits_on(fleet):
    rec = _run(fleet, _cfg(lambda raw: raw["gpuPools"][0].update(capacity=["on-demand", "spot"])))
    pools = {r.plain_inputs["metadata"]["name"]: r for r in rec.of_type(NODE_POOL)}
    assert set(pools) == {"h100-on-demand", "h100-spot", "a100"}
    first, fallback = pools["h100-on-demand"], pools["h100-spot"]
    assert (first.plain_inputs["spec"]["weight"], fallback.plain_inputs["spec"]["weight"]) == (20, 10)
    # The first tier is what models and placeholders wait on: it waits for the fallback tier.
    assert fallback.urn in first.depends_on
    assert {r.plain_inputs["metadata"]["name"] for r in rec.of_type(NODE_CLASS)} == {"h100", "a100"}
