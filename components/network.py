"""What a cluster component tells its neighbours about the network it built or adopted.

The cache and the entry point live in the cluster's network; these records carry the
IDs they need without exposing the cluster component's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class AwsNetwork:
    """The EKS cluster's VPC."""

    vpc_id: pulumi.Output[str]
    #: The VPC's primary CIDR (for security group rules and network policies).
    vpc_cidr: pulumi.Output[str]
    #: Nodes and caches go here (one subnet per availability zone).
    private_subnet_ids: pulumi.Output[list[str]]
    #: Internet-facing load balancers go here.
    public_subnet_ids: pulumi.Output[list[str]]
    #: The security group every node (system and GPU) is in: the cache admits only it.
    node_security_group_id: pulumi.Output[str]
    #: The public subnets' CIDRs: an ALB with IP targets reaches pods from these (the
    #: model pods' ingress NetworkPolicy admits them; pods live in the private subnets).
    public_subnet_cidrs: pulumi.Output[list[str]]


@dataclass(frozen=True)
class GcpNetwork:
    """The GKE cluster's VPC-native network."""

    #: ``projects/<p>/global/networks/<n>`` (Memorystore's ``authorized_network``).
    network_id: pulumi.Output[str]
    network_name: pulumi.Output[str]
    subnetwork_id: pulumi.Output[str]
    #: The node range and the pod range (the cache admits only these).
    node_cidr: pulumi.Output[str]
    pods_cidr: pulumi.Output[str]
