"""The regional cache: ElastiCache / Memorystore settings, secrecy of the AUTH token, and
the Secret and NetworkPolicy that wire it into the serving namespace."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_fleet.components import cache_settings
from gpu_fleet.components.cache import AwsCache, CacheConnection, GcpCache, connection_data, redis_url
from gpu_fleet.components.cache_settings import (
    daily_window,
    memorystore_maintenance_policy,
    memorystore_persistence,
    memorystore_replication,
    node_type_problem,
    overlaps,
    weekly_window,
)
from gpu_fleet.components.contract import CACHE_CLIENT_LABELS
from gpu_fleet.components.config import CacheConfig, RegionConfig, load_stack_file
from gpu_fleet.components.network import AwsNetwork, GcpNetwork
from gpu_fleet.engine import is_secret, reveal
from gpu_fleet.manifests import validate

REPO = Path(__file__).resolve().parents[2]
RG = "aws:elasticache/replicationGroup:ReplicationGroup"
MEMORYSTORE = "gcp:redis/instance:Instance"
SECRET = "kubernetes:core/v1:Secret"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NETWORK_ID = "projects/gpu-fleet-prod/global/networks/eu-west"


def _config(stack: str, **cache) -> RegionConfig:
    cfg = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml")
    if cache:
        cfg = cfg.model_copy(update={"cache": cfg.cache.model_copy(update=cache)})
    return cfg


def _aws_network() -> AwsNetwork:
    o = pulumi.Output.from_input
    return AwsNetwork(
        vpc_id=o("vpc-1"),
        vpc_cidr=o("10.40.0.0/16"),
        private_subnet_ids=o(["subnet-a", "subnet-b", "subnet-c"]),
        public_subnet_ids=o(["subnet-d"]),
        node_security_group_id=o("sg-nodes"),
        public_subnet_cidrs=o(["10.40.0.0/24"]),
    )


def _gcp_network() -> GcpNetwork:
    o = pulumi.Output.from_input
    return GcpNetwork(
        network_id=o(NETWORK_ID),
        network_name=o("eu-west"),
        subnetwork_id=o("projects/gpu-fleet-prod/regions/europe-west4/subnetworks/eu-west"),
        node_cidr=o("10.50.0.0/20"),
        pods_cidr=o("10.52.0.0/14"),
    )


def _program(cfg: RegionConfig):
    """Cache + connection as the Region builds them, exporting what export_region does."""

    def program():
        if cfg.cloud == "aws":
            provider = aws.Provider("region-aws", region=cfg.location)
            cache = AwsCache("r-cache", {"config": cfg, "network": _aws_network()},
                             opts=pulumi.ResourceOptions(providers={"aws": provider}))
        else:
            provider = gcp.Provider("region-gcp", project=cfg.project, region=cfg.location)
            cache = GcpCache("r-cache", {"config": cfg, "network": _gcp_network()},
                             opts=pulumi.ResourceOptions(providers={"gcp": provider}))
        kube = k8s.Provider("cluster", kubeconfig="{}")
        connection = CacheConnection("r-cache-connection", {"cache": cache, "namespace": cfg.namespace},
                                     opts=pulumi.ResourceOptions(providers={"kubernetes": kube}))
        pulumi.export("cacheEndpoint", cache.host)
        pulumi.export("cachePort", cache.port)
        pulumi.export("cacheAuthToken", pulumi.Output.secret(cache.auth_token))
        pulumi.export("cacheSecretName", connection.secret_name)
        pulumi.export("cacheCidr", cache.cidr)

    return program


@pytest.fixture
def aws_rec(fleet):
    return fleet.run(_program(_config("us-east")), stack="us-east")


@pytest.fixture
def gcp_rec(fleet):
    return fleet.run(_program(_config("eu-west")), stack="eu-west")


# --------------------------------------------------------------------------- AWS


def test_aws_replication_group_is_encrypted_authenticated_and_highly_available(aws_rec):
    rg = aws_rec.named(RG, "r-cache")
    i = rg.plain_inputs
    assert (i["engine"], i["engineVersion"], i["nodeType"]) == ("valkey", "8.0", "cache.r7g.large")
    assert i["numCacheClusters"] == 2  # primary + 1 replica
    assert i["automaticFailoverEnabled"] is True and i["multiAzEnabled"] is True
    assert i["transitEncryptionEnabled"] is True and i["transitEncryptionMode"] == "required"
    assert i["atRestEncryptionEnabled"] is True
    assert i["port"] == 6379
    assert is_secret(rg.inputs["authToken"]) and len(i["authToken"]) == 64 and i["authToken"].isalnum()
    assert i["authTokenUpdateStrategy"] == "ROTATE"
    assert (i["snapshotRetentionLimit"], i["snapshotWindow"], i["maintenanceWindow"]) == (7, "03:00-04:00", "sun:05:00-sun:06:00")
    assert i["applyImmediately"] is False and i["autoMinorVersionUpgrade"] is True
    assert i["finalSnapshotIdentifier"] == "r-cache-final"
    assert rg.protect is True
    assert aws_rec.provider_of(rg).name == "region-aws"


def test_aws_cache_lives_in_private_subnets_behind_a_node_only_security_group(aws_rec):
    rg = aws_rec.named(RG, "r-cache").plain_inputs
    subnets = aws_rec.named("aws:elasticache/subnetGroup:SubnetGroup", "r-cache")
    assert subnets.plain_inputs["subnetIds"] == ["subnet-a", "subnet-b", "subnet-c"]
    assert rg["subnetGroupName"] == subnets.outputs["name"]

    sg = aws_rec.named("aws:ec2/securityGroup:SecurityGroup", "r-cache")
    assert sg.plain_inputs["vpcId"] == "vpc-1"
    assert "ingress" not in sg.plain_inputs and "egress" not in sg.plain_inputs
    assert rg["securityGroupIds"] == [sg.outputs["id"]]
    rules = aws_rec.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert [r.plain_inputs for r in rules] == [{
        "securityGroupId": sg.outputs["id"],
        "referencedSecurityGroupId": "sg-nodes",
        "ipProtocol": "tcp",
        "fromPort": 6379,
        "toPort": 6379,
        "description": "Redis over TLS from the cluster nodes",
    }]
    assert not [r for r in aws_rec.resources if "cidrIpv4" in r.plain_inputs]


def test_aws_parameter_group_sets_the_eviction_policy_for_the_engine_family(aws_rec):
    params = aws_rec.named("aws:elasticache/parameterGroup:ParameterGroup", "r-cache")
    assert params.plain_inputs["family"] == "valkey8"
    assert params.plain_inputs["parameters"] == [{"name": "maxmemory-policy", "value": "allkeys-lru"}]
    assert aws_rec.named(RG, "r-cache").plain_inputs["parameterGroupName"] == params.outputs["name"]


def test_aws_auth_token_is_a_64_char_alphanumeric_random_password(aws_rec):
    token = aws_rec.named("random:index/randomPassword:RandomPassword", "r-cache-auth-token")
    assert token.plain_inputs == {"length": 64, "special": False}


def test_aws_redis_engine_uses_its_default_version_and_family(fleet):
    rec = fleet.run(_program(_config("us-east", engine="redis", replicas=2, eviction_policy="volatile-lfu")), stack="us-east")
    rg = rec.named(RG, "r-cache").plain_inputs
    assert (rg["engine"], rg["engineVersion"], rg["numCacheClusters"]) == ("redis", "7.1", 3)
    params = rec.named("aws:elasticache/parameterGroup:ParameterGroup", "r-cache").plain_inputs
    assert params["family"] == "redis7"
    assert params["parameters"] == [{"name": "maxmemory-policy", "value": "volatile-lfu"}]


def test_aws_single_node_cache_turns_failover_and_multi_az_off(fleet):
    cfg = _config("us-east", replicas=0, automatic_failover=False, node_type="cache.t4g.medium")
    rg = fleet.run(_program(cfg), stack="us-east").named(RG, "r-cache").plain_inputs
    assert (rg["numCacheClusters"], rg["automaticFailoverEnabled"], rg["multiAzEnabled"]) == (1, False, False)
    assert rg["nodeType"] == "cache.t4g.medium"


# --------------------------------------------------------------------------- GCP


def test_gcp_memorystore_is_standard_ha_with_tls_auth_and_protection(gcp_rec):
    inst = gcp_rec.named(MEMORYSTORE, "r-cache")
    i = inst.plain_inputs
    assert (i["tier"], i["replicaCount"], i["readReplicasMode"]) == ("STANDARD_HA", 1, "READ_REPLICAS_ENABLED")
    assert i["memorySizeGb"] == 10
    assert i["redisVersion"] == "REDIS_7_2"
    assert i["authEnabled"] is True
    assert i["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert i["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert i["authorizedNetwork"] == NETWORK_ID
    assert i["redisConfigs"] == {"maxmemory-policy": "allkeys-lru"}
    assert i["persistenceConfig"] == {"persistenceMode": "RDB", "rdbSnapshotPeriod": "SIX_HOURS"}
    assert i["maintenancePolicy"] == {"weeklyMaintenanceWindows": [
        {"day": "SUNDAY", "startTime": {"hours": 5, "minutes": 0, "seconds": 0, "nanos": 0}}
    ]}
    assert i["deletionProtection"] is True and inst.protect is True
    assert "customerManagedKey" not in i  # Google-managed encryption at rest
    assert gcp_rec.provider_of(inst).name == "region-gcp"
    assert is_secret(inst.outputs["authString"])


def test_gcp_memorystore_waits_for_private_service_access_on_the_cluster_vpc(gcp_rec):
    address = gcp_rec.named("gcp:compute/globalAddress:GlobalAddress", "r-cache-psa")
    assert {k: address.plain_inputs[k] for k in ("purpose", "addressType", "prefixLength", "network")} == {
        "purpose": "VPC_PEERING", "addressType": "INTERNAL", "prefixLength": 24, "network": NETWORK_ID,
    }
    peering = gcp_rec.named("gcp:servicenetworking/connection:Connection", "r-cache-psa")
    assert peering.plain_inputs == {
        "network": NETWORK_ID,
        "service": "servicenetworking.googleapis.com",
        "reservedPeeringRanges": [address.outputs["name"]],
        # Destroy removes the peering if the producer still holds the connection.
        "deletionPolicy": "REMOVE_PEERING",
    }
    assert peering.urn in gcp_rec.named(MEMORYSTORE, "r-cache").depends_on
    assert gcp_rec.stack_outputs["cacheCidr"] == f"{address.outputs['address']}/24"


def test_gcp_single_node_cache_is_basic_tier_without_snapshots(fleet):
    cfg = _config("eu-west", replicas=0, automatic_failover=False, memory_size_gb=1, snapshot_retention_days=0,
                  engine_version="7.0", maintenance_window="wed:22:30-wed:23:30")
    i = fleet.run(_program(cfg), stack="eu-west").named(MEMORYSTORE, "r-cache").plain_inputs
    assert i["tier"] == "BASIC" and "replicaCount" not in i and "readReplicasMode" not in i
    assert i["persistenceConfig"] == {"persistenceMode": "DISABLED"}
    assert i["redisVersion"] == "REDIS_7_0"
    assert i["maintenancePolicy"]["weeklyMaintenanceWindows"][0]["day"] == "WEDNESDAY"
    assert i["maintenancePolicy"]["weeklyMaintenanceWindows"][0]["startTime"]["hours"] == 22
    assert i["maintenancePolicy"]["weeklyMaintenanceWindows"][0]["startTime"]["minutes"] == 30


# --------------------------------------------------------------------------- secrecy


def _token(rec) -> str:
    if rec.of_type(RG):
        return reveal(rec.named("random:index/randomPassword:RandomPassword", "r-cache-auth-token").outputs["result"])
    return reveal(rec.named(MEMORYSTORE, "r-cache").outputs["authString"])


def _unmarked(value, token: str, where: str) -> list[str]:
    """Paths where ``token`` appears outside a secret wrapper."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _unmarked(v, token, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unmarked(v, token, f"{where}[{i}]")]
    return [where] if isinstance(value, str) and token in value else []


@pytest.mark.parametrize("stack", ["us-east", "eu-west"])
def test_auth_token_only_ever_appears_as_a_secret(fleet, stack):
    rec = fleet.run(_program(_config(stack)), stack=stack)
    token = _token(rec)
    assert len(token) >= 16
    leaks = [p for r in rec.resources for p in _unmarked(r.inputs, token, f"{r.type}:{r.name}.inputs")]
    leaks += [p for r in rec.resources for p in _unmarked(r.outputs, token, f"{r.type}:{r.name}.outputs")]
    leaks += [f"export {k}" for k, v in rec.stack_outputs.items() if k not in rec.secret_outputs and _unmarked(v, token, k)]
    assert leaks == []
    # The token does reach the Secret and the export, inside secret wrappers.
    assert "cacheAuthToken" in rec.secret_outputs
    assert token in reveal(rec.named(SECRET, "r-cache-connection-secret").inputs["stringData"])["REDIS_PASSWORD"]


# --------------------------------------------------------------------------- connection


@pytest.mark.parametrize("stack,port", [("us-east", 6379), ("eu-west", 6378)])
def test_connection_secret_holds_a_rediss_url_and_is_secret(fleet, stack, port):
    rec = fleet.run(_program(_config(stack)), stack=stack)
    secret = rec.named(SECRET, "r-cache-connection-secret")
    assert is_secret(secret.inputs["stringData"])
    data = secret.plain_inputs["stringData"]
    token = _token(rec)
    host = rec.stack_outputs["cacheEndpoint"]
    url = urlsplit(data["REDIS_URL"])
    assert url.scheme == "rediss" and url.username == "" and unquote(url.password) == token
    assert (url.hostname, url.port) == (host, port)
    assert (data["REDIS_HOST"], data["REDIS_PORT"], data["REDIS_TLS"], data["REDIS_PASSWORD"]) == (host, str(port), "true", token)
    assert ("REDIS_CA_CERT" in data) == (stack == "eu-west")
    if stack == "eu-west":
        assert data["REDIS_CA_CERT"].startswith("-----BEGIN CERTIFICATE-----")
    meta = secret.plain_inputs["metadata"]
    assert (meta["name"], meta["namespace"], secret.plain_inputs["type"]) == ("redis-connection", "llm-serving", "Opaque")
    assert rec.stack_outputs["cacheSecretName"] == "redis-connection"
    assert rec.provider_of(secret).name == "cluster"


def _egress_allows(policies: list[dict], pod_labels: dict, address: str, port: int) -> bool:
    """Whether the egress policies selecting a pod with ``pod_labels`` let it connect to
    ``address:port`` (policies add up; a pod no policy selects may connect anywhere)."""
    selecting = [p["spec"] for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()]
    if not selecting:
        return True
    return any(
        any(peer.get("ipBlock") and ipaddress.IPv4Address(address) in ipaddress.IPv4Network(peer["ipBlock"]["cidr"])
            for peer in rule["to"]) and any(p["port"] == port for p in rule["ports"])
        for spec in selecting for rule in spec["egress"])


@pytest.mark.parametrize("stack,cidr,port", [("us-east", "10.40.0.0/16", 6379), ("eu-west", "10.60.0.0/24", 6378)])
def test_network_policies_give_the_cache_only_to_its_clients(fleet, stack, cidr, port):
    rec = fleet.run(_program(_config(stack)), stack=stack)
    objects = [m for _, m in rec.kubernetes_objects()]
    assert sorted(m["kind"] for m in objects) == ["NetworkPolicy", "NetworkPolicy", "Secret"]
    for manifest in objects:
        assert validate(manifest) == (True, [])
        assert manifest["metadata"]["namespace"] == "llm-serving"
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpu-fleet"
    policies = {m["metadata"]["name"]: m for m in objects if m["kind"] == "NetworkPolicy"}
    assert set(policies) == {"vllm-egress", "vllm-cache-egress"}
    every = policies["vllm-egress"]["spec"]
    assert every["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "vllm"}}
    assert every["policyTypes"] == ["Egress"]
    assert every["egress"][0]["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
    assert every["egress"][0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert every["egress"][1] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert len(every["egress"]) == 2
    cache = policies["vllm-cache-egress"]["spec"]
    assert cache["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "vllm", "gpu-fleet/cache-client": "true"}}
    assert cache["egress"] == [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]}]
    # A vLLM pod without LMCache reaches Hugging Face but not the cache; an LMCache pod both.
    cache_host = str(next(ipaddress.IPv4Network(cidr).hosts()))
    plain_pod, client = {"app.kubernetes.io/name": "vllm"}, {"app.kubernetes.io/name": "vllm", **CACHE_CLIENT_LABELS}
    all_policies = list(policies.values())
    assert not _egress_allows(all_policies, plain_pod, cache_host, port)
    assert _egress_allows(all_policies, client, cache_host, port)
    assert _egress_allows(all_policies, plain_pod, "18.1.2.3", 443) and _egress_allows(all_policies, client, "18.1.2.3", 443)


def test_components_register_under_their_type_tokens_with_children_parented(aws_rec, gcp_rec):
    for rec, kind in ((aws_rec, "AwsCache"), (gcp_rec, "GcpCache")):
        parent = rec.named(f"gpufleet:index:{kind}", "r-cache")
        connection = rec.named("gpufleet:index:CacheConnection", "r-cache-connection")
        children = {r.type for r in rec.children_of(parent)}
        assert RG in children or MEMORYSTORE in children
        assert {r.type for r in rec.children_of(connection)} == {SECRET, POLICY}


# --------------------------------------------------------------------------- pure helpers


def test_weekly_and_daily_windows_parse_and_wrap():
    sunday = weekly_window("sun:05:00-sun:06:00")
    assert (sunday.start, sunday.minutes) == (6 * 1440 + 300, 60)
    assert weekly_window("sun:23:30-mon:00:30").minutes == 60  # across the week's end
    assert daily_window("23:30-00:30").minutes == 60
    with pytest.raises(ValueError, match="not a time of day"):
        weekly_window("sun:24:00-mon:01:00")
    with pytest.raises(ValueError, match="not a time of day"):
        daily_window("03:60-04:30")


@pytest.mark.parametrize("maintenance,snapshot,expected", [
    ("sun:05:00-sun:06:00", "03:00-04:00", False),
    ("sun:05:00-sun:06:00", "05:30-06:30", True),
    ("sun:05:00-sun:06:00", "06:00-07:00", False),  # back to back is fine
    ("mon:00:00-mon:01:00", "23:30-00:30", True),  # the snapshot window crosses midnight
    ("sun:23:00-mon:01:00", "00:30-01:30", True),  # the maintenance window crosses the week
])
def test_window_overlap(maintenance, snapshot, expected):
    assert overlaps(weekly_window(maintenance), daily_window(snapshot)) is expected


_times = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda t: f"{t[0]:02d}:{t[1]:02d}")


@given(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), _times,
       st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), _times, _times, _times)
def test_window_overlap_matches_minute_by_minute(d1, t1, d2, t2, s1, s2):
    weekly, daily = weekly_window(f"{d1}:{t1}-{d2}:{t2}"), daily_window(f"{s1}-{s2}")
    week = 7 * 1440
    busy = {(weekly.start + m) % week for m in range(weekly.minutes)}
    snap = {(day * 1440 + daily.start + m) % week for day in range(7) for m in range(daily.minutes)}
    assert overlaps(weekly, daily) is bool(busy & snap)


@pytest.mark.parametrize("window,day,hours,minutes", [
    ("sun:05:00-sun:06:00", "SUNDAY", 5, 0),
    ("mon:23:15-tue:00:15", "MONDAY", 23, 15),
    ("sat:00:00-sat:01:00", "SATURDAY", 0, 0),
])
def test_memorystore_maintenance_policy_starts_at_the_windows_start(window, day, hours, minutes):
    assert memorystore_maintenance_policy(window) == {"weekly_maintenance_windows": [
        {"day": day, "start_time": {"hours": hours, "minutes": minutes, "seconds": 0, "nanos": 0}}
    ]}


def test_memorystore_replication_and_persistence():
    assert memorystore_replication(0) == {"tier": "BASIC"}
    assert memorystore_replication(3) == {"tier": "STANDARD_HA", "replica_count": 3, "read_replicas_mode": "READ_REPLICAS_ENABLED"}
    assert memorystore_persistence(CacheConfig()) == {"persistence_mode": "RDB", "rdb_snapshot_period": "SIX_HOURS"}
    assert memorystore_persistence(CacheConfig(snapshot_retention_days=0)) == {"persistence_mode": "DISABLED"}


def test_engine_versions_default_per_engine_and_map_to_families():
    assert cache_settings.engine_version("aws", CacheConfig()) == "8.0"
    assert cache_settings.engine_version("aws", CacheConfig(engine="redis")) == "7.1"
    assert cache_settings.engine_version("gcp", CacheConfig()) == "7.2"  # valkey default does not apply on gcp
    assert cache_settings.engine_version("aws", CacheConfig(engine_version="7.2")) == "7.2"
    assert cache_settings.parameter_group_family("valkey", "7.2") == "valkey7"
    assert cache_settings.parameter_group_family("valkey", "8.2") == "valkey8"
    assert cache_settings.parameter_group_family("redis", "7.0") == "redis7"
    assert cache_settings.MEMORYSTORE_VERSIONS[cache_settings.engine_version("gcp", CacheConfig())] == "REDIS_7_2"


@pytest.mark.parametrize("node_type,words", [
    ("cache.r7g.large", None),
    ("cache.t4g.micro", None),
    ("cache.m7g.16xlarge", None),
    ("cache.r7g.huge", "cache.r7g comes in large, xlarge"),
    ("cache.t2.micro", "previous generation"),
    ("cache.r6gd.xlarge", "data tiering"),
    ("cache.x9.large", "not an ElastiCache node type; use one of cache.t3.*"),
    ("r7g.large", "not an ElastiCache node type"),
])
def test_node_type_problem(node_type, words):
    problem = node_type_problem(node_type)
    assert problem is None if words is None else words in problem


def test_redis_url_quotes_the_token():
    assert redis_url("master.x.cache.amazonaws.com", 6379, "a&b#c$d^e<f>g-h!") == (
        "rediss://:a%26b%23c%24d%5Ee%3Cf%3Eg-h%21@master.x.cache.amazonaws.com:6379"
    )
    data = connection_data("10.60.0.4", 6378, "t/k@n", None)
    assert data == {
        "REDIS_HOST": "10.60.0.4",
        "REDIS_PORT": "6378",
        "REDIS_TLS": "true",
        "REDIS_PASSWORD": "t/k@n",
        "REDIS_URL": "rediss://:t%2Fk%40n@10.60.0.4:6378",
    }
    assert connection_data("h", 1, "t", "PEM")["REDIS_CA_CERT"] == "PEM"
