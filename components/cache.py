"""The regional Redis cache and its wiring into the serving namespace.

:class:`AwsCache` builds an ElastiCache replication group (Valkey or Redis OSS),
:class:`GcpCache` a Memorystore for Redis instance; both are reachable only from the
cluster's network, require TLS and an AUTH token, and are protected from deletion.
:class:`CacheConnection` puts the connection settings into the serving namespace as the
Secret ``redis-connection`` and limits the vLLM pods' egress with NetworkPolicies (the
cache only for the pods that use it).

The decisions are pure functions, tested without Pulumi: versions, node types, windows
and tiers in :mod:`gpu_fleet.components.cache_settings` (the config checks in
:mod:`gpu_fleet.components.config` use the same tables), the Secret's keys and the policy below.

Inputs whose change makes the provider replace the cache (refused while ``protect`` is
on, so a replacement never destroys data unnoticed):

- ElastiCache replication group: ``port``, ``subnet_group_name``,
  ``at_rest_encryption_enabled``, ``kms_key_id``, ``network_type``,
  ``data_tiering_enabled``, ``snapshot_name``/``snapshot_arns``, the group id, and a
  downgrade of ``engine_version`` or of ``engine`` (valkey to redis).
- Memorystore instance: ``tier`` (so ``replicas`` between 0 and 1 or more),
  ``authorized_network``, ``connect_mode``, ``transit_encryption_mode``,
  ``reserved_ip_range``, zones, ``customer_managed_key``, the name, and a downgrade of
  ``redis_version``.
"""

from __future__ import annotations

from typing import Optional, TypedDict
from urllib.parse import quote

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pulumi_random as random

from .cache_settings import (
    DEFAULT_NODE_TYPE,
    MEMORYSTORE_VERSIONS,
    engine_version,
    memory_size_gb,
    memorystore_maintenance_policy,
    memorystore_persistence,
    memorystore_replication,
    parameter_group_family,
)
from .cache_sizing import CachePlan, ModelKv, plan_cache, usable_bytes
from .config import CacheConfig, GatewayConfig, RegionConfig
from .contract import CACHE_CLIENT_LABELS, CONNECTION_SECRET, FLEET_LABELS, VLLM_POD_LABELS
from .gateway import stores
from .network import AwsNetwork, GcpNetwork

# --------------------------------------------------------------------------- cache objects

#: The private services access range reserved for Memorystore (room for several instances).
PSA_PREFIX_LENGTH = 24

REDIS_PORT = 6379
EGRESS_POLICY = "vllm-egress"
CACHE_EGRESS_POLICY = "vllm-cache-egress"
_LABELS = {
    "app.kubernetes.io/name": CONNECTION_SECRET,
    "app.kubernetes.io/component": "cache",
    **FLEET_LABELS,
    "app.kubernetes.io/managed-by": "pulumi",
}


def sizing_plan(cloud: str, cache: CacheConfig, models: list[ModelKv],
                gateway: Optional[GatewayConfig] = None) -> CachePlan:
    """What the cache holds for the LMCache ``models`` and the ``gateway`` (None: no
    gateway uses it) (:mod:`gpu_fleet.components.cache_sizing`)."""
    node_type = cache.node_type or DEFAULT_NODE_TYPE
    size = node_type if cloud == "aws" else f"{memory_size_gb(cache)} GB"
    return plan_cache(cloud, size, usable_bytes(cloud, node_type, memory_size_gb(cache)), models,
                      gateway=stores(gateway) if gateway is not None else None)


# --------------------------------------------------------------------------- connection


def redis_url(host: str, port: int, token: str) -> str:
    """``rediss://:<token>@host:port`` with the token URL-quoted."""
    return f"rediss://:{quote(token, safe='')}@{host}:{port}"


def connection_data(host: str, port: int, token: str, ca_certificate: Optional[str]) -> dict[str, str]:
    """The keys of the ``redis-connection`` Secret."""
    data = {
        "REDIS_HOST": host,
        "REDIS_PORT": str(port),
        "REDIS_TLS": "true",
        "REDIS_PASSWORD": token,
        "REDIS_URL": redis_url(host, port, token),
    }
    if ca_certificate:
        data["REDIS_CA_CERT"] = ca_certificate
    return data


def vllm_egress_policy_spec() -> dict:
    """NetworkPolicy spec limiting every vLLM pod's egress to cluster DNS and HTTPS
    (Hugging Face downloads); :func:`cache_egress_policy_spec` adds the cache for the pods
    that use it."""
    return {
        "podSelector": {"matchLabels": dict(VLLM_POD_LABELS)},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        ],
    }


def cache_egress_policy_spec(cache_cidr: str, cache_port: int) -> dict:
    """NetworkPolicy spec admitting the cache to the vLLM pods that use it (with the gateway or LMCache,
    :data:`CACHE_CLIENT_LABELS`); the other vLLM pods have neither the credentials nor
    the route (policies only add to each other).

    What is enforced: on AWS the cache's security group admits only the cluster nodes'
    security group (so only pods on cluster nodes); on GCP Memorystore answers only inside
    the authorized VPC. Every client needs the AUTH token (in the ``redis-connection``
    Secret, given only to cache clients) and TLS.

    What is not: other pods in the cluster can still open a connection to the cache port.
    A NetworkPolicy only restricts the pods it selects and rules only allow, so denying
    the cache to "every other pod" would take an egress policy on all of them allowing
    everything except the cache range; on AWS that range is the whole VPC (nodes, API
    endpoints), so it is not attempted. Without the token those connections fail AUTH.
    The cluster's network plugin must enforce NetworkPolicy (VPC CNI network policy
    agent on EKS, Dataplane V2 or network policy enforcement on GKE).
    """
    return {
        "podSelector": {"matchLabels": {**VLLM_POD_LABELS, **CACHE_CLIENT_LABELS}},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": cache_cidr}}], "ports": [{"protocol": "TCP", "port": cache_port}]},
        ],
    }


# --------------------------------------------------------------------------- components


class AwsCacheArgs(TypedDict):
    """Arguments of :class:`AwsCache`.

    config: the validated region config; its ``cache`` section sizes the cache.
    network: the EKS cluster's VPC (``gpu_fleet.components.network.AwsNetwork``); the cache goes in
        its private subnets and admits only ``node_security_group_id``.
    """

    config: RegionConfig
    network: AwsNetwork


class RegionalCache(pulumi.ComponentResource):
    """What :class:`CacheConnection` reads of a region's cache, whatever the cloud: its
    address, AUTH token (a secret), CA certificate (None when it chains to a public CA),
    the CIDR its clients reach it in, and TLS (always on)."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    auth_token: pulumi.Output[str]
    ca_certificate: Optional[pulumi.Output[str]]
    cidr: pulumi.Output[str]
    tls: bool = True


class AwsCache(RegionalCache):
    """An ElastiCache replication group with TLS, AUTH and encryption at rest
    (``gpufleet:index:AwsCache``). Uses the ``aws`` provider passed in ``opts``."""

    def __init__(self, name: str, args: AwsCacheArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:AwsCache", name, None, opts)
        cfg, net = args["config"], args["network"]
        c = cfg.cache
        here = pulumi.ResourceOptions(parent=self)
        version = engine_version("aws", c)

        subnets = aws.elasticache.SubnetGroup(
            name, description=f"{name}: the cluster's private subnets", subnet_ids=net.private_subnet_ids, opts=here
        )
        # No egress rules: the cache only answers; the provider drops AWS's default allow-all.
        group = aws.ec2.SecurityGroup(name, vpc_id=net.vpc_id, description=f"{name}: cluster nodes only", opts=here)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-nodes",
            security_group_id=group.id,
            referenced_security_group_id=net.node_security_group_id,
            ip_protocol="tcp",
            from_port=REDIS_PORT,
            to_port=REDIS_PORT,
            description="Redis over TLS from the cluster nodes",
            opts=here,
        )
        params = aws.elasticache.ParameterGroup(
            name,
            family=parameter_group_family(c.engine, version),
            description=f"{name}: eviction policy",
            parameters=[{"name": "maxmemory-policy", "value": c.eviction_policy}],
            opts=here,
        )
        # Alphanumeric only: ElastiCache accepts few special characters in AUTH tokens.
        token = random.RandomPassword(f"{name}-auth-token", length=64, special=False, opts=here)
        self.auth_token = pulumi.Output.secret(token.result)

        replication = aws.elasticache.ReplicationGroup(
            name,
            description=f"{name}: vLLM regional cache",
            engine=c.engine,
            engine_version=version,
            node_type=c.node_type or DEFAULT_NODE_TYPE,
            port=REDIS_PORT,
            num_cache_clusters=1 + c.replicas,
            automatic_failover_enabled=c.automatic_failover,
            multi_az_enabled=c.automatic_failover,
            subnet_group_name=subnets.name,
            security_group_ids=[group.id],
            parameter_group_name=params.name,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            auth_token=self.auth_token,
            # A new token is accepted beside the old one until pods pick up the Secret.
            auth_token_update_strategy="ROTATE",
            snapshot_retention_limit=c.snapshot_retention_days,
            snapshot_window=c.snapshot_window,
            maintenance_window=c.maintenance_window,
            apply_immediately=False,
            auto_minor_version_upgrade=True,
            # Deleting the group (after unprotecting it) still leaves the data in a snapshot.
            final_snapshot_identifier=f"{name}-final",
            opts=pulumi.ResourceOptions(parent=self, protect=True, additional_secret_outputs=["authToken"]),
        )
        self.host = replication.primary_endpoint_address
        self.port = replication.port
        self.ca_certificate = None  # ElastiCache certificates chain to Amazon's public CAs.
        self.cidr = net.vpc_cidr
        self.register_outputs({"host": self.host, "port": self.port, "cidr": self.cidr})


class GcpCacheArgs(TypedDict):
    """Arguments of :class:`GcpCache`.

    config: the validated region config; its ``cache`` section sizes the cache.
    network: the GKE cluster's network (``gpu_fleet.components.network.GcpNetwork``); Memorystore
        is reached through private services access on ``network_id``.
    """

    config: RegionConfig
    network: GcpNetwork


class GcpCache(RegionalCache):
    """A Memorystore for Redis instance with TLS and AUTH on the cluster's VPC through
    private services access (``gpufleet:index:GcpCache``). Uses the ``gcp`` provider passed
    in ``opts``."""

    def __init__(self, name: str, args: GcpCacheArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:GcpCache", name, None, opts)
        cfg, net = args["config"], args["network"]
        c = cfg.cache
        here = pulumi.ResourceOptions(parent=self)

        reserved = gcp.compute.GlobalAddress(
            f"{name}-psa",
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=PSA_PREFIX_LENGTH,
            network=net.network_id,
            description=f"{name}: private services access range for Memorystore",
            opts=here,
        )
        peering = gcp.servicenetworking.Connection(
            f"{name}-psa",
            network=net.network_id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[reserved.name],
            # Memorystore may hold the producer side for a while after the instance is gone,
            # and then deleting the connection fails and the peering blocks deleting the
            # network. REMOVE_PEERING drops the peering instead; ABANDON would leave it
            # (pulumi-gcp 10.2.0 servicenetworking.Connection, "Deleting a connection").
            # Destroy deletes the instance first: it depends on this connection.
            deletion_policy="REMOVE_PEERING",
            opts=here,
        )
        instance = gcp.redis.Instance(
            name,
            **memorystore_replication(c.replicas),
            memory_size_gb=memory_size_gb(c),
            redis_version=MEMORYSTORE_VERSIONS[engine_version("gcp", c)],
            auth_enabled=True,
            transit_encryption_mode="SERVER_AUTHENTICATION",
            connect_mode="PRIVATE_SERVICE_ACCESS",
            authorized_network=net.network_id,
            persistence_config=memorystore_persistence(c),
            maintenance_policy=memorystore_maintenance_policy(c.maintenance_window),
            redis_configs={"maxmemory-policy": c.eviction_policy},
            deletion_protection=True,
            opts=pulumi.ResourceOptions(
                parent=self, protect=True, depends_on=[peering], additional_secret_outputs=["authString"]
            ),
        )
        self.host = instance.host
        self.port = instance.port
        self.auth_token = pulumi.Output.secret(instance.auth_string)
        # Clients trust every listed CA: Memorystore lists two while it rotates them.
        self.ca_certificate = instance.server_ca_certs.apply(
            lambda certs: "".join(cert.cert.strip() + "\n" for cert in certs or [])
        )
        self.cidr = pulumi.Output.concat(reserved.address, "/", str(PSA_PREFIX_LENGTH))
        self.register_outputs({"host": self.host, "port": self.port, "cidr": self.cidr})


class CacheConnectionArgs(TypedDict):
    """Arguments of :class:`CacheConnection`.

    cache: the region's cache (:class:`AwsCache` or :class:`GcpCache`).
    namespace: the serving namespace the Secret and the NetworkPolicy go in.
    """

    cache: RegionalCache
    namespace: pulumi.Input[str]


class CacheConnection(pulumi.ComponentResource):
    """The Secret ``redis-connection`` and the vLLM egress NetworkPolicies in the serving
    namespace (``gpufleet:index:CacheConnection``). Uses the ``kubernetes`` provider passed
    in ``opts``. ``secret_name`` is what the model Deployments reference."""

    secret_name: pulumi.Output[str]

    def __init__(self, name: str, args: CacheConnectionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:CacheConnection", name, None, opts)
        cache, namespace = args["cache"], args["namespace"]
        here = pulumi.ResourceOptions(parent=self)

        data = pulumi.Output.all(cache.host, cache.port, cache.auth_token, cache.ca_certificate).apply(
            lambda v: connection_data(*v)
        )
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": CONNECTION_SECRET, "namespace": namespace, "labels": _LABELS},
            type="Opaque",
            string_data=pulumi.Output.secret(data),
            opts=here,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-vllm-egress",
            metadata={"name": EGRESS_POLICY, "namespace": namespace, "labels": {**_LABELS, "app.kubernetes.io/name": EGRESS_POLICY}},
            spec=vllm_egress_policy_spec(),
            opts=here,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-vllm-cache-egress",
            metadata={"name": CACHE_EGRESS_POLICY, "namespace": namespace,
                      "labels": {**_LABELS, "app.kubernetes.io/name": CACHE_EGRESS_POLICY}},
            spec=pulumi.Output.all(cache.cidr, cache.port).apply(lambda v: cache_egress_policy_spec(*v)),
            opts=here,
        )
        self.secret_name = secret.metadata["name"]
        self.register_outputs({"secretName": self.secret_name})
