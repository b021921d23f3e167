"""ElastiCache and Memorystore settings: engine versions, node types, sizes, tiers and
maintenance windows, and the checks on them.

Pure (no Pulumi import): :mod:`gpu_fleet.components.config` validates a stack's ``cache`` with these
tables, :mod:`gpu_fleet.components.cache` deploys with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # a type only: config imports this module
    from .config import CacheConfig


# --------------------------------------------------------------------------- engines and sizes

#: ElastiCache engine versions this fleet supports, with their parameter group family.
#: Redis OSS before 7.0 is left out: in-transit encryption mode needs 7.0.5 or later.
ELASTICACHE_VERSIONS: dict[str, dict[str, str]] = {
    "valkey": {"7.2": "valkey7", "8.0": "valkey8", "8.1": "valkey8", "8.2": "valkey8"},
    "redis": {"7.0": "redis7", "7.1": "redis7"},
}
#: Memorystore for Redis versions (config ``major.minor`` to the API's enum).
MEMORYSTORE_VERSIONS: dict[str, str] = {"7.0": "REDIS_7_0", "7.2": "REDIS_7_2"}
DEFAULT_VERSIONS: dict[tuple[str, str], str] = {("aws", "valkey"): "8.0", ("aws", "redis"): "7.1", ("gcp", "redis"): "7.2"}

DEFAULT_NODE_TYPE = "cache.r7g.large"
#: ElastiCache node types new Valkey/Redis OSS clusters can use, by family.
ELASTICACHE_NODE_TYPES: dict[str, tuple[str, ...]] = {
    "t3": ("micro", "small", "medium"),
    "t4g": ("micro", "small", "medium"),
    "m4": ("large", "xlarge", "2xlarge", "4xlarge", "10xlarge"),
    "m5": ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge"),
    "m6g": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
    "m7g": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
    "r4": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge"),
    "r5": ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge"),
    "r6g": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
    "r7g": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
}
#: Families ElastiCache knows but this fleet cannot create, and why.
UNSUPPORTED_NODE_FAMILIES: dict[str, str] = {
    **{f: "previous generation: ElastiCache no longer creates clusters on it" for f in ("t1", "t2", "m1", "m2", "m3", "r3", "c1")},
    "r6gd": "data-tiering nodes need data tiering enabled, which this fleet does not configure",
}

DEFAULT_MEMORY_GB = 5
#: Memorystore sizes: read replicas (our Standard tier) need nodes of 5 GB or more.
MEMORYSTORE_READ_REPLICA_MIN_GB = 5
#: How often Memorystore writes an RDB snapshot: bounds what a full restart loses.
MEMORYSTORE_SNAPSHOT_PERIOD = "SIX_HOURS"
def effective_engine(cloud: str, cache: CacheConfig) -> str:
    """The engine that runs: Memorystore for Redis is always redis."""
    return "redis" if cloud == "gcp" else cache.engine


def supported_versions(cloud: str, engine: str) -> list[str]:
    return list(ELASTICACHE_VERSIONS[engine] if cloud == "aws" else MEMORYSTORE_VERSIONS)


def engine_version(cloud: str, cache: CacheConfig) -> str:
    """The pinned ``major.minor`` to deploy: the config's, else the default for the engine."""
    return cache.engine_version or DEFAULT_VERSIONS[(cloud, effective_engine(cloud, cache))]


def parameter_group_family(engine: str, version: str) -> str:
    return ELASTICACHE_VERSIONS[engine][version]


def node_type_problem(node_type: str) -> Optional[str]:
    """Why ElastiCache cannot run ``node_type`` here, or None if it can."""
    m = re.fullmatch(r"cache\.([a-z0-9]+)\.([a-z0-9]+)", node_type)
    family, size = (m.group(1), m.group(2)) if m else (None, None)
    if family in UNSUPPORTED_NODE_FAMILIES:
        return f"{node_type}: {UNSUPPORTED_NODE_FAMILIES[family]}"
    if family in ELASTICACHE_NODE_TYPES and size in ELASTICACHE_NODE_TYPES[family]:
        return None
    if family in ELASTICACHE_NODE_TYPES:
        sizes = ", ".join(ELASTICACHE_NODE_TYPES[family])
        return f"{node_type} is not an ElastiCache node type; cache.{family} comes in {sizes}"
    families = ", ".join(f"cache.{f}.*" for f in ELASTICACHE_NODE_TYPES)
    return f"{node_type} is not an ElastiCache node type; use one of {families} (like {DEFAULT_NODE_TYPE})"


def memory_size_gb(cache: CacheConfig) -> int:
    return cache.memory_size_gb or DEFAULT_MEMORY_GB


def memorystore_replication(replicas: int) -> dict:
    """Tier and replica arguments of the Memorystore instance: Basic for a single node,
    Standard (replicated, automatic failover) otherwise.

    Read replicas stay enabled on every Standard instance so the replica count can change
    later without touching ``read_replicas_mode`` (settable at creation only).
    """
    if replicas == 0:
        return {"tier": "BASIC"}
    return {"tier": "STANDARD_HA", "replica_count": replicas, "read_replicas_mode": "READ_REPLICAS_ENABLED"}


def cache_hourly_usd(cloud: str, location: str, cache: CacheConfig, prices: dict) -> Optional[float]:
    """On-demand US$ per hour of a region's cache from the catalog's ``cachePrices``, or
    None when the catalog has no price for it (unknown node type or region, or an entry
    left null because its price is unverified): never a guess.

    ElastiCache bills every node by the hour: primary and each replica. Memorystore bills
    provisioned GB by the hour; a Standard instance with read replicas enabled (ours, see
    :func:`memorystore_replication`) is billed per node, so GB x nodes x the per-node rate
    (the pricing page says node count counts; the exact rule is unverified).
    """
    if not cache.enabled:
        return 0.0
    nodes = 1 + cache.replicas
    if cloud == "aws":
        node = prices.get("aws", {}).get(location, {}).get(cache.engine, {}).get(cache.node_type or DEFAULT_NODE_TYPE)
        return None if node is None else round(node * nodes, 4)
    tier = prices.get("gcp", {}).get(location, {}).get(memorystore_replication(cache.replicas)["tier"], {})
    if cache.replicas == 0:
        rate = tier.get("usdPerGbHour")
        return None if rate is None else round(rate * memory_size_gb(cache), 4)
    rate = tier.get("usdPerGbHourPerNode")
    return None if rate is None else round(rate * memory_size_gb(cache) * nodes, 4)


def memorystore_persistence(cache: CacheConfig) -> dict:
    """RDB snapshots unless the config turns snapshots off (``snapshotRetentionDays: 0``)."""
    if cache.snapshot_retention_days == 0:
        return {"persistence_mode": "DISABLED"}
    return {"persistence_mode": "RDB", "rdb_snapshot_period": MEMORYSTORE_SNAPSHOT_PERIOD}


# --------------------------------------------------------------------------- windows

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_DAY_MINUTES = 24 * 60
_WEEK_MINUTES = 7 * _DAY_MINUTES


@dataclass(frozen=True)
class Window:
    """A recurring window: its start in minutes from Monday 00:00 UTC (weekly) or from
    midnight UTC (daily), and its length in minutes."""

    start: int
    minutes: int


def _clock(text: str, where: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text} in {where!r} is not a time of day (00:00 to 23:59)")
    return hours * 60 + minutes


def weekly_window(window: str) -> Window:
    """Parse ``ddd:hh:mm-ddd:hh:mm`` (UTC); ValueError if a time is not a time of day."""
    begin, end = window.split("-")
    start = _DAYS.index(begin[:3]) * _DAY_MINUTES + _clock(begin[4:], window)
    stop = _DAYS.index(end[:3]) * _DAY_MINUTES + _clock(end[4:], window)
    return Window(start, (stop - start) % _WEEK_MINUTES)


def daily_window(window: str) -> Window:
    """Parse ``hh:mm-hh:mm`` (UTC, may cross midnight)."""
    begin, end = window.split("-")
    start = _clock(begin, window)
    return Window(start, (_clock(end, window) - start) % _DAY_MINUTES)


def overlaps(weekly: Window, daily: Window) -> bool:
    """Whether a weekly window meets any day's occurrence of a daily window."""
    def meet(a: int, a_len: int, b: int, b_len: int) -> bool:
        if not (a_len and b_len):
            return False
        return (b - a) % _WEEK_MINUTES < a_len or (a - b) % _WEEK_MINUTES < b_len

    return any(meet(weekly.start, weekly.minutes, day * _DAY_MINUTES + daily.start, daily.minutes) for day in range(7))


def memorystore_maintenance_policy(window: str) -> dict:
    """Memorystore's weekly window from ``ddd:hh:mm-...``: the start (windows last an hour)."""
    start = weekly_window(window).start
    day, minute = divmod(start, _DAY_MINUTES)
    return {
        "weekly_maintenance_windows": [{
            "day": _DAY_NAMES[day],
            "start_time": {"hours": minute // 60, "minutes": minute % 60, "seconds": 0, "nanos": 0},
        }]
    }
