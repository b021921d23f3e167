"""GPU capacity and cost of a region stack, from its config and the catalog (pure).

Per GPU pool: the GPUs the pool can reach (warm minimum and maximum), the GPUs its
models may ask for (at their HPAs' minimum and maximum replicas), the nodes that takes and
what those nodes cost per hour at the catalog's on-demand price. Nothing here is invented:
a pool that prefers reserved capacity (prepaid) or spot (a market price) is still priced
at the on-demand list price, and marked as such, since neither price is known offline.

Nodes: replicas are packed onto nodes first-fit decreasing (a replica's GPUs are on one
node, the tensor-parallel group), then the ``minNodes`` warm nodes are added: they stay
free beside the models' nodes (:mod:`gpu_fleet.components.warm_capacity`). Never above what the pool
can reach: ``maxNodes``, or for a pool whose capacity order takes one NodePool / node pool
per capacity type (:mod:`gpu_fleet.components.capacity_tiers`) ``maxNodes`` per tier, since each tier
may carry the whole pool and nothing limits them together; such a pool runs more than
``maxNodes`` nodes only when its models and warm nodes ask for more, and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .capacity_tiers import tiers
from .config import GpuPoolConfig, RegionConfig, pool_offering
from .sizing import size_model

#: The price the figures use; the other capacity types are labelled, not priced.
PRICE_BASIS = "on-demand"


@dataclass(frozen=True)
class ModelDemand:
    """One model's GPU ask on its pool."""

    name: str
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class PoolCapacity:
    """Capacity and cost of one GPU pool."""

    name: str
    machine_type: str
    gpus_per_node: int
    capacity: tuple[str, ...]
    min_nodes: int
    max_nodes: int
    zones: tuple[str, ...]
    hourly_usd_per_node: float
    #: Capacity types per provisioning object (NodePool / node pool), most preferred first.
    tiers: tuple[tuple[str, ...], ...]
    models: tuple[ModelDemand, ...] = field(default_factory=tuple)
    #: Nodes running with the models at their minimum and maximum replicas.
    nodes_at_min: int = 0
    nodes_at_max: int = 0
    #: Nodes the models would need at maxReplicas, without the pool's limit.
    nodes_wanted_at_max: int = 0

    @property
    def warm_gpus(self) -> int:
        return self.min_nodes * self.gpus_per_node

    @property
    def reachable_nodes(self) -> int:
        """Nodes the pool can reach: ``maxNodes`` on each of its provisioning objects."""
        return self.max_nodes * len(self.tiers)

    @property
    def max_gpus(self) -> int:
        """GPUs the pool can reach."""
        return self.reachable_nodes * self.gpus_per_node

    @property
    def model_gpus_at_min(self) -> int:
        return sum(m.gpus_per_replica * m.min_replicas for m in self.models)

    @property
    def model_gpus_at_max(self) -> int:
        return sum(m.gpus_per_replica * m.max_replicas for m in self.models)

    @property
    def min_hourly_usd(self) -> float:
        return round(self.nodes_at_min * self.hourly_usd_per_node, 2)

    @property
    def max_hourly_usd(self) -> float:
        return round(self.nodes_at_max * self.hourly_usd_per_node, 2)

    @property
    def price_note(self) -> str:
        """How the pool's price relates to what it will actually pay."""
        notes = {"reserved": "reserved nodes are prepaid (reservation cost not included)",
                 "spot": "spot nodes cost the market price, usually less"}
        return "; ".join(["on-demand list price", *(notes[c] for c in self.capacity if c in notes)])


def nodes_for(gpu_asks: list[int], gpus_per_node: int) -> int:
    """Nodes needed to place replicas asking ``gpu_asks`` GPUs each (first-fit decreasing)."""
    free: list[int] = []
    for ask in sorted(gpu_asks, reverse=True):
        for i, room in enumerate(free):
            if room >= ask:
                free[i] -= ask
                break
        else:
            free.append(gpus_per_node - ask)
    return len(free)


def running_nodes(pool: GpuPoolConfig, model_nodes: int, reachable_nodes: int) -> int:
    """Nodes a pool runs when its models need ``model_nodes``: those plus the warm ones,
    up to what the pool can reach."""
    return min(reachable_nodes, model_nodes + pool.min_nodes)


def pool_capacity(cfg: RegionConfig, pool: GpuPoolConfig) -> PoolCapacity:
    """Capacity and cost of ``pool`` in the validated region config ``cfg``."""
    offering = pool_offering(cfg, pool)
    shape = offering.shape
    models = tuple(
        ModelDemand(m.name, size_model(m, shape).gpus, m.autoscaling.min_replicas, m.autoscaling.max_replicas)
        for m in cfg.models if m.pool == pool.name
    )

    def model_nodes(at_max: bool) -> int:
        asks = [m.gpus_per_replica for m in models for _ in range(m.max_replicas if at_max else m.min_replicas)]
        return nodes_for(asks, shape.gpus)

    wanted_at_max = model_nodes(True)
    pool_tiers = tuple(t.capacity for t in tiers(cfg.cloud, pool))
    reachable = pool.max_nodes * len(pool_tiers)
    return PoolCapacity(
        name=pool.name,
        machine_type=shape.machine_type,
        gpus_per_node=shape.gpus,
        capacity=tuple(pool.capacity),
        min_nodes=pool.min_nodes,
        max_nodes=pool.max_nodes,
        zones=tuple(pool.zones) or offering.zones,
        hourly_usd_per_node=pool.hourly_price_usd or offering.hourly_usd,
        tiers=pool_tiers,
        models=models,
        nodes_at_min=running_nodes(pool, model_nodes(False), reachable),
        nodes_at_max=running_nodes(pool, wanted_at_max, reachable),
        nodes_wanted_at_max=wanted_at_max,
    )


def region_capacity(cfg: RegionConfig) -> list[PoolCapacity]:
    """Every GPU pool's capacity and cost, in config order."""
    return [pool_capacity(cfg, p) for p in cfg.gpu_pools]


def shortfalls(pools: list[PoolCapacity]) -> list[str]:
    """One warning per pool whose models can ask for more GPUs than the pool can reach, and
    one per tiered pool that may run more than ``maxNodes`` nodes (its fallback tiers
    take what the first tier's limit leaves)."""
    out = []
    for p in pools:
        asks = (f"its models may ask for {p.model_gpus_at_max} GPUs at maxReplicas "
                f"({', '.join(f'{m.name} {m.max_replicas} x {m.gpus_per_replica}' for m in p.models)}), "
                f"{p.nodes_wanted_at_max} nodes")
        if p.nodes_wanted_at_max > p.reachable_nodes:
            out.append(
                f"GPU pool {p.name}: {asks}, but the pool reaches {p.max_gpus} ({p.reachable_nodes} x "
                f"{p.gpus_per_node}); replicas beyond that stay Pending: raise gpuPools.{p.name}.maxNodes to "
                f"{-(-p.nodes_wanted_at_max // len(p.tiers))} or lower the models' maxReplicas"
            )
        elif len(p.tiers) > 1 and p.nodes_at_max > p.max_nodes:
            out.append(
                f"GPU pool {p.name}: {asks}, plus {p.min_nodes} warm; with maxNodes {p.max_nodes} on each of its "
                f"{len(p.tiers)} capacity tiers ({' > '.join('/'.join(t) for t in p.tiers)}) it may run "
                f"{p.nodes_at_max} nodes, more than maxNodes: lower the models' maxReplicas to keep it at "
                f"{p.max_nodes}"
            )
    return out


def capacity_json(pools: list[PoolCapacity]) -> dict:
    """The plan's ``capacity`` object of a stack."""
    return {
        "warmGpus": sum(p.warm_gpus for p in pools),
        "maxGpus": sum(p.max_gpus for p in pools),
        "modelGpusAtMinReplicas": sum(p.model_gpus_at_min for p in pools),
        "modelGpusAtMaxReplicas": sum(p.model_gpus_at_max for p in pools),
        "pools": [
            {
                "name": p.name,
                "machineType": p.machine_type,
                "gpusPerNode": p.gpus_per_node,
                "capacity": list(p.capacity),
                # One NodePool / node pool per entry, tried in order, each up to maxNodes.
                "capacityTiers": [list(t) for t in p.tiers],
                "zones": list(p.zones),
                "minNodes": p.min_nodes,
                "maxNodes": p.max_nodes,
                "reachableNodes": p.reachable_nodes,
                "warmGpus": p.warm_gpus,
                "maxGpus": p.max_gpus,
                "modelGpusAtMinReplicas": p.model_gpus_at_min,
                "modelGpusAtMaxReplicas": p.model_gpus_at_max,
                "nodesAtMinReplicas": p.nodes_at_min,
                "nodesAtMaxReplicas": p.nodes_at_max,
                "models": [{"name": m.name, "gpusPerReplica": m.gpus_per_replica, "minReplicas": m.min_replicas,
                            "maxReplicas": m.max_replicas} for m in p.models],
            }
            for p in pools
        ],
    }


def cost_json(pools: list[PoolCapacity], cache_hourly_usd: Optional[float] = None) -> dict:
    """The plan's ``cost`` object of a stack: US$ per hour at the models' min and max replicas,
    and the regional cache's US$ per hour on its own (None when the catalog has no price)."""
    return {
        "currency": "USD",
        "priceBasis": PRICE_BASIS,
        "minHourlyUsd": round(sum(p.min_hourly_usd for p in pools), 2),
        "maxHourlyUsd": round(sum(p.max_hourly_usd for p in pools), 2),
        "pools": [
            {"name": p.name, "hourlyUsdPerNode": p.hourly_usd_per_node, "nodesAtMinReplicas": p.nodes_at_min,
             "nodesAtMaxReplicas": p.nodes_at_max, "minHourlyUsd": p.min_hourly_usd,
             "maxHourlyUsd": p.max_hourly_usd, "capacity": list(p.capacity), "note": p.price_note}
            for p in pools
        ],
        "cacheHourlyUsd": cache_hourly_usd,
    }


def fleet_json(stacks: dict[str, list[PoolCapacity]]) -> dict:
    """The plan's top-level ``fleet`` object: the region stacks' figures summed."""
    pools = [p for ps in stacks.values() for p in ps]
    cap = capacity_json(pools)
    cost = cost_json(pools)
    return {
        "stacks": sorted(stacks),
        "capacity": {k: v for k, v in cap.items() if k != "pools"},
        "cost": {k: v for k, v in cost.items() if k not in ("pools", "cacheHourlyUsd")},
    }
