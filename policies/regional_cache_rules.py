"""Policies of the regional Redis caches: encryption and AUTH, high availability, client wiring."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from contract import CACHE_CLIENT_LABEL, LMCACHE_URL_ENV
from resource_access import (
    ELASTICACHE,
    MEMORYSTORE,
    _containers,
    get,
    items,
    _labels,
    _num,
    plain,
    pod_spec,
    _schema,
    settings,
)

# --------------------------------------------------------------------------- caches


def validate_cache_security(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p = args.props
    if args.resource_type == ELASTICACHE:
        if get(p, "transitEncryptionEnabled") is not True:
            report("transitEncryptionEnabled is not true: clients talk to the cache, AUTH token included, in plaintext.")
        elif get(p, "transitEncryptionMode") == "preferred":
            report("transitEncryptionMode is preferred: the cache still accepts unencrypted connections; set required.")
        if get(p, "atRestEncryptionEnabled") not in (True, "true"):
            report("atRestEncryptionEnabled is not true: snapshots and swapped data are stored unencrypted.")
        if not (get(p, "authToken") or get(p, "authTokenWo") or items(get(p, "userGroupIds"))):
            report("no authentication: set authToken (a Pulumi secret) or userGroupIds; without it any pod that can "
                   "reach the cache's port reads and writes it.")
    elif args.resource_type == MEMORYSTORE:
        if get(p, "authEnabled") is not True:
            report("authEnabled is not true: any client on the authorized network reads and writes the cache.")
        if get(p, "transitEncryptionMode") != "SERVER_AUTHENTICATION":
            report(f"transitEncryptionMode is {get(p, 'transitEncryptionMode', default='unset (DISABLED)')}; use "
                   "SERVER_AUTHENTICATION so clients reach the cache over TLS.")


CACHE_HA_SCHEMA = _schema(
    minReplicas={"type": "integer", "minimum": 0, "default": 1,
                 "description": "Replicas every cache must have (0 allows single-node caches, e.g. a dev stack)."},
)


def validate_cache_high_availability(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p = args.props
    want = settings(args, CACHE_HA_SCHEMA)["minReplicas"]
    if args.resource_type == ELASTICACHE:
        replicas = max(get(p, "numCacheClusters", default=1) - 1, get(p, "replicasPerNodeGroup", default=0))
        if replicas < want:
            report(f"{_num(replicas)} replicas; at least {_num(want)}: losing the only node loses the cache "
                   "until ElastiCache replaces it.")
        if replicas > 0:
            for key in ("automaticFailoverEnabled", "multiAzEnabled"):
                if get(p, key) is not True:
                    report(f"{key} is not true: with replicas, a failed primary must be replaced by a replica in "
                           "another zone automatically.")
    elif args.resource_type == MEMORYSTORE:
        tier = get(p, "tier", default="BASIC")
        if tier != "STANDARD_HA":
            if want > 0:
                report(f"tier is {tier}: a single node without failover; use STANDARD_HA (a replica in another "
                       "zone that takes over automatically).")
        elif get(p, "replicaCount") is not None and get(p, "replicaCount") < want:
            report(f"replicaCount is {_num(get(p, 'replicaCount'))}; at least {_num(want)}.")


def _cache_urls(args: Any) -> list[str]:
    """The LMCache remote URLs the object's containers are given (literal or ``$(VAR)``)."""
    spec = pod_spec(args)
    if spec is None:
        return []
    return [str(plain(get(e, "value", default=""))) for c in _containers(spec) for e in items(get(c, "env"))
            if get(e, "name") == LMCACHE_URL_ENV]


def validate_cache_clients(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for url in _cache_urls(args):
        if url.startswith("redis://"):
            report(f"{LMCACHE_URL_ENV} is {url.split('@')[-1]!r}: redis:// is plaintext; the caches accept TLS "
                   "only (rediss://, from the cache Secret's REDIS_URL).")
        if _labels(args).get(CACHE_CLIENT_LABEL) != "true":
            report(f"uses the regional cache ({LMCACHE_URL_ENV}) without the label {CACHE_CLIENT_LABEL}=true: the "
                   "cache's egress NetworkPolicy admits only labelled pods, so every lookup would time out.")
            break
