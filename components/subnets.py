"""The subnets of a new AWS VPC. Pure (no Pulumi import): the config checks a stack's
``network.cidr`` with it and :mod:`gpu_fleet.components.aws_cluster` lays the VPC out with it."""

from __future__ import annotations

import ipaddress
from itertools import islice

#: AWS subnets are /28 at the smallest and VPCs /16 at the largest.
MIN_SUBNET_PREFIX = 28
MAX_VPC_PREFIX = 16
#: A public subnet is 1/8 of a private one: it holds only load balancers and NAT gateways,
#: while every node and (with the VPC CNI) every pod takes a private address.
PUBLIC_SUBNET_SHRINK = 3

Subnets = list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]]


def subnet_layout(cidr: str | ipaddress.IPv4Network, zones: int) -> Subnets:
    """``(public, private)`` subnet CIDRs for each of ``zones`` zones of the VPC ``cidr``.

    The VPC's first half is split into equal private subnets (a power-of-two split: three
    zones of a /16 get a /19 each); public subnets, 1/8 that size, come from the start of
    the second half, whose rest stays free for later subnets. Raises ValueError when the
    VPC is too large for AWS or too small for the subnets.
    """
    vpc = ipaddress.IPv4Network(cidr)
    if zones < 1:
        raise ValueError(f"need at least one zone, got {zones}")
    if vpc.prefixlen < MAX_VPC_PREFIX:
        raise ValueError(f"{vpc} is larger than an AWS VPC can be (/{MAX_VPC_PREFIX})")
    private_prefix = vpc.prefixlen + 1 + (zones - 1).bit_length()
    public_prefix = private_prefix + PUBLIC_SUBNET_SHRINK
    if public_prefix > MIN_SUBNET_PREFIX:
        raise ValueError(f"{vpc} is too small for {zones} zones: public subnets would be /{public_prefix}, "
                         f"smaller than AWS allows (/{MIN_SUBNET_PREFIX})")
    private_half, public_half = vpc.subnets(prefixlen_diff=1)
    private = islice(private_half.subnets(new_prefix=private_prefix), zones)
    public = islice(public_half.subnets(new_prefix=public_prefix), zones)
    return list(zip(public, private))
