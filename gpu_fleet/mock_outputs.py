"""What the clouds would answer, offline: computed outputs and data-source results.

The engine returns a resource's inputs as its state; this module adds the attributes a
provider computes (ARNs, endpoints, load balancer hostnames...) that downstream code
reads, and answers data-source calls for the provider's region. Values are shaped like
the real ones (an EKS endpoint is an https URL, a zone list has that region's zones) so
code that parses them is exercised; they are plainly placeholders, never real accounts.
An unknown data source is an error, not an empty answer, so a new call gets an answer
here on purpose.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pulumi.runtime import rpc

from gpu_fleet.components import cloud_limits

ACCOUNT_ID = "123456789012"
_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nOFFLINE-PLAN\n-----END CERTIFICATE-----\n").decode()


class MockError(Exception):
    """The plan asked the mock cloud something it cannot answer."""


@dataclass(frozen=True)
class Context:
    """The provider a resource or call goes through."""

    region: str
    project: str
    stack: str


def _suffix(name: str, n: int = 7) -> str:
    """A stable stand-in for the random suffix Pulumi auto-naming adds."""
    return hashlib.sha256(name.encode()).hexdigest()[:n]


def _aws_arn(service: str, ctx: Context, resource: str) -> str:
    return f"arn:aws:{service}:{ctx.region}:{ACCOUNT_ID}:{resource}"


def _eks_cluster(name: str, inputs: dict, ctx: Context) -> dict:
    cluster = inputs.get("name") or f"{name}-{_suffix(name)}"
    oidc = f"https://oidc.eks.{ctx.region}.amazonaws.com/id/{_suffix(name, 32).upper()}"
    return {
        "name": cluster,
        "arn": _aws_arn("eks", ctx, f"cluster/{cluster}"),
        "endpoint": f"https://{_suffix(name, 32).upper()}.gr7.{ctx.region}.eks.amazonaws.com",
        "certificateAuthority": {"data": _CA},
        "identities": [{"oidcs": [{"issuer": oidc}]}],
        "vpcConfig": {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{_suffix(name + 'cluster', 17)}"},
        "status": "ACTIVE",
    }


def _gke_cluster(name: str, inputs: dict, ctx: Context) -> dict:
    return {
        "endpoint": "172.16.0.34",
        "masterAuth": {"clusterCaCertificate": _CA},
        "selfLink": f"https://container.googleapis.com/v1/projects/{ctx.project}/locations/{inputs.get('location', ctx.region)}/clusters/{inputs.get('name', name)}",
    }


def _gcp_network(name: str, inputs: dict, ctx: Context) -> dict:
    net = inputs.get("name") or f"{name}-{_suffix(name)}"
    path = f"projects/{ctx.project}/global/networks/{net}"
    return {"name": net, "id": path, "selfLink": f"https://www.googleapis.com/compute/v1/{path}"}


def _gcp_regional(collection: str) -> Callable[[str, dict, Context], dict]:
    """Regional compute resources (subnetworks, routers): name, ``id`` path and self link."""
    def compute(name: str, inputs: dict, ctx: Context) -> dict:
        resource = inputs.get("name") or f"{name}-{_suffix(name)}"
        path = f"projects/{ctx.project}/regions/{inputs.get('region') or ctx.region}/{collection}/{resource}"
        return {"name": resource, "id": path, "selfLink": f"https://www.googleapis.com/compute/v1/{path}"}
    return compute


def _gcp_service_account(name: str, inputs: dict, ctx: Context) -> dict:
    email = f"{inputs['accountId']}@{ctx.project}.iam.gserviceaccount.com"
    return {
        "email": email,
        "member": f"serviceAccount:{email}",
        "name": f"projects/{ctx.project}/serviceAccounts/{email}",
        "id": f"projects/{ctx.project}/serviceAccounts/{email}",
        "uniqueId": str(int(_suffix(name, 15), 16)).zfill(21)[:21],
    }


def _named_aws(service: str, kind: str) -> Callable[[str, dict, Context], dict]:
    def compute(name: str, inputs: dict, ctx: Context) -> dict:
        return {"arn": _aws_arn(service, ctx, f"{kind}/{inputs.get('name', name)}")}
    return compute


def _id(prefix: str) -> Callable[[str, dict, Context], dict]:
    def compute(name: str, inputs: dict, ctx: Context) -> dict:
        return {"id": f"{prefix}-{_suffix(name, 17)}"}
    return compute


def _iam_role(name: str, inputs: dict, ctx: Context) -> dict:
    role = inputs.get("name") or f"{name}-{_suffix(name)}"
    return {"name": role, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{role}"}


def _elasticache(name: str, inputs: dict, ctx: Context) -> dict:
    rg = inputs.get("replicationGroupId", name)
    return {
        "primaryEndpointAddress": f"master.{rg}.abcdef.{ctx.region.replace('-', '')}.cache.amazonaws.com",
        "readerEndpointAddress": f"replica.{rg}.abcdef.{ctx.region.replace('-', '')}.cache.amazonaws.com",
        "port": inputs.get("port", 6379),
        "arn": _aws_arn("elasticache", ctx, f"replicationgroup:{rg}"),
    }


def _memorystore(name: str, inputs: dict, ctx: Context) -> dict:
    return {
        "host": "10.60.0.4",
        "port": 6378,
        "currentLocationId": f"{ctx.region}-b",
        "serverCaCerts": [{"cert": "-----BEGIN CERTIFICATE-----\nOFFLINE-PLAN\n-----END CERTIFICATE-----\n"}],
        # Memorystore generates the AUTH string; the provider marks it secret.
        "authString": rpc.wrap_rpc_secret(f"offline-{_suffix(name, 24)}"),
    }


def _named(name: str, inputs: dict, ctx: Context) -> dict:
    """Pulumi auto-names resources whose name the provider takes (logical name + suffix)."""
    return {"name": inputs.get("name") or f"{name}-{_suffix(name)}"}


def _random_password(name: str, inputs: dict, ctx: Context) -> dict:
    # Alphanumeric and stable per name; the provider marks ``result`` secret.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(name.encode()).digest() * 8
    return {"result": rpc.wrap_rpc_secret("".join(alphabet[b % len(alphabet)] for b in digest[: int(inputs.get("length", 16))]))}


def _global_address(name: str, inputs: dict, ctx: Context) -> dict:
    # A private services access range holds Memorystore's host (10.60.0.4 above).
    address = "10.60.0.0" if inputs.get("purpose") == "VPC_PEERING" else "34.120.0.10"
    return {**_named(name, inputs, ctx), "address": inputs.get("address") or address}


def _k8s_service(name: str, inputs: dict, ctx: Context) -> dict:
    spec = inputs.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return {}
    if ctx.region and "-" in ctx.region and ctx.region[-1].isdigit() and ctx.region.count("-") >= 2:
        ingress = {"hostname": f"{_suffix(name, 32)}.elb.{ctx.region}.amazonaws.com"}
    else:
        ingress = {"ip": "34.90.0.10"}
    return {"status": {"loadBalancer": {"ingress": [ingress]}}}


def _global_accelerator(name: str, inputs: dict, ctx: Context) -> dict:
    return {
        "arn": f"arn:aws:globalaccelerator::{ACCOUNT_ID}:accelerator/{_suffix(name, 36)}",
        "dnsName": f"a{_suffix(name, 16)}.awsglobalaccelerator.com",
        "hostedZoneId": "Z2BJ6XQ5FK7U4H",
        "ipSets": [{"ipAddresses": ["75.2.0.10", "99.83.0.10"], "ipFamily": "IPv4"}],
    }


def _route53_health_check(name: str, inputs: dict, ctx: Context) -> dict:
    return {"id": f"{_suffix(name, 8)}-{_suffix(name + '1', 4)}-{_suffix(name + '2', 4)}-{_suffix(name + '3', 4)}-{_suffix(name + '4', 12)}"}


def _route53_hosted_zone(name: str, inputs: dict, ctx: Context) -> dict:
    zone = f"Z{_suffix(name, 20).upper()}"
    return {"zoneId": zone, "id": zone, "arn": f"arn:aws:route53:::hostedzone/{zone}",
            "nameServers": [f"ns-{100 + i}.awsdns-{10 + i}.{tld}" for i, tld in enumerate(("com", "net", "org", "co.uk"))]}


def _accelerator_listener(name: str, inputs: dict, ctx: Context) -> dict:
    return {"arn": f"{inputs.get('acceleratorArn')}/listener/{_suffix(name, 8)}"}


def _accelerator_endpoint_group(name: str, inputs: dict, ctx: Context) -> dict:
    return {"arn": f"{inputs.get('listenerArn')}/endpoint-group/{_suffix(name, 12)}"}


def _launch_template(name: str, inputs: dict, ctx: Context) -> dict:
    lt = f"lt-{_suffix(name, 17)}"
    return {"id": lt, "arn": _aws_arn("ec2", ctx, f"launch-template/{lt}"), "latestVersion": 1, "defaultVersion": 1}


def _kms_key(name: str, inputs: dict, ctx: Context) -> dict:
    key = f"{_suffix(name, 8)}-{_suffix(name + '1', 4)}-{_suffix(name + '2', 4)}-{_suffix(name + '3', 4)}-{_suffix(name + '4', 12)}"
    return {"id": key, "keyId": key, "arn": _aws_arn("kms", ctx, f"key/{key}")}


def _efs_file_system(name: str, inputs: dict, ctx: Context) -> dict:
    fs = f"fs-{_suffix(name, 17)}"
    return {"id": fs, "arn": _aws_arn("elasticfilesystem", ctx, f"file-system/{fs}"),
            "dnsName": f"{fs}.efs.{ctx.region}.amazonaws.com"}


def _iam_policy(name: str, inputs: dict, ctx: Context) -> dict:
    policy = inputs.get("name") or f"{name}-{_suffix(name)}"
    arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/{policy}"
    return {"name": policy, "arn": arn, "id": arn}


def _sqs_queue(name: str, inputs: dict, ctx: Context) -> dict:
    queue = inputs.get("name") or f"{name}-{_suffix(name)}"
    return {"name": queue, "arn": f"arn:aws:sqs:{ctx.region}:{ACCOUNT_ID}:{queue}",
            "url": f"https://sqs.{ctx.region}.amazonaws.com/{ACCOUNT_ID}/{queue}"}


def _event_rule(name: str, inputs: dict, ctx: Context) -> dict:
    rule = inputs.get("name") or f"{name}-{_suffix(name)}"
    return {"name": rule, "arn": _aws_arn("events", ctx, f"rule/{rule}")}


#: Attributes a provider computes, per resource type token.
COMPUTED: dict[str, Callable[[str, dict, Context], dict]] = {
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:iam/role:Role": _iam_role,
    "aws:ec2/vpc:Vpc": _id("vpc"),
    "aws:ec2/subnet:Subnet": _id("subnet"),
    "aws:ec2/securityGroup:SecurityGroup": _id("sg"),
    "aws:ec2/internetGateway:InternetGateway": _id("igw"),
    "aws:ec2/natGateway:NatGateway": _id("nat"),
    "aws:ec2/eip:Eip": _id("eipalloc"),
    "aws:ec2/routeTable:RouteTable": _id("rtb"),
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:kms/key:Key": _kms_key,
    "aws:efs/fileSystem:FileSystem": _efs_file_system,
    "aws:iam/policy:Policy": _iam_policy,
    "aws:sqs/queue:Queue": _sqs_queue,
    "aws:cloudwatch/eventRule:EventRule": _event_rule,
    "aws:eks/nodeGroup:NodeGroup": _named_aws("eks", "nodegroup"),
    "aws:elasticache/replicationGroup:ReplicationGroup": _elasticache,
    "aws:elasticache/subnetGroup:SubnetGroup": _named,
    "aws:elasticache/parameterGroup:ParameterGroup": _named,
    "gcp:compute/globalAddress:GlobalAddress": _global_address,
    "random:index/randomPassword:RandomPassword": _random_password,
    "aws:globalaccelerator/accelerator:Accelerator": _global_accelerator,
    "aws:route53/healthCheck:HealthCheck": _route53_health_check,
    "aws:route53/zone:Zone": _route53_hosted_zone,
    "aws:globalaccelerator/listener:Listener": _accelerator_listener,
    "aws:globalaccelerator/endpointGroup:EndpointGroup": _accelerator_endpoint_group,
    "gcp:compute/sSLPolicy:SSLPolicy": _named,
    "gcp:compute/securityPolicy:SecurityPolicy": _named,
    "gcp:container/cluster:Cluster": _gke_cluster,
    "gcp:compute/network:Network": _gcp_network,
    "gcp:compute/subnetwork:Subnetwork": _gcp_regional("subnetworks"),
    "gcp:compute/router:Router": _gcp_regional("routers"),
    "gcp:serviceaccount/account:Account": _gcp_service_account,
    "gcp:redis/instance:Instance": _memorystore,
    "kubernetes:core/v1:Service": _k8s_service,
}


def computed(type_: str, name: str, inputs: dict, ctx: Context) -> dict:
    """Provider-computed outputs for one resource."""
    fn = COMPUTED.get(type_)
    out = fn(name, inputs, ctx) if fn else {}
    if type_.startswith("kubernetes:") and isinstance(inputs.get("metadata"), dict) and not inputs["metadata"].get("name"):
        # Pulumi auto-names Kubernetes objects: logical name plus a random suffix.
        out["metadata"] = {**inputs["metadata"], "name": f"{name}-{_suffix(name, 8)}"}
    return out


# --------------------------------------------------------------------------- data sources

_AWS_ZONE_IDS = {"us-east-1": "use1", "us-east-2": "use2", "us-west-2": "usw2", "eu-west-1": "euw1", "eu-central-1": "euc1"}


def _aws_zones(args: dict, ctx: Context) -> dict:
    if not ctx.region:
        raise MockError("aws:getAvailabilityZones called without a region (no explicit provider?)")
    # The region's real zones where the limits data knows them (not six everywhere).
    names = cloud_limits.zones("aws", ctx.region) or [f"{ctx.region}{c}" for c in "abc"]
    short = _AWS_ZONE_IDS.get(ctx.region, ctx.region.replace("-", "")[:4])
    return {
        "names": names,
        "zoneIds": [f"{short}-az{i + 1}" for i in range(len(names))],
        "state": "available",
        "id": ctx.region,
        "groupNames": [ctx.region],
    }


def _aws_caller(args: dict, ctx: Context) -> dict:
    return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/platform-deployer",
            "userId": "AROAOFFLINEPLAN:deployer", "id": ACCOUNT_ID}


def _aws_partition(args: dict, ctx: Context) -> dict:
    return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}


def _aws_region(args: dict, ctx: Context) -> dict:
    return {"name": ctx.region, "region": ctx.region, "id": ctx.region, "endpoint": f"ec2.{ctx.region}.amazonaws.com"}


def _route53_zone(args: dict, ctx: Context) -> dict:
    name = args.get("name") or "example.com"
    return {"zoneId": "Z0OFFLINEPLAN", "id": "Z0OFFLINEPLAN", "name": name.rstrip(".") + "."}


def _gcp_zones(args: dict, ctx: Context) -> dict:
    region = args.get("region") or ctx.region
    return {"names": [f"{region}-{c}" for c in "abc"], "project": ctx.project, "region": region, "id": region}


def _gcp_client_config(args: dict, ctx: Context) -> dict:
    return {"accessToken": "offline-plan-token", "project": ctx.project, "region": ctx.region, "id": ctx.project}


def _gcp_project(args: dict, ctx: Context) -> dict:
    return {"projectId": ctx.project, "number": "123456789012", "name": ctx.project, "id": f"projects/{ctx.project}"}


def _gcp_network_lookup(args: dict, ctx: Context) -> dict:
    """An existing network, looked up by name in the provider's project."""
    path = f"projects/{args.get('project') or ctx.project}/global/networks/{args['name']}"
    return {"name": args["name"], "id": path, "selfLink": f"https://www.googleapis.com/compute/v1/{path}",
            "project": args.get("project") or ctx.project}


def _gcp_subnetwork_lookup(args: dict, ctx: Context) -> dict:
    """An existing subnetwork with secondary ranges named ``pods`` and ``services``."""
    project, region = args.get("project") or ctx.project, args.get("region") or ctx.region
    path = f"projects/{project}/regions/{region}/subnetworks/{args['name']}"
    return {
        "name": args["name"], "id": path, "selfLink": f"https://www.googleapis.com/compute/v1/{path}",
        "project": project, "region": region, "ipCidrRange": "10.90.0.0/20", "privateIpGoogleAccess": True,
        "secondaryIpRanges": [
            {"rangeName": "pods", "ipCidrRange": "10.92.0.0/14"},
            {"rangeName": "services", "ipCidrRange": "10.96.0.0/20"},
        ],
    }


def _aws_session_context(args: dict, ctx: Context) -> dict:
    """Like IAM: an assumed-role session ARN maps to its role; any other ARN passes through."""
    arn = args["arn"]
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        _, role, session = parts[5].split("/", 2)
        issuer = f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
        return {"arn": arn, "issuerArn": issuer, "issuerName": role, "issuerId": "AROAOFFLINEPLAN",
                "sessionName": session, "id": arn}
    return {"arn": arn, "issuerArn": arn, "issuerName": "", "issuerId": "", "sessionName": "", "id": arn}


def _aws_vpc_lookup(args: dict, ctx: Context) -> dict:
    """An existing VPC, looked up by ID in the provider's region."""
    vpc = args["id"]
    return {"id": vpc, "arn": _aws_arn("ec2", ctx, f"vpc/{vpc}"), "cidrBlock": "10.90.0.0/16", "state": "available",
            "enableDnsHostnames": True, "enableDnsSupport": True, "ownerId": ACCOUNT_ID, "region": ctx.region}


def _aws_subnet_lookup(args: dict, ctx: Context) -> dict:
    """An existing subnet, looked up by ID: a /24 of the looked-up VPC's 10.90.0.0/16
    (the third octet from the ID, so different subnets get different ranges)."""
    subnet = args["id"]
    return {"id": subnet, "arn": _aws_arn("ec2", ctx, f"subnet/{subnet}"),
            "cidrBlock": f"10.90.{int(_suffix(subnet, 2), 16)}.0/24", "vpcId": "vpc-offline",
            "availabilityZone": f"{ctx.region}a", "ownerId": ACCOUNT_ID}


def _aws_managed_prefix_list(args: dict, ctx: Context) -> dict:
    """An AWS-managed prefix list, looked up by name (``com.amazonaws.<region>.<service>``)."""
    name = args["name"]
    pl = f"pl-{_suffix(name, 17)}"
    return {"id": pl, "name": name, "arn": _aws_arn("ec2", ctx, f"prefix-list/{pl}"), "addressFamily": "IPv4",
            "maxEntries": 25, "ownerId": "AWS", "version": 1, "entries": []}


#: An offline stand-in for ip-ranges.json's ROUTE53_HEALTHCHECKS IPv4 ranges: twelve /26
#: ranges of the documentation blocks (RFC 5737), enough to need two Cloud Armor rules.
_OFFLINE_CHECKER_RANGES = [f"{net}.{host}/26" for net in ("192.0.2", "198.51.100", "203.0.113")
                           for host in (0, 64, 128, 192)]


def _aws_ip_ranges(args: dict, ctx: Context) -> dict:
    services = [s.lower() for s in args.get("services") or []]
    blocks = list(_OFFLINE_CHECKER_RANGES) if "route53_healthchecks" in services else []
    return {"cidrBlocks": blocks, "ipv6CidrBlocks": [], "services": services, "regions": args.get("regions") or [],
            "createDate": "2026-12-01-00-00-00", "syncToken": 1764547200, "id": "offline-ip-ranges"}


#: Canonical hosted zone IDs of Application Load Balancers (AWS "Elastic Load Balancing
#: endpoints and quotas"), for alias records to an ALB: the GPU catalog's AWS regions, as
#: hashicorp/terraform-provider-aws@cc0fff0ee90634c6bb137ec44732684543b68dbe
#: internal/service/elbv2/hosted_zone_id_data_source.go (hostedZoneIDPerRegionALBMap) lists them.
_ALB_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K", "us-east-2": "Z3AADJGX6KTTL2", "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5", "eu-west-1": "Z32O12XQLNTSW2", "eu-central-1": "Z215JYRZR1TBD5",
    "ca-central-1": "ZQSVJUPU6J1EY", "sa-east-1": "Z2P70J7HTTTPLU", "eu-north-1": "Z23TAZ6LKFMNIO",
    "eu-west-2": "ZHURV8PSTC4K8", "il-central-1": "Z09170902867EHPV2DABU", "ap-northeast-1": "Z14GRHDCWA56QT",
    "ap-northeast-2": "ZWKZPGTI48KDX", "ap-south-1": "ZP97RAFLXTNZK", "ap-southeast-1": "Z1LMS91P8CMLE5",
    "ap-southeast-2": "Z1GM3OXH4ZPM65", "ap-southeast-3": "Z08888821HLRG5A9ZRTER",
}


def _aws_load_balancer_lookup(args: dict, ctx: Context) -> dict:
    """The ALB an Ingress made, by the name the Ingress gave it."""
    if ctx.region not in _ALB_ZONE_IDS:
        raise MockError(f"aws:lb/getLoadBalancer: no ALB hosted zone recorded for region {ctx.region!r}")
    name = args["name"]
    suffix = f"app/{name}/{_suffix(name, 16)}"
    arn = _aws_arn("elasticloadbalancing", ctx, f"loadbalancer/{suffix}")
    return {"arn": arn, "arnSuffix": suffix, "id": arn, "name": name, "loadBalancerType": "application",
            "internal": False, "dnsName": f"{name}-{int(_suffix(name, 8), 16)}.{ctx.region}.elb.amazonaws.com",
            "zoneId": _ALB_ZONE_IDS[ctx.region]}


#: Data-source answers, per function token.
CALLS: dict[str, Callable[[dict, Context], dict]] = {
    "aws:lb/getLoadBalancer:getLoadBalancer": _aws_load_balancer_lookup,
    "aws:index/getAvailabilityZones:getAvailabilityZones": _aws_zones,
    "aws:index/getCallerIdentity:getCallerIdentity": _aws_caller,
    "aws:index/getPartition:getPartition": _aws_partition,
    "aws:index/getRegion:getRegion": _aws_region,
    "aws:route53/getZone:getZone": _route53_zone,
    "gcp:compute/getZones:getZones": _gcp_zones,
    "gcp:organizations/getClientConfig:getClientConfig": _gcp_client_config,
    "gcp:organizations/getProject:getProject": _gcp_project,
    "gcp:compute/getNetwork:getNetwork": _gcp_network_lookup,
    "gcp:compute/getSubnetwork:getSubnetwork": _gcp_subnetwork_lookup,
    "aws:iam/getSessionContext:getSessionContext": _aws_session_context,
    "aws:ec2/getVpc:getVpc": _aws_vpc_lookup,
    "aws:ec2/getSubnet:getSubnet": _aws_subnet_lookup,
    "aws:ec2/getManagedPrefixList:getManagedPrefixList": _aws_managed_prefix_list,
    "aws:index/getIpRanges:getIpRanges": _aws_ip_ranges,
}


def call(token: str, args: dict, ctx: Context) -> dict:
    fn = CALLS.get(token)
    if fn is None:
        raise MockError(f"no offline answer for data source {token}; add one to gpu_fleet/mock_outputs.py")
    return fn(args, ctx)


# --------------------------------------------------------------------------- manifests

def _integral(value: Any) -> Any:
    """``value`` with whole floats as ints: the engine sends every number as a float, the
    API server (and checkers such as checkov) read ``65535.0`` as not an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def kubernetes_manifest(type_: str, name: str, inputs: dict) -> Optional[dict]:
    """The Kubernetes object a ``kubernetes:*`` resource applies, or None if it is not one
    (Helm releases, providers, YAML/Chart components)."""
    if not type_.startswith("kubernetes:") or "helm.sh" in type_ or type_.startswith("kubernetes:yaml"):
        return None
    if "apiVersion" not in inputs or "kind" not in inputs:
        return None
    manifest = _integral({k: v for k, v in inputs.items() if not k.startswith("__")})
    meta = dict(manifest.get("metadata") or {})
    meta.setdefault("name", f"{name}-{_suffix(name, 8)}")
    manifest["metadata"] = meta
    return manifest
