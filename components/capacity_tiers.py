"""A GPU pool's capacity preference as the provisioning objects that carry it (pure).

``gpuPools[].capacity`` lists capacity types in order of preference, each tried when the
ones before have none. Some orders fit one provisioning object; any other gets one object
per capacity type (a *tier*), tried in the listed order:

- EKS: within one Karpenter NodePool, Karpenter prefers ``reserved``, then ``spot``, then
  ``on-demand`` and falls back "generally within milliseconds" (aws/karpenter-provider-aws,
  docs of v1.14 at commit 1d927085d, ``website/content/en/v1.14/concepts/nodepools.md``,
  ``karpenter.sh/capacity-type``). An order that follows that preference is one NodePool;
  any other (on-demand before spot, anything before reserved) is one NodePool per type with
  descending ``spec.weight`` (``concepts/scheduling.md``, "Weighted NodePools"). Karpenter
  orders NodePools by weight and places a pending pod with the first one that can take it
  (kubernetes-sigs/karpenter at 6e7eab7a0f48, the core v1.14.1 pins:
  ``pkg/controllers/provisioning/provisioner.go`` ``OrderByWeight``,
  ``pkg/controllers/provisioning/scheduling/scheduler.go`` ``addToNewNodeClaim``); a
  NodePool is passed over when its ``limits`` are used up ("all available instance types
  exceed limits for nodepool") or when none of its offerings is available, and an offering
  that failed with insufficient capacity is unavailable for 3 minutes (aws provider v1.14.1
  ``pkg/cache/cache.go`` ``UnavailableOfferingsTTL``, ``pkg/providers/instancetype/offering/
  base_resolver.go``). After those 3 minutes new nodes are tried on the preferred tier again.
- GKE: a node pool is Spot or not and consumes reservations by its reservation affinity, so
  ``[reserved]``, ``[on-demand]``, ``[spot]`` and ``[reserved, on-demand]`` (any matching
  reservation, then on-demand) are one node pool; any other order is one node pool per type,
  ordered by a custom ComputeClass (``cloud.google.com/v1``) whose ``priorities`` name the
  node pools (``nodepools: [...]``, GKE ComputeClass CRD reference,
  cloud.google.com/kubernetes-engine/docs/reference/crds/computeclass). Those node pools carry
  the label and ``NoSchedule`` taint ``cloud.google.com/compute-class=<class>`` (as in
  ai-on-gke/website@254def11 ``site/content/docs/tutorials/fungibility-recipes/index.md``),
  and the pool's pods select and tolerate it. Custom compute classes need GKE
  1.30.3-gke.1451000 or later (GKE "About custom ComputeClasses").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .contract import POOL_LABEL

if TYPE_CHECKING:  # config runs these checks: the types only, so config imports this module
    from .config import GpuPoolConfig

#: Karpenter's own preference among the capacity types one NodePool allows.
KARPENTER_PREFERENCE = ("reserved", "spot", "on-demand")
#: Orders one GKE node pool honours (spot flag and reservation affinity).
GKE_SINGLE_POOL_ORDERS = (("reserved",), ("on-demand",), ("spot",), ("reserved", "on-demand"))
#: Node label and taint key tying manually created node pools to a custom ComputeClass, and
#: the node selector pods request the class with.
COMPUTE_CLASS_KEY = "cloud.google.com/compute-class"
#: Custom compute classes need GKE 1.30.3-gke.1451000 or later; a ``1.30`` minimum master
#: version may get an earlier 1.30 patch, so tiered GKE pools need 1.31 or later.
COMPUTE_CLASS_MIN_MINOR = 31
#: Longest tier suffix of a node pool / NodePool name (GKE node pool names: 40 characters).
LONGEST_TIER_SUFFIX = max(len(f"-{c}") for c in KARPENTER_PREFERENCE)


@dataclass(frozen=True)
class Tier:
    """One provisioning object of a pool: its name and the capacity types it may launch."""

    name: str
    capacity: tuple[str, ...]


def tiers(cloud: str, pool: GpuPoolConfig) -> list[Tier]:
    """The provisioning objects of ``pool`` on ``cloud``, most preferred first.

    One object keeps the pool's own name (as before tiers existed); tiers are named
    ``<pool>-<capacity type>``.
    """
    order = tuple(pool.capacity)
    if cloud == "aws":
        single = order == tuple(c for c in KARPENTER_PREFERENCE if c in order)
    else:
        single = order in GKE_SINGLE_POOL_ORDERS
    if single:
        return [Tier(pool.name, order)]
    return [Tier(f"{pool.name}-{c}", (c,)) for c in order]


def is_tiered(cloud: str, pool: GpuPoolConfig) -> bool:
    """Whether the pool's capacity takes more than one provisioning object."""
    return len(tiers(cloud, pool)) > 1


def compute_class_name(pool: GpuPoolConfig) -> str:
    """The custom ComputeClass ordering a tiered GKE pool's node pools."""
    return f"gpu-fleet-{pool.name}"


def uses_compute_class(cloud: str, pool: GpuPoolConfig) -> bool:
    """Whether the pool's node pools are ordered by a ComputeClass (a tiered GKE pool)."""
    return cloud == "gcp" and is_tiered(cloud, pool)


def pool_node_selector(cloud: str, pool: GpuPoolConfig) -> dict:
    """What a pod on ``pool`` selects: the pool label, and on a tiered GKE pool its
    ComputeClass (GKE scales the class's node pools in priority order only for pods that
    select the class)."""
    selector = {POOL_LABEL: pool.name}
    if uses_compute_class(cloud, pool):
        selector[COMPUTE_CLASS_KEY] = compute_class_name(pool)
    return selector


def compute_class_tolerations(cloud: str, pool: GpuPoolConfig) -> list[dict]:
    """Tolerations a pod on ``pool`` needs beside the GPU one: the ComputeClass taint of a
    tiered GKE pool's node pools. Explicit, whether or not GKE would add it itself."""
    if not uses_compute_class(cloud, pool):
        return []
    return [{"key": COMPUTE_CLASS_KEY, "operator": "Equal", "value": compute_class_name(pool),
             "effect": "NoSchedule"}]
